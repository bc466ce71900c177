"""Operational tables: ``sync_state`` (per type cursor and resume position) and ``sync_runs``."""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import duckdb

from stash_pipeline.mirror.db import fetch_row


@dataclass
class SyncState:
    entity_type: str
    cursor: str | None = None
    last_full_sync_at: datetime | None = None
    last_incremental_sync_at: datetime | None = None
    last_run_id: str | None = None
    last_status: str | None = None
    last_error: str | None = None
    local_count: int | None = None
    stash_count: int | None = None
    resume_key: str | None = None
    resume_after_id: int | None = None
    resume_cursor: str | None = None
    refill_columns: list[str] | None = None
    stash_version: str | None = None
    not_offered: list[str] | None = None
    server_time: datetime | None = None


STATE_COLUMNS = [f.name for f in fields(SyncState)]


def read_state(con: duckdb.DuckDBPyConnection, entity_type: str) -> SyncState:
    row = fetch_row(
        con, f"SELECT {', '.join(STATE_COLUMNS)} FROM sync_state WHERE entity_type = ?", [entity_type]
    )
    return SyncState(*row) if row else SyncState(entity_type)


def read_all_states(con: duckdb.DuckDBPyConnection) -> dict[str, SyncState]:
    rows = con.execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM sync_state").fetchall()
    return {r[0]: SyncState(*r) for r in rows}


def update_state(con: duckdb.DuckDBPyConnection, entity_type: str, **values: Any) -> None:
    """Upsert some columns of one type's state row (one statement: it runs once per batch)."""
    unknown = set(values) - set(STATE_COLUMNS)
    if unknown:
        raise KeyError(f"unknown sync_state columns: {sorted(unknown)}")
    columns = ["entity_type", *values]
    marks = ", ".join("?" for _ in columns)
    action = "DO UPDATE SET " + ", ".join(f"{k} = excluded.{k}" for k in values) if values else "DO NOTHING"
    con.execute(
        f"INSERT INTO sync_state ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT (entity_type) {action}",
        [entity_type, *values.values()],
    )


def start_run_row(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    entity_type: str,
    sync_type: str,
    started_at: datetime,
    window: tuple[str | None, str | None],
    cursor_before: str | None,
) -> None:
    # Only one writer runs at a time, so a row still 'running' belongs to a run that was killed.
    con.execute(
        "UPDATE sync_runs SET status = 'interrupted' WHERE entity_type = ? AND status = 'running'",
        [entity_type],
    )
    con.execute(
        "INSERT INTO sync_runs (run_id, entity_type, sync_type, status, started_at, window_start, "
        "window_end, cursor_before) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
        [run_id, entity_type, sync_type, started_at, window[0], window[1], cursor_before],
    )


def finish_run_row(con: duckdb.DuckDBPyConnection, run_id: str, entity_type: str, **values: Any) -> None:
    assignments = ", ".join(f"{k} = ?" for k in values)
    con.execute(
        f"UPDATE sync_runs SET {assignments} WHERE run_id = ? AND entity_type = ? AND status = 'running'",
        [*values.values(), run_id, entity_type],
    )
