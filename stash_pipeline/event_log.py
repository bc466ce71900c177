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
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

ENGINES_KEPT = 32  # files with an engine kept (the index and the runs read or written lately)
# Events Dagster buffers into one ``store_event_batch`` call at most (a run's planned events, one
# output's partition materializations).  Read by Dagster at each event, so setting it when the
# storage is built is enough; an explicit setting is kept.
EVENT_BATCH_SIZE = "1000"


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
        super().dispose()
