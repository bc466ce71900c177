"""Small DuckDB helpers.

duckdb 2.0 refuses new work on a connection while a previous ``execute()`` result is unfinished,
so single-row reads must fetch to the end: these helpers always use ``fetchall()``.
"""

from typing import Any

import duckdb


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
