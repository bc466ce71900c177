"""The smart-sync sensor: notices changes in Stash at the cost of one GraphQL request per tick.

Per type it compares three counts from Stash (rows newer than the cursor, rows in the overlap
window, the total) with what the last materialization recorded (cursor, window count, local count:
read from the Dagster instance, never from DuckDB, which a running sync may hold).  Types with no
difference are skipped; the changed ones get ONE run, over the partition range that covers the
change, in incremental mode.  Deletes and merges bump nothing, but they lower the total.
"""

import hashlib
import json
from datetime import date

import dagster as dg

from stash_pipeline.assets.metadata import SyncMetadata
from stash_pipeline.assets.partitions import range_tags
from stash_pipeline.mirror.windows import parse_stash_time, since_criterion
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline.resources import StashResource
from stash_pipeline.stash.errors import StashError
from stash_pipeline.stash.queries import sensor_probe_entries

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
ENTITY_KEYS = {dg.AssetKey(s.name) for s in ENTITY_SPECS}


def last_sync(instance: dg.DagsterInstance, entity_type: str) -> SyncMetadata:
    """The latest sync record of a type (an empty one if it never synced)."""
    return SyncMetadata.latest(instance, entity_type) or SyncMetadata()


def active_sync_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Queued or running runs that write entity assets (one writer at a time)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES), limit=50)
    return [r for r in runs if r.asset_selection is None or ENTITY_KEYS & set(r.asset_selection)]


def changed_types(last: dict[str, SyncMetadata], counts: dict[str, int]) -> dict[str, str]:
    """Which types changed, each with the reason (for the tick's log and the run's tags)."""
    reasons: dict[str, str] = {}
    for spec in ENTITY_SPECS:
        state = last[spec.name]
        total = counts.get(f"{spec.name}_total")
        if state.cursor is None:
            reasons[spec.name] = "never synced"
        elif counts.get(f"{spec.name}_newer", 0) > 0:
            reasons[spec.name] = f"{counts[f'{spec.name}_newer']} updated since {state.cursor}"
        elif total != state.local_count:
            reasons[spec.name] = f"count {total} in Stash vs {state.local_count} mirrored"
        elif state.window_count is not None and counts.get(f"{spec.name}_window") != state.window_count:
            reasons[spec.name] = "changes inside the overlap window"
    return reasons


def build_smart_sync_sensor(
    job: dg.JobDefinition, partitions: dg.TimeWindowPartitionsDefinition, interval_seconds: int
) -> dg.SensorDefinition:
    @dg.sensor(
        name="stash_smart_sync",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Probes Stash (one request) and syncs only the types that changed, incrementally.",
    )
    def stash_smart_sync(context: dg.SensorEvaluationContext, stash: StashResource):
        active = active_sync_runs(context.instance)
        if active:
            return dg.SkipReason(
                f"a sync is queued or running ({active[0].run_id[:8]}); not piling up another"
            )
        last = {s.name: last_sync(context.instance, s.name) for s in ENTITY_SPECS}
        probes: dict[str, tuple[str, dict | None]] = {}
        for spec in ENTITY_SPECS:
            state = last[spec.name]
            newer, window, total = (alias for alias, _name, _f in sensor_probe_entries(spec.name))
            probes[total] = (spec.name, None)
            if state.cursor:
                probes[newer] = (
                    spec.name,
                    {"updated_at": {"modifier": "GREATER_THAN", "value": state.cursor}},
                )
            if state.window_bound:
                probes[window] = (spec.name, {"updated_at": since_criterion(state.window_bound)})
        try:
            with stash.client() as client:
                counts = client.count_probes(probes)
        except StashError as exc:
            return dg.SkipReason(f"Stash is unreachable or refused the probe: {exc}")
        reasons = changed_types(last, counts)
        if not reasons:
            return dg.SkipReason("no change in Stash since the last sync (one probe request)")
        types = [s.name for s in ENTITY_SPECS if s.name in reasons]
        tags = range_tags(partitions, since_of([last[t] for t in types]))
        fingerprint = json.dumps(
            {"types": types, "cursors": {t: last[t].cursor for t in types}, "counts": counts}, sort_keys=True
        )
        run_key = "smart-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        context.log.info("changed: " + "; ".join(f"{t}: {reasons[t]}" for t in types))
        return dg.RunRequest(
            run_key=run_key,
            asset_selection=[dg.AssetKey(t) for t in types],
            run_config={"ops": {t: {"config": {"mode": "incremental"}} for t in types}},
            tags={**tags, "stash/launched_by": "sensor", "stash/sync_type": "incremental"},
        )

    return stash_smart_sync


def since_of(states: list[SyncMetadata]) -> date | None:
    """The earliest date the types' next incremental runs re-read from (None: some never synced)."""
    bounds = [s.window_bound or s.cursor for s in states]
    if not bounds or any(b is None for b in bounds):
        return None
    return min(parse_stash_time(b).date() for b in bounds if b)
