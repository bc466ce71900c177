"""The smart-sync sensor: notices changes in Stash at the cost of one GraphQL request per tick.

Per type, one request asks Stash for the total and for the stamps ``(id, updated_at)`` of every row
at or above the type's stamp bound (``mirror.stamps``: every row written since the last sync began
is there, whatever the server's UTC offset did), and compares them with what the last
materialization recorded: the local count and the digest of the mirror's stamps above that bound
(read from the Dagster instance, never from DuckDB, which a running sync may hold).  A type whose
stamps above the bound are more than ``stamp_limit`` rows is probed by two counts instead (rows
newer than the cursor, rows in the overlap window), which miss only a re-edit, within the window,
after a westward offset move; the scheduled incremental run catches that.  Types with no
difference are skipped.  Plays, O counts and saved activity bump nothing: the same request asks
for Stash's ``stats`` totals of them, compared with those the type's last sync recorded (a move
means an incremental run, whose activity check finds the rows); a resume point saved without a
play moves no total, so the scenes with one are listed and their digest compared.  The changed
ones get ONE run, over the partition range that covers the change, in incremental mode.  Deletes
and merges bump nothing, but they lower the total.
"""

import hashlib
import json
from typing import Any

import dagster as dg

from stash_pipeline.assets.entities import ENTITY_OP
from stash_pipeline.assets.metadata import SyncMetadata, incremental_start
from stash_pipeline.assets.partitions import OLD_PARTITIONING, partitioning_of, range_tags, repartitioned
from stash_pipeline.mirror.activity import listed_activity_filter, server_listed_activity
from stash_pipeline.mirror.links import links_digest, server_links
from stash_pipeline.mirror.stamps import owned_files_filter, stamp_digest
from stash_pipeline.mirror.windows import since_criterion
from stash_pipeline.model import ENTITY_SPECS, EntitySpec
from stash_pipeline.resources import StashResource
from stash_pipeline.settings import Settings
from stash_pipeline.stash.errors import StashError
from stash_pipeline.stash.queries import (
    Probe,
    files_probe,
    links_probe,
    listed_activity_probe,
    sensor_probes,
)

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
ENTITY_KEYS = {dg.AssetKey(s.name) for s in ENTITY_SPECS}


def last_syncs(instance: dg.DagsterInstance) -> dict[str, dg.EventLogEntry | None]:
    """Every type's latest materialization (``None``: never synced): its record and its run."""
    return {s.name: instance.get_latest_materialization_event(dg.AssetKey(s.name)) for s in ENTITY_SPECS}


def active_sync_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Queued or running runs that write entity assets (one writer at a time)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES), limit=50)
    return [r for r in runs if r.asset_selection is None or ENTITY_KEYS & set(r.asset_selection)]


def uses_stamps(state: SyncMetadata, stamp_limit: int) -> bool:
    """Whether the sensor lists this type's stamps (else it counts)."""
    return bool(state.stamp_bound and state.stamp_digest) and (state.stamp_rows or 0) <= stamp_limit


def lists_activity(spec: EntitySpec, state: SyncMetadata, stamp_limit: int) -> bool:
    """Whether the sensor lists this type's rows with a resume point (``listed_activity``): where
    the last sync recorded their digest, and they are few enough to list on every tick (else the
    scheduled incremental run's activity check is what finds a resume-only save)."""
    return (
        bool(spec.listed_activity)
        and state.listed_activity_digest is not None
        and (state.listed_activity_rows or 0) <= stamp_limit
    )


def probes_for(last: dict[str, SyncMetadata], stamp_limit: int) -> dict[Probe, dict | None]:
    """Every type's questions for this tick, each with its filter."""
    probes: dict[Probe, dict | None] = {}
    for spec in ENTITY_SPECS:
        state = last[spec.name]
        total, stamps, newer, window = sensor_probes(spec.name)
        probes[total] = None
        if spec.unbumped_relations:
            probes[links_probe(spec.name)] = None
        if lists_activity(spec, state, stamp_limit):
            probes[listed_activity_probe(spec)] = listed_activity_filter(spec)
        if state.file_stamp_digest and state.stamp_bound:  # recorded only where Stash lists files
            probes[files_probe(spec.name)] = owned_files_filter(spec, since_criterion(state.stamp_bound))
        if uses_stamps(state, stamp_limit):
            probes[stamps] = {"updated_at": since_criterion(state.stamp_bound or "")}
            continue
        if state.cursor:
            probes[newer] = {"updated_at": {"modifier": "GREATER_THAN", "value": state.cursor}}
        if state.window_bound:
            probes[window] = {"updated_at": since_criterion(state.window_bound)}
    return probes


