"""Small DuckDB helpers.

duckdb 2.0 refuses new work on a connection while a previous ``execute()`` result is unfinished,
so single-row reads must fetch to the end: these helpers always use ``fetchall()``.
"""

import contextlib
import errno
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the open database has table ``name`` in schema ``main``."""
    return bool(
        fetch_scalar(
            con,
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ?",
            [name],
        )
    )


def fetch_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> tuple | None:
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


# --------------------------------------------------------------------------------- the file lock
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")
LOCK_POLL_SECONDS = 0.5


class MirrorLockedError(RuntimeError):
    """Another process holds the mirror file past the wait (a user's DuckDB session, a UI)."""


def lock_holder(message: str) -> str | None:
    """ "process N (its command line)" from DuckDB's lock error, None if it is not one."""
    match = _LOCK_HOLDER.search(message)
    if match is None:
        return None
    pid = match["pid"]
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"process {pid} ({command[:120] or match['program']})"


def connect_writer(
    path: str,
    config: dict[str, Any] | None = None,
    *,
    wait_seconds: float = 300.0,
    log: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the mirror for writing; while another process holds it, say who at once, wait up to
    ``wait_seconds`` for it to let go, then fail naming it.

    DuckDB lets one process write a file, and any other process with it open (even read-only)
    blocks the writer: the holder is named in DuckDB's error, which we turn into a message.
    """
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        try:
            return duckdb.connect(path, read_only=False, config=config or {})
        except duckdb.IOException as exc:
            holder = lock_holder(str(exc))
            if holder is None:
                raise
            if time.monotonic() >= deadline:
                raise MirrorLockedError(
                    f"the mirror {path} is still open in {holder} after {wait_seconds:.0f} s of waiting: "
                    "close that session and run again (read the mirror in short read-only sessions, "
                    "or from the snapshot; see the README, 'Reading the mirror'). "
                    "STASH_LOCK_WAIT_SECONDS sets the wait."
                ) from None
            if not said and log is not None:
                log(
                    f"the mirror {path} is open in {holder}; waiting up to {wait_seconds:.0f} s for it "
                    "to close (STASH_LOCK_WAIT_SECONDS)"
                )
                said = True
            time.sleep(LOCK_POLL_SECONDS)


# --------------------------------------------------------------------------------- a full disk
_DISK_FULL = ("no space left on device", "disk is full", "disk full", "not enough space")


class MirrorDiskFullError(RuntimeError):
    """The disk holding the mirror (or DuckDB's spill directory beside it) filled up."""


def _mount_of(path: Path) -> Path:
    path = path.resolve()
    while not path.is_mount() and path != path.parent:
        path = path.parent
    return path


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def is_disk_full(exc: BaseException) -> bool:
    return any(
        getattr(e, "errno", None) == errno.ENOSPC or any(s in str(e).lower() for s in _DISK_FULL)
        for e in _chain(exc)
    )


def failed_commit(exc: BaseException) -> bool:
    """Whether ``exc`` is a write the database could not make durable (a full disk, a failed
    COMMIT).  DuckDB 1.x may then keep parts of the failed transaction in memory (measured on a
    full tmpfs: a sync_state UPDATE of the failed transaction was written by the next one), so
    nothing more may be written through that database: the caller stops writing, and the next run
    (a fresh open, which replays only what was durable) finds the run unfinished."""
    return is_disk_full(exc) or any(
        isinstance(e, duckdb.Error) and "failed to commit" in str(e).lower() for e in _chain(exc)
    )


def disk_full(exc: BaseException, db_path: str) -> MirrorDiskFullError | None:
    """The clear error for ``exc`` if it (or what caused it) is the disk running out, else None.

    DuckDB says "No space left on device" (errno ENOSPC) in an IOException, or, once a write
    failed, that the database was invalidated "because of a previous fatal error"; the committed
    pages are in the file and the WAL, which the next open replays, so nothing is lost.
    """
    if not is_disk_full(exc):
        return None
    folder = Path(db_path).resolve().parent
    mount = _mount_of(folder)
    try:
        free = shutil.disk_usage(folder).free
        room = f"{free / 2**20:,.1f} MB free"
    except OSError:
        room = "free space unknown"
    return MirrorDiskFullError(
        f"the disk holding the mirror is full: {mount} ({room}) holds {db_path}. What was "
        "committed before is kept and the mirror opens as before; free some space there (or move "
        "the mirror: STASH_PIPELINE_DB) and run again: the next run resumes."
    )


def unregister(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Unregister views in a ``finally``: once a statement failed, DuckDB refuses ``unregister`` in
    the aborted transaction ("Current transaction is aborted"), and that error would replace the
    real one (an out-of-memory error surfaced as a TransactionException)."""
    for name in names:
        with contextlib.suppress(duckdb.Error):
            con.unregister(name)
