"""Read the sync history back: one entity's timeline, and the per-type status.

Both open the DuckDB file read-only.  DuckDB lets one process hold a file that is open for
writing, so while a sync runs they cannot read it; they say so instead of failing obscurely.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from stash_pipeline.mirror.db import table_exists
from stash_pipeline.model import ENTITY_SPECS, spec_for


class MirrorBusyError(RuntimeError):
    """The mirror is held by a running sync."""


class MirrorMissingError(RuntimeError):
    """No mirror file yet."""


def open_read_only(db_path: str) -> duckdb.DuckDBPyConnection:
    if not Path(db_path).exists():
        raise MirrorMissingError(f"no mirror at {db_path}: run `stash-pipeline sync` (or `make demo`) first")
    try:
        return duckdb.connect(db_path, read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise MirrorBusyError(
                f"a sync is running and holds {db_path} (DuckDB allows one process while a writer is open); "
                "try again when it has finished"
            ) from None
        raise


@dataclass
class TimelineEntry:
    at: datetime
    run_id: str
    sync_type: str
    action: str  # created / updated / deleted / failed, or "full sync" for a full run of the type
    changed_fields: list[str]
    error: str | None
    counts: dict[str, int] | None = None  # for full syncs: the run's created/updated/... numbers


def entity_timeline(con: duckdb.DuckDBPyConnection, entity_type: str, entity_id: int) -> list[TimelineEntry]:
    """Every run that touched the entity, plus every full sync of its type, oldest first."""
    name = spec_for(entity_type).name
    entries = [
        TimelineEntry(at, run_id, sync_type, action, list(changed or []), error)
        for at, run_id, sync_type, action, changed, error in con.execute(
            "SELECT logged_at, run_id, sync_type, action, changed_fields, error FROM sync_log "
            "WHERE entity_type = ? AND entity_id = ? ORDER BY logged_at",
            [name, entity_id],
        ).fetchall()
    ]
    touched_runs = {e.run_id for e in entries}
    for row in con.execute(
        "SELECT started_at, run_id, status, created, updated, unchanged, deleted, failed, error "
        "FROM sync_runs WHERE entity_type = ? AND sync_type = 'full' ORDER BY started_at",
        [name],
    ).fetchall():
        started, run_id, status, created, updated, unchanged, deleted, failed, error = row
        if run_id in touched_runs:
            continue  # already listed with what happened to this entity
        entries.append(
            TimelineEntry(
                started,
                run_id,
                "full",
                f"full sync ({status})",
                [],
                error,
                {
                    "created": created,
                    "updated": updated,
                    "unchanged": unchanged,
                    "deleted": deleted,
                    "failed": failed,
                },
            )
        )
    return sorted(entries, key=lambda e: e.at)


def current_row(con: duckdb.DuckDBPyConnection, entity_type: str, entity_id: int) -> dict | None:
    spec = spec_for(entity_type)
    label = "title" if any(c.name == "title" for c in spec.columns) else "name"
    rows = con.execute(
        f"SELECT {label}, updated_at_text, synced_at FROM {spec.name} WHERE id = ?", [entity_id]
    ).fetchall()
    if not rows:
        return None
    return {label: rows[0][0], "updated_at": rows[0][1], "synced_at": rows[0][2]}


def format_timeline(entity_type: str, entity_id: int, row: dict | None, entries: list[TimelineEntry]) -> str:
    name = spec_for(entity_type).name
    lines = []
    if row:
        summary = ", ".join(f"{k}={v!s}" for k, v in row.items())
        lines.append(f"{name} {entity_id}: in the mirror ({summary})")
    else:
        lines.append(f"{name} {entity_id}: not in the mirror")
    if not entries:
        lines.append("no sync has recorded anything about it")
        return "\n".join(lines)
    for e in entries:
        when = e.at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        detail = ""
        if e.changed_fields:
            detail = " changed: " + ", ".join(e.changed_fields)
        if e.counts:
            detail = " " + " ".join(f"{k}={v}" for k, v in e.counts.items())
        if e.error:
            detail += f" error: {e.error}"
        lines.append(f"{when}  {e.sync_type:<11} {e.action:<22} run {e.run_id[:8]}{detail}")
    return "\n".join(lines)


def status_rows(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Per type: cursor, last full and incremental sync, when a sync last changed its rows (a sync
    that finds nothing leaves it), counts, last status and error."""
    # A mirror not yet opened by this version lacks the newer columns (status only reads).
    present = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'sync_state'"
        ).fetchall()
    }
    newer = [c if c in present else f"NULL AS {c}" for c in ("stash_version", "not_offered")]
    state = {
        r[0]: r
        for r in con.execute(
            "SELECT entity_type, cursor, last_full_sync_at, last_incremental_sync_at, local_count, "
            f"stash_count, last_status, last_error, {', '.join(newer)} FROM sync_state"
        ).fetchall()
    }
    changed = dict(
        con.execute("SELECT entity_type, changed_at FROM mirror_changes").fetchall()
        if table_exists(con, "mirror_changes")
        else []
    )
    rows = []
    for spec in ENTITY_SPECS:
        r = state.get(spec.name)
        local = con.execute(f"SELECT count(*) FROM {spec.name}").fetchall()[0][0] if r else 0
        rows.append(
            {
                "type": spec.name,
                "cursor": r[1] if r else None,
                "last_full": r[2] if r else None,
                "last_incremental": r[3] if r else None,
                "local": local,
                "stash": r[5] if r else None,
                "status": r[6] if r else "never synced",
                "error": r[7] if r else None,
                "stash_version": r[8] if r else None,
                "not_offered": (r[9] or []) if r else [],
                "last_change": changed.get(spec.name),
            }
        )
    return rows


TYPE_WIDTH = max(len(spec.name) for spec in ENTITY_SPECS) + 2
"""The type column of the CLI's tables: the longest type name (scene_markers) and a gap."""


def format_status(rows: list[dict]) -> str:
    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    w = TYPE_WIDTH
    lines = [
        f"{'type':<{w}}{'status':<14}{'local':>9}{'stash':>9}  {'last full':<17}{'last incr.':<17}"
        f"{'last change':<17}cursor"
    ]
    for r in rows:
        stash = "-" if r["stash"] is None else str(r["stash"])
        lines.append(
            f"{r['type']:<{w}}{r['status'] or '-':<14}{r['local']:>9}{stash:>9}  {when(r['last_full']):<17}"
            f"{when(r['last_incremental']):<17}{when(r['last_change']):<17}{r['cursor'] or '-'}"
        )
        if r["error"]:
            lines.append(f"    last error: {r['error']}")
        if r["not_offered"]:
            lines.append(f"    not offered by Stash {r['stash_version']}: {', '.join(r['not_offered'])}")
    return "\n".join(lines)
