"""Small DuckDB helpers.

duckdb 2.0 refuses new work on a connection while a previous ``execute()`` result is unfinished,
so single-row reads must fetch to the end: these helpers always use ``fetchall()``.
"""

from typing import Any

import duckdb

# DuckDB checkpoints (compresses and writes out) its write-ahead log once the log passes this size.
# At DuckDB's default of 16 MB a full sync compressed its growing row groups again and again: 32 MB
# took 10% less CPU at 1M images, with the same peak RSS; 64 MB saved no more, and left more of the
# compression to the checkpoint at close (``make bench``).
CHECKPOINT_THRESHOLD = "32MB"


def writer_config(memory_limit: str) -> dict[str, str]:
    """DuckDB configuration of a connection that writes the mirror."""
    return {"memory_limit": memory_limit, "checkpoint_threshold": CHECKPOINT_THRESHOLD}


def fetch_scalar(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> Any:
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def fetch_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> tuple | None:
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None
