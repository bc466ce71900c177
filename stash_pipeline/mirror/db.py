"""Small DuckDB helpers.

duckdb 2.0 refuses new work on a connection while a previous ``execute()`` result is unfinished,
so single-row reads must fetch to the end: these helpers always use ``fetchall()``.
"""

import contextlib
import time
from collections.abc import Callable, Iterator
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


# Rows in one DuckDB row group (its storage unit; ``pragma_storage_info`` shows 122,880 in duckdb
# 2.0).  A transaction that appends at least this many rows to a table has its full row groups
# written compressed, straight to the database file, instead of being logged row by row in the
# write-ahead log and compressed again at the next checkpoint (``SyncOptions.commit_rows``).
ROW_GROUP_ROWS = 122_880


class GroupCommit:
    """One transaction over several merged batches.

    Committed once it holds ``rows`` rows or has been open ``seconds`` (so a killed process loses at
    most that much work), and when the block it serves ends, also by an exception: the batches
    merged whole are kept, as they were when each batch was its own transaction.  Only a batch
    caught in the middle of its merge (``writing``) rolls the transaction back.  ``before_commit``
    runs inside the transaction (the resume position), ``after_commit`` once it is durable.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        rows: int,
        seconds: float,
        before_commit: Callable[[], None],
        after_commit: Callable[[], None],
    ) -> None:
        self.con = con
        self.limit_rows = rows
        self.limit_seconds = seconds
        self.before_commit = before_commit
        self.after_commit = after_commit
        self.is_open = False
        self.dirty = False
        self.rows = 0
        self.opened_at = 0.0

    @contextlib.contextmanager
    def writing(self, rows: int, rows_to_come: int) -> Iterator[None]:
        """Merge one batch of ``rows`` rows inside the transaction (begun if need be); commit after
        it when the transaction is due, or when the ``rows_to_come`` the read still expects cannot
        fill it: then holding it would only put the work of its commit after the read's end, where
        nothing overlaps it (each batch is committed on its own, as it was before)."""
        if not self.is_open:
            self.con.begin()
            self.is_open = True
            self.rows = 0
            self.opened_at = time.monotonic()
        self.dirty = True
        yield
        self.dirty = False
        self.rows += rows
        if (
            self.rows + rows_to_come < self.limit_rows
            or self.rows >= self.limit_rows
            or time.monotonic() - self.opened_at >= self.limit_seconds
        ):
            self.commit()

    def commit(self) -> None:
        if self.is_open:
            self.before_commit()
            self.con.commit()
            self.is_open = False
            self.after_commit()

    def __enter__(self) -> "GroupCommit":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.is_open:
            return
        if exc_type is None:
            self.commit()
            return
        try:
            if self.dirty:
                raise RuntimeError("a batch was cut off mid-merge")
            self.commit()
        except BaseException:  # the block's own exception is the one that propagates
            self.is_open = False
            with contextlib.suppress(duckdb.Error):
                self.con.rollback()


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
