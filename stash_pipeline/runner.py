"""Launch syncs as real Dagster runs in this process (the CLI's engine).

Runs go to the persistent ``DAGSTER_HOME`` instance, so CLI syncs appear in the UI's run history
next to sensor and backfill runs.  Where no daemon runs, nothing would recompute the derived
assets, so a CLI run materializes them in the same run: the CLI always leaves a consistent mirror.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import dagster as dg

from stash_pipeline.assets.derived import DERIVED_GROUP
from stash_pipeline.assets.partitions import keys_covering
from stash_pipeline.mirror.windows import overlap_bound, parse_stash_time
from stash_pipeline.stash.entities import ENTITY_SPECS, spec_for

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class TypeOutcome:
    entity_type: str
    metadata: dict


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    types: list[TypeOutcome] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def partial(self) -> bool:
        return any(t.metadata.get("failed", 0) for t in self.types)

    @property
    def exit_code(self) -> int:
        if not self.success:
            return 1
        return 2 if self.partial else 0


def latest_cursor(instance: dg.DagsterInstance, entity_type: str) -> str | None:
    """The cursor recorded by the last materialization of an entity asset (no DuckDB access)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(entity_type))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("cursor")
    text = getattr(value, "value", value)
    return text or None


def partition_range_tags(partitions: dg.TimeWindowPartitionsDefinition, since: date | None) -> dict[str, str]:
    keys = partitions.get_partition_keys()
    if since is None:
        return {RANGE_START: keys[0], RANGE_END: keys[-1]}
    first, last = keys_covering(partitions, since)
    return {RANGE_START: first, RANGE_END: last}


def incremental_since(
    instance: dg.DagsterInstance, types: Sequence[str], overlap_seconds: float
) -> date | None:
    """The earliest date an incremental run of ``types`` reads from (None: some type needs a full sync)."""
    earliest: date | None = None
    for entity_type in types:
        cursor = latest_cursor(instance, entity_type)
        if cursor is None:
            return None
        bound = parse_stash_time(overlap_bound(cursor, overlap_seconds)).date()
        earliest = bound if earliest is None or bound < earliest else earliest
    return earliest


def run_sync(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    types: Sequence[str] | None = None,
    mode: str = "incremental",
    since: str | None = None,
    ids: Sequence[int] = (),
    allow_mass_delete: bool = False,
    overlap_seconds: float = 3600,
    with_derived: bool = True,
    log_level: str | None = None,
) -> RunOutcome:
    """One Dagster run syncing ``types`` (all by default), then the derived assets."""
    names = [spec_for(t).name for t in types] if types else [s.name for s in ENTITY_SPECS]
    job = defs.resolve_implicit_global_asset_job_def()
    entity_keys = [dg.AssetKey(n) for n in names]
    partitions = defs.resolve_assets_def(entity_keys[0]).partitions_def
    if mode == "full":
        tags = partition_range_tags(partitions, None)
    elif mode == "specific":
        keys = partitions.get_partition_keys()
        tags = {RANGE_START: keys[-1], RANGE_END: keys[-1]}
    else:
        start = (
            parse_stash_time(since).date() if since else incremental_since(instance, names, overlap_seconds)
        )
        tags = partition_range_tags(partitions, start)
    config: dict = {"mode": mode, "allow_mass_delete": allow_mass_delete}
    if since:
        config["since"] = since
    if ids:
        config["ids"] = list(ids)
    selection = list(entity_keys)
    derived_keys: list[dg.AssetKey] = []
    if with_derived:
        graph = defs.resolve_asset_graph()
        derived_keys = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == DERIVED_GROUP]
        selection += derived_keys
    run_config: dict = {"ops": {n: {"config": config} for n in names}}
    if log_level:
        run_config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    result = job.execute_in_process(
        instance=instance,
        asset_selection=selection,
        run_config=run_config,
        tags={**tags, "stash/sync_type": mode, "stash/launched_by": "cli"},
        raise_on_error=False,
    )
    outcome = RunOutcome(run_id=result.run_id, success=result.success)
    for name in names:
        events = result.asset_materializations_for_node(name)
        if events:
            meta = {k: getattr(v, "value", v) for k, v in events[-1].metadata.items()}
            outcome.types.append(TypeOutcome(name, meta))
    outcome.derived = [
        k.to_user_string() for k in derived_keys if result.asset_materializations_for_node(k.path[-1])
    ]
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        if failures:
            err = failures[0].step_failure_data.error
            outcome.error = err.message.strip() if err else "step failed"
        else:
            outcome.error = "run failed"
    return outcome
