"""Launch syncs as real Dagster runs in this process (the CLI's engine).

Runs go to the persistent ``DAGSTER_HOME`` instance, so CLI syncs appear in the UI's run history
next to sensor and backfill runs.  Where no daemon runs, nothing would recompute the derived
assets, so a CLI run materializes them in the same run: the CLI always leaves a consistent mirror.
"""

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from stash_pipeline.assets.derived import DERIVED_GROUP, DERIVED_OP
from stash_pipeline.assets.entities import ENTITY_OP
from stash_pipeline.assets.metadata import SyncMetadata, incremental_start
from stash_pipeline.assets.partitions import (
    last_partition_tags,
    partitioning_of,
    range_tags,
)
from stash_pipeline.mirror.windows import parse_stash_time
from stash_pipeline.model import ENTITY_SPECS, spec_for

LAUNCHED_BY = "stash/launched_by"
HOST_TAG = "stash/host"
PID_TAG = "stash/pid"
PROCESS_START_TAG = "stash/process_start"  # guards against a reused pid


@dataclass
class TypeOutcome:
    entity_type: str
    metadata: SyncMetadata


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    types: list[TypeOutcome] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    error: str | None = None
    released: list[str] = field(default_factory=list)  # dead earlier runs marked failed first
    why_run: str | None = None  # what the CLI's probe found (or could not answer for)

    @property
    def partial(self) -> bool:
        return any(t.metadata.failed for t in self.types)

    @property
    def exit_code(self) -> int:
        if not self.success:
            return 1
        return 2 if self.partial else 0


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux; None elsewhere or gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The start time of a process (Linux ``/proc``; None elsewhere or when it is gone)."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22, starttime


def process_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` is a live process, and the one that started at ``started`` when given (a
    reused pid is another process).  A zombie (killed, not yet reaped by its parent) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    now = fields[19] if fields and len(fields) > 19 else None
    return not started or now is None or now == started


def process_tags() -> dict[str, str]:
    """Tags naming this process, so a later CLI run can tell that this one died."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PROCESS_START_TAG: _process_start(pid) or ""}


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark CLI runs whose process is gone (SIGKILL, OOM, power cut) as failed and free their slots.

    Nothing else would: such a run stays STARTED in Dagster forever and keeps its ``duckdb_writer``
    pool slot, so every later run would wait for that slot without end.  Only runs launched by this
    CLI on this host are judged (their process is known); the mirror itself needs nothing, as every
    committed page is kept and the next run resumes (its ``sync_runs`` row becomes 'interrupted').
    """
    host = socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.CANCELING,
            ],
            tags={LAUNCHED_BY: "cli", HOST_TAG: host},
        )
    )
    released: list[str] = []
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or process_alive(int(pid), run.tags.get(PROCESS_START_TAG) or None):
            continue
        instance.report_run_failed(
            run, message=f"the process running it (pid {pid}) is gone (killed or crashed); slots freed"
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def run_sync(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    types: Sequence[str] | None = None,
    mode: str = "incremental",
    since: str | None = None,
    ids: Sequence[int] = (),
    allow_mass_delete: bool = False,
    with_derived: bool = True,
    log_level: str | None = None,
) -> RunOutcome:
    """One Dagster run syncing ``types`` (all by default), then the derived assets."""
    released = release_dead_runs(instance)
    names = [spec_for(t).name for t in types] if types else [s.name for s in ENTITY_SPECS]
    job = defs.resolve_implicit_global_asset_job_def()
    entity_keys = [dg.AssetKey(n) for n in names]
    partitions = defs.resolve_assets_def(entity_keys[0]).partitions_def
    if mode == "full":
        tags = range_tags(partitions)
    elif mode == "specific":
        tags = last_partition_tags(partitions)
    else:
        start = (
            parse_stash_time(since).date()
            if since
            else incremental_start(
                [SyncMetadata.latest(instance, n) or SyncMetadata() for n in names],
                partitioning_of(partitions),
            )
        )
        tags = range_tags(partitions, start)
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
    run_config: dict = {"ops": {ENTITY_OP: {"config": config}}}
    if log_level:
        run_config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    result = job.execute_in_process(
        instance=instance,
        asset_selection=selection,
        run_config=run_config,
        tags={**tags, "stash/sync_type": mode, LAUNCHED_BY: "cli", **process_tags()},
        raise_on_error=False,
    )
    outcome = RunOutcome(run_id=result.run_id, success=result.success, released=released)
    materialized = {
        event.asset_key.path[-1]: event
        for event in result.asset_materializations_for_node(ENTITY_OP)
        + (result.asset_materializations_for_node(DERIVED_OP) if derived_keys else [])
    }
    for name in names:
        if name in materialized:
            outcome.types.append(TypeOutcome(name, SyncMetadata.parse(materialized[name].metadata)))
    outcome.derived = [k.to_user_string() for k in derived_keys if k.path[-1] in materialized]
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        if failures:
            err = failures[0].step_failure_data.error
            outcome.error = _root_cause(err) if err else "step failed"
        else:
            outcome.error = "run failed"
    return outcome


def _root_cause(error) -> str:
    """The message of the error that started it all: Dagster wraps an asset's exception in
    ``DagsterExecutionStepExecutionError`` ("Error occurred while executing op ..."), which says
    nothing about why (a rejected API key, a refused mass delete)."""
    while (error.cls_name or "").startswith("Dagster") and error.cause is not None:
        error = error.cause
    return error.message.strip()
