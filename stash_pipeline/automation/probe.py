"""What changed in Stash since the last sync, from ONE probe request (the sensor's and the CLI's).

Per type, the request asks Stash for the total and for the stamps ``(id, updated_at)`` of every row
at or above the type's stamp bound (``mirror.stamps``: every row written since the last sync began
is there, whatever the server's UTC offset did), and they are compared with what the last
materialization recorded: the local count and the digest of the mirror's stamps above that bound
(read from the Dagster instance, never from DuckDB, which a running sync may hold).  A type whose
stamps above the bound are more than ``stamp_limit`` rows is probed by two counts instead (rows
newer than the cursor, rows in the overlap window), which miss only a re-edit, within the window,
after a westward offset move; the scheduled incremental run catches that.  Plays, O counts and
saved activity bump nothing: the same request asks for Stash's ``stats`` totals of them, compared
with those the type's last sync recorded; a resume point saved without a play moves no total, so
the scenes with one are listed and their digest compared.  Deletes and merges bump nothing, but
they lower the total.  The server's version is asked too: a Stash upgraded since the last sync
may offer fields the mirror could not read before.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from stash_pipeline.assets.metadata import SyncMetadata
from stash_pipeline.assets.partitions import OLD_PARTITIONING, repartitioned
from stash_pipeline.mirror.activity import listed_activity_filter, server_listed_activity
from stash_pipeline.mirror.evolution import layout_digest
from stash_pipeline.mirror.links import links_digest, server_links
from stash_pipeline.mirror.stamps import owned_files_filter, stamp_digest
from stash_pipeline.mirror.windows import since_criterion
from stash_pipeline.model import ENTITY_SPECS, EntitySpec, spec_for
from stash_pipeline.stash.client import StashClient
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
    latest = instance.get_latest_materialization_events([dg.AssetKey(s.name) for s in ENTITY_SPECS])
    return {s.name: latest.get(dg.AssetKey(s.name)) for s in ENTITY_SPECS}


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
        elif state.mirror_layout is None:
            reasons[spec.name] = (
                "the last sync was made by an older stash-pipeline (it recorded no tables' layout): "
                "the run records it"
            )
        elif state.mirror_layout != layout_digest():
            reasons[spec.name] = (
                "the mirror's tables changed with a stash-pipeline upgrade since the last sync: "
                "the run brings them up to date"
            )
        elif answers.get("stash_version") not in (None, state.stash_version):
            reasons[spec.name] = (
                f"Stash is {answers['stash_version']} now ({state.stash_version} at the last sync): "
                "the run reads what this version offers"
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


def _activity_moved(state: SyncMetadata, totals: dict[str, float], keys: tuple[str, ...]) -> bool:
    """Whether Stash's activity totals differ from those the type's last sync recorded (a sync that
    recorded none, from before an upgrade or of one partition window, counts as moved)."""
    recorded = state.activity_totals or {}
    return any(recorded.get(k) != totals.get(k) for k in keys)


@dataclass(frozen=True)
class Verdict:
    """Whether an incremental sync would find anything: ``quiet`` says why not, ``why_run`` why it
    must run (a change, or something the probe cannot answer for)."""

    quiet: str | None = None
    why_run: str | None = None


def sync_verdict(
    instance: dg.DagsterInstance,
    client: StashClient,
    names: list[str],
    after: list[dg.AssetKey],
    stamp_limit: int,
    partitioning: str,
    mirror_differs: Callable[[dict[str, str | None]], str | None] = lambda runs: None,
) -> Verdict:
    """Whether an incremental sync of ``names`` would change nothing, proved by ONE probe request.

    Quiet only when the probe is exact for every type (stamps listed, resume points listed where
    the type has them), each type's last sync was complete (no row failed, so none waits for a
    retry), nothing is syncing now, every asset in ``after`` (the derived tables) was built after
    the last entity sync, and ``mirror_differs`` (given the types' last run ids) finds the mirror
    as those runs left it; anything else is a reason to run."""
    if active_sync_runs(instance):
        return Verdict(why_run="a sync is queued or running")
    events = last_syncs(instance)
    last = {name: SyncMetadata.of_event(e) or SyncMetadata() for name, e in events.items()}
    for name in names:
        state, spec = last[name], spec_for(name)
        if state.status != "success" or state.failed:
            return Verdict(why_run=f"{name}: its last sync was not complete ({state.status or 'none'})")
        if not uses_stamps(state, stamp_limit):
            return Verdict(why_run=f"{name}: too many recent rows to list on a probe")
        if spec.listed_activity and not lists_activity(spec, state, stamp_limit):
            return Verdict(why_run=f"{name}: too many resume points to list on a probe")
    differs = mirror_differs({n: events[n].run_id if events[n] else None for n in names})
    if differs:
        return Verdict(why_run=differs)
    try:
        answers = client.probe(probes_for(last, stamp_limit), with_totals=True)
    except StashError as exc:  # the run asks again, as patiently as configured, and says why it fails
        return Verdict(why_run=f"the probe got no usable answer ({type(exc).__name__}); the run asks again")
    reasons = changed_types(last, answers, stamp_limit, partitioning)
    changed: dict[str, list[str]] = {}
    for name in names:
        if name in reasons:
            changed.setdefault(reasons[name], []).append(name)
    if changed:
        return Verdict(why_run="; ".join(f"{', '.join(ns)}: {why}" for why, ns in changed.items()))
    synced = max(events[n].timestamp for n in names if events[n])
    built_at = instance.get_latest_materialization_events(after)
    for key in after:
        built = built_at.get(key)
        if built is None or built.timestamp < synced:
            return Verdict(why_run=f"{key.to_user_string()} was not rebuilt after the last sync")
    return Verdict(quiet="no change in Stash since the last sync (one probe request)")