def changed_types(
    last: dict[str, SyncMetadata], answers: dict[str, Any], stamp_limit: int, partitioning: str = "year"
) -> dict[str, str]:
    """Which types changed, each with the reason (for the tick's log and the run's tags)."""
    reasons: dict[str, str] = {}
    for spec in ENTITY_SPECS:
        state = last[spec.name]
        total = answers.get(f"{spec.name}_total")
        stamps = answers.get(f"{spec.name}_stamps")
        if state.cursor is None and state.stamp_digest is None:
            reasons[spec.name] = "never synced"
        elif repartitioned(state.partitioning, partitioning):
            reasons[spec.name] = (
                f"partitions are by {partitioning} now (by {state.partitioning or OLD_PARTITIONING} "
                "at the last sync): a full sync materializes every partition"
            )
        elif total != state.local_count:
            reasons[spec.name] = f"count {total} in Stash vs {state.local_count} mirrored"
        elif stamps is not None and stamp_digest(stamps) != state.stamp_digest:
            reasons[spec.name] = (
                f"rows changed at or after {state.stamp_bound} ({len(stamps)} rows there in Stash, "
                f"{state.stamp_rows} mirrored)"
            )
        elif (
            spec.unbumped_relations
            and links_digest(server_links(spec, answers.get(f"{spec.name}_links") or []))
            != state.links_digest
        ):
            reasons[spec.name] = "links changed without a bump (sub-groups or gallery chapters edited)"
        elif state.file_stamp_digest and stamp_digest(answers.get(f"{spec.name}_files") or []) != (
            state.file_stamp_digest
        ):
            reasons[spec.name] = "files renamed or rescanned (no bump of their owner)"
        elif (
            lists_activity(spec, state, stamp_limit)
            and stamp_digest(
                server_listed_activity(spec, answers.get(listed_activity_probe(spec).alias) or [])
            )
            != state.listed_activity_digest
        ):
            reasons[spec.name] = (
                "resume points changed (activity saved without a play: no bump, no stats total)"
            )
        elif spec.activity_totals and _activity_moved(
            state, answers.get("stats") or {}, spec.activity_totals
        ):
            reasons[spec.name] = "plays, O counts or activity changed (Stash's stats totals moved; no bump)"
        elif stamps is None and answers.get(f"{spec.name}_newer", 0) > 0:
            reasons[spec.name] = f"{answers[f'{spec.name}_newer']} updated since {state.cursor}"
        elif (
            stamps is None
            and state.window_count is not None
            and answers.get(f"{spec.name}_window") != state.window_count
        ):
            reasons[spec.name] = "changes inside the overlap window"
    return reasons


def _fingerprint(alias: str, answer: Any) -> Any:
    """A short, JSON-able form of one probe answer (for the run key)."""
    if isinstance(answer, int | dict):
        return answer
    if alias.endswith(("_links", "_listed_activity")):
        return hashlib.md5(json.dumps(answer, sort_keys=True).encode()).hexdigest()
    return stamp_digest(answer)


def _activity_moved(state: SyncMetadata, totals: dict[str, float], keys: tuple[str, ...]) -> bool:
    """Whether Stash's activity totals differ from those the type's last sync recorded (a sync that
    recorded none, from before an upgrade or of one partition window, counts as moved)."""
    recorded = state.activity_totals or {}
    return any(recorded.get(k) != totals.get(k) for k in keys)


def build_smart_sync_sensor(
    job: dg.JobDefinition,
    partitions: dg.TimeWindowPartitionsDefinition,
    interval_seconds: int,
    stamp_limit: int = Settings.sensor_stamp_rows,
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
        events = last_syncs(context.instance)
        last = {name: SyncMetadata.of_event(e) or SyncMetadata() for name, e in events.items()}
        try:
            with stash.client() as client:
                answers = client.probe(probes_for(last, stamp_limit), with_totals=True)
        except StashError as exc:
            return dg.SkipReason(f"Stash is unreachable or refused the probe: {exc}")
        scheme = partitioning_of(partitions)
        reasons = changed_types(last, answers, stamp_limit, scheme)
        if not reasons:
            return dg.SkipReason("no change in Stash since the last sync (one probe request)")
        types = [s.name for s in ENTITY_SPECS if s.name in reasons]
        tags = range_tags(partitions, incremental_start([last[t] for t in types], scheme))
        fingerprint = json.dumps(
            {
                "types": types,
                "cursors": {t: last[t].cursor for t in types},
                # And the runs they were last synced by: a state seen before one of those (a
                # sub-group added, removed, added again) gets a new key, not a deduplicated one.
                "after_runs": {t: events[t].run_id if events[t] else None for t in types},
                "answers": {k: _fingerprint(k, v) for k, v in answers.items()},
            },
            sort_keys=True,
        )
        run_key = "smart-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        context.log.info("changed: " + "; ".join(f"{t}: {reasons[t]}" for t in types))
        return dg.RunRequest(
            run_key=run_key,
            asset_selection=[dg.AssetKey(t) for t in types],
            run_config={"ops": {ENTITY_OP: {"config": {"mode": "incremental"}}}},
            tags={**tags, "stash/launched_by": "sensor", "stash/sync_type": "incremental"},
        )

    return stash_smart_sync
