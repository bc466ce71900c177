"""The event log storage: Dagster's SQLite one (same files, same schema), without its per-write
engine set-up.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine, and disposes of it, on every
connection, and stores each event through up to four connections (the run's file, then the
cross-run index for asset, check and run-status events).  A sync run writes a few hundred events,
so building engines was a tenth to a sixth of a small sync's wall time (docs/architecture.md §7).  The engines
are ``NullPool`` ones: they hold no connection between uses, so keeping one per file changes
nothing but the set-up cost; each connection is still opened, committed and closed per write, under
the storage's own lock, exactly as before.

It also stores a batch of events (Dagster hands over the planned-materialization and
planned-check events of a run, and the partition materializations of one output, as a batch when
``DAGSTER_EVENT_BATCH_SIZE`` is set, which this storage sets) in one transaction per file instead
of one per event and file: the base class loops over ``store_event``, so a batch cost what its
events cost one by one.  A batch that fails is rolled back whole, and Dagster then stores its
events one by one.  And it keeps the answers "present" to Dagster's schema questions (a table, a
column, a finished data migration), which Dagster otherwise asks through a connection of their own
on nearly every event.

And it commits without waiting for the disk at each event.  Dagster keeps these files in WAL mode
with SQLite's default ``synchronous=FULL``, and opens a connection per write, so each write's close
was the file's last one: a checkpoint, with fsyncs of the WAL, the file and the directory (strace of
a 50-scene full sync into a new home: 1,347 fsync calls; 465 with the settings below, most of the
rest being the new home's own set-up).  A run's own file is written with ``synchronous=OFF``: a
killed process loses nothing, and a power cut can cost at worst the event log of the run being
written (older runs' files are not written).  The index, which every run's asset and check events
reach and the sensor reads, keeps fsyncs at its checkpoints (``synchronous=NORMAL``, which SQLite
documents as never corrupting a WAL file), and an idle connection is kept open to it so that a
write's close is not a checkpoint.

Configured in ``dagster.yaml`` (``event_log_storage``); the files stay in
``$DAGSTER_HOME/history/runs`` where Dagster's default storage keeps them, so an existing history
is read and extended as it is.
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import Field, StringSource
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._serdes import ConfigurableClassData
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

ENGINES_KEPT = 32  # files with an engine kept (the index and the runs read or written lately)
# Events Dagster buffers into one ``store_event_batch`` call at most (a run's planned events, one
# output's partition materializations).  Read by Dagster at each event, so setting it when the
# storage is built is enough; an explicit setting is kept.
EVENT_BATCH_SIZE = "1000"


def _synchronous(level: str) -> Callable[[Any, Any], None]:
    """A SQLAlchemy ``connect`` listener setting ``PRAGMA synchronous`` (on a WAL-mode file only:
    a file Dagster has not yet switched to WAL keeps SQLite's default)."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()
            if mode is not None and str(mode[0]).lower() == "wal":
                cursor.execute(f"PRAGMA synchronous={level}")
        finally:
            cursor.close()

    return on_connect


# A run's own file: no fsync at all (a power cut may cost the run being written its event log; a
# killed process loses nothing).  The index, which every run's asset and check events reach and
# the sensor reads: fsync at checkpoints only, which SQLite documents as never corrupting a WAL file.
RUN_FILE_SYNC = _synchronous("OFF")
INDEX_SYNC = _synchronous("NORMAL")


def event_log_dir(home: str | os.PathLike[str]) -> str:
    """Where Dagster's default storage keeps a home's event logs: ``<home>/history/runs``."""
    return os.path.join(home, "history", "runs", "")


def default_base_dir() -> str:
    """The event log directory of the process's ``DAGSTER_HOME``."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise ValueError("DAGSTER_HOME is not set: the event log storage has no directory")
    return event_log_dir(home)


class ReusedEngineSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that keeps each file's (connection-less) engine for reuse."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._batch = threading.local()  # .connections: shard -> open transaction, in a batch
        self._schema_facts: set[tuple[str, str]] = set()  # (kind, name) found present
        self._index_keeper: Any = None  # an idle DBAPI connection to the index, see _engine
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "ReusedEngineSqliteEventLogStorage":
        return cls(config_value.get("base_dir") or default_base_dir(), inst_data=inst_data)

    def _engine(self, conn_string: str) -> Engine:
        engine = self._engines.pop(conn_string, None)
        if engine is None:
            engine = sqlite_event_log.create_engine(
                conn_string,
                poolclass=NullPool,
                connect_args={"timeout": sqlite_event_log.SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            is_index = conn_string == self.conn_string_for_shard(sqlite_event_log.INDEX_SHARD_NAME)
            event.listen(engine, "connect", INDEX_SYNC if is_index else RUN_FILE_SYNC)
            if is_index and self._index_keeper is None:
                # An idle connection kept open, so that closing each write's connection is not the
                # file's last close, which SQLite turns into a checkpoint with two fsyncs.  It holds
                # no transaction and no lock; SQLite still checkpoints every 1,000 pages.
                self._index_keeper = engine.raw_connection()
        self._engines[conn_string] = engine  # most recently used last
        while len(self._engines) > ENGINES_KEPT:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def _ready_engine(self, shard: str) -> Engine:
        engine = self._engine(self.conn_string_for_shard(shard))
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        batch: dict[str, Connection] | None = getattr(self._batch, "connections", None)
        if batch is not None:  # inside store_event_batch, on its thread (which holds the lock)
            if shard not in batch:
                conn = self._ready_engine(shard).connect()
                conn.begin()
                batch[shard] = conn
            yield batch[shard]
            return
        # The parent's body, with the engine looked up instead of built (and disposed) each time.
        with self._db_lock, self._ready_engine(shard).connect() as conn, conn.begin():
            yield conn

    # Dagster asks the index what its schema has (a table, a column of asset_keys, a finished data
    # migration) again on nearly every event, each time through a connection of its own: a quiet
    # sync asked about 280 times, 1.2-1.5 ms each.  Migrations only ever add these, so a "present"
    # answer is kept for the life of the storage; an "absent" one is asked again (a
    # ``dagster instance migrate`` may run meanwhile), and a wipe forgets them all.
    def _present(self, kind: str, name: str, ask: Callable[[], bool]) -> bool:
        if (kind, name) in self._schema_facts:
            return True
        present = ask()
        if present:
            self._schema_facts.add((kind, name))
        return present

    def has_table(self, table_name: str) -> bool:
        def ask() -> bool:
            engine = self._engine(self.conn_string_for_shard(sqlite_event_log.INDEX_SHARD_NAME))
            with engine.connect() as conn:
                return bool(engine.dialect.has_table(conn, table_name))

        return self._present("table", table_name, ask)

    def has_asset_key_col(self, column_name: str) -> bool:
        parent = super()
        return self._present("column", column_name, lambda: parent.has_asset_key_col(column_name))

    def has_secondary_index(self, name: str) -> bool:
        parent = super()
        return self._present("secondary_index", name, lambda: parent.has_secondary_index(name))

    def wipe(self) -> None:
        super().wipe()
        self._schema_facts.clear()

    def store_event_batch(self, events: Sequence[Any]) -> None:
        """Store ``events`` as ``store_event`` would, each file written in one transaction."""
        with self._db_lock:
            batch: dict[str, Connection] = {}
            self._batch.connections = batch
            try:
                for event in events:
                    self.store_event(event)
                for conn in batch.values():
                    conn.commit()
            except BaseException:
                for conn in batch.values():
                    conn.rollback()
                raise
            finally:
                self._batch.connections = None
                for conn in batch.values():
                    conn.close()

    def dispose(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()
            if self._index_keeper is not None:
                self._index_keeper.close()
                self._index_keeper = None
        super().dispose()
