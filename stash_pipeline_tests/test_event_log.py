"""The event log storage (stash_pipeline/event_log.py) on a real DAGSTER_HOME: an existing history
written by Dagster's default storage is read and extended after the upgrade, every event lands in
the run's file and the cross-run index as before, and engines are reused, not rebuilt per write."""

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy

from stash_pipeline import event_log
from stash_pipeline.event_log import ReusedEngineSqliteEventLogStorage
from stash_pipeline.instance import INSTANCE_YAML, ensure_dagster_home, instance_yaml


@dg.asset
def probe_asset() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.asset_check(asset=probe_asset)
def probe_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


# What stash-pipeline wrote before this storage: the same first line, Dagster's default storage.
_OLD_YAML = INSTANCE_YAML.splitlines()[0] + "\ntelemetry:\n  enabled: false\n"


def _materialize(instance: dg.DagsterInstance) -> str:
    result = dg.materialize([probe_asset, probe_check], instance=instance)
    assert result.success
    return result.run_id


def _materializations(instance: dg.DagsterInstance) -> list[str]:
    records = instance.fetch_materializations(dg.AssetKey("probe_asset"), limit=10).records
    return [r.run_id for r in records]


@contextmanager
def _no_dagster_home():
    saved = os.environ.pop("DAGSTER_HOME")
    try:
        yield
    finally:
        os.environ["DAGSTER_HOME"] = saved


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path / "dagster_home"


def test_an_existing_history_is_kept_and_extended(home):
    home.mkdir()
    (home / "dagster.yaml").write_text(_OLD_YAML)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        old_run = _materialize(instance)

    ensure_dagster_home()  # the CLI's upgrade of its own instance yaml
    assert (home / "dagster.yaml").read_text() == instance_yaml(home)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, ReusedEngineSqliteEventLogStorage)
        assert instance.get_run_by_id(old_run) is not None
        assert _materializations(instance) == [old_run]
        new_run = _materialize(instance)
        # The run's own file, the asset index and the check index all have the new run.
        assert _materializations(instance) == [new_run, old_run]
        run_events = instance.all_logs(new_run, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        assert len(run_events) == 1
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("probe_asset"), "probe_check")]
        )
        assert next(iter(check.values())).run_id == new_run
    # Opened from its directory alone, as scripts do (no DAGSTER_HOME): the same history.
    with _no_dagster_home(), dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, ReusedEngineSqliteEventLogStorage)
        assert _materializations(instance) == [new_run, old_run]
    # Same files where Dagster keeps them: the old storage reads the new run too.
    (home / "dagster.yaml").write_text(_OLD_YAML)
    with dg.DagsterInstance.get() as instance:
        assert _materializations(instance) == [new_run, old_run]


def test_engines_are_reused_and_bounded(home, monkeypatch):
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, ReusedEngineSqliteEventLogStorage)
        first = _materialize(instance)
        index_engine = storage._engines[storage.conn_string_for_shard("index")]
        run_engine = storage._engines[storage.conn_string_for_shard(first)]
        # Reading the run's events again goes through the same engine: none was built or dropped.
        assert instance.all_logs(first)
        assert storage._engines[storage.conn_string_for_shard(first)] is run_engine

        second = _materialize(instance)  # a second run writes to the index through the same engine
        assert storage._engines[storage.conn_string_for_shard("index")] is index_engine

        monkeypatch.setattr(event_log, "ENGINES_KEPT", 2)
        third = _materialize(instance)
        assert len(storage._engines) == 2
        assert storage.conn_string_for_shard(first) not in storage._engines  # least recently used
        assert storage.conn_string_for_shard(third) in storage._engines
        # A dropped engine is rebuilt when its file is read again, with the events intact.
        assert len(instance.all_logs(first)) == len(instance.all_logs(second))


def test_without_dagster_home_it_says_so(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(ValueError, match="DAGSTER_HOME is not set"):
        ReusedEngineSqliteEventLogStorage.from_config_value(None, {})


YEARS = dg.StaticPartitionsDefinition(["2021", "2022", "2023", "2024", "2025"])


@dg.asset(partitions_def=YEARS, backfill_policy=dg.BackfillPolicy.single_run())
def yearly_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"years": len(context.partition_keys)})


def _materialize_every_year(instance: dg.DagsterInstance) -> str:
    result = dg.materialize(
        [yearly_asset],
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2021", "dagster/asset_partition_range_end": "2025"},
    )
    assert result.success
    return result.run_id


def _partitions_materialized(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Per partition, from the cross-run index; and the run's own file must hold as many."""
    by_index = sorted(
        r.partition_key
        for r in instance.fetch_materializations(dg.AssetKey("yearly_asset"), limit=100).records
        if r.run_id == run_id
    )
    in_run = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert len(in_run) == len(by_index)
    return by_index


def test_a_batch_of_events_is_stored_in_one_transaction_per_file(home, monkeypatch):
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == event_log.EVENT_BATCH_SIZE  # set by the storage
        batches: list[int] = []
        store_batch = storage.store_event_batch

        def counted(events):
            batches.append(len(events))
            store_batch(events)

        monkeypatch.setattr(storage, "store_event_batch", counted)
        run_id = _materialize_every_year(instance)
        # The five partition materializations went as one batch (and so did the planned events).
        assert 5 in batches
        assert _partitions_materialized(instance, run_id) == list(YEARS.get_partition_keys())
        # Every partition's materialization is in the asset index, readable per partition.
        latest = instance.get_latest_materialization_event(dg.AssetKey("yearly_asset"))
        assert latest.run_id == run_id


def test_a_batch_that_fails_is_rolled_back_whole_and_stored_event_by_event(home, monkeypatch):
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        store_event, store_batch = storage.store_event, storage.store_event_batch
        in_batch: list[int] = []  # events stored so far by the batch under way
        failed: list[int] = []  # one entry per batch that failed part-way

        def batch(events):
            in_batch[:] = [0]
            try:
                store_batch(events)
            finally:
                in_batch.clear()

        def third_of_each_batch_fails(event):
            if in_batch:
                in_batch[0] += 1
                if in_batch[0] == 3:
                    failed.append(in_batch[0])
                    raise OSError("disk I/O error (injected)")
            store_event(event)

        monkeypatch.setattr(storage, "store_event_batch", batch)
        monkeypatch.setattr(storage, "store_event", third_of_each_batch_fails)
        run_id = _materialize_every_year(instance)
        assert len(failed) >= 2  # the planned events' batch and the materializations' batch
        # Nothing of a failed batch was kept: Dagster's fallback stored each event exactly once.
        assert _partitions_materialized(instance, run_id) == list(YEARS.get_partition_keys())
        planned = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        assert len(planned) == len({e.dagster_event.event_specific_data.partition for e in planned})


@contextmanager
def _index_connections(storage: ReusedEngineSqliteEventLogStorage) -> Iterator[list[object]]:
    """Every connection opened to the index while inside (its engine pools none: one per use)."""
    engine = storage._engine(storage.conn_string_for_shard("index"))
    opened: list[object] = []

    def on_connect(dbapi_connection, _record):
        opened.append(dbapi_connection)

    sqlalchemy.event.listen(engine, "connect", on_connect)
    try:
        yield opened
    finally:
        sqlalchemy.event.remove(engine, "connect", on_connect)


def test_schema_answers_found_present_are_kept_and_absent_ones_asked_again(home):
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        _materialize(instance)
        questions = (
            lambda: storage.has_table("asset_keys"),
            lambda: storage.has_asset_key_col("last_materialization_timestamp"),
            lambda: storage.has_secondary_index("asset_key_table"),
        )
        assert all(ask() for ask in questions)
        # Dagster asks again on nearly every event: a present answer needs no connection.
        with _index_connections(storage) as opened:
            for _ in range(20):
                assert all(ask() for ask in questions)
            assert opened == []
        # An absent table is asked each time, so a migration in the meantime is seen.
        with _index_connections(storage) as opened:
            assert not storage.has_table("added_later")
            assert not storage.has_table("added_later")
            assert len(opened) == 2
        with sqlite3.connect(storage.path_for_shard("index")) as index:
            index.execute("CREATE TABLE added_later (x INTEGER)")
        assert storage.has_table("added_later")
        # A wipe forgets what was found: the index is asked again.
        storage.wipe()
        with _index_connections(storage) as opened:
            assert storage.has_table("asset_keys")
            assert len(opened) == 1
        # And a run after all this is stored and read as before.
        run_id = _materialize(instance)
        assert _materializations(instance) == [run_id]


def test_commits_do_not_wait_for_the_disk_and_other_readers_see_them(home, tmp_path):
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        run_id = _materialize(instance)
        # A run's own file: no fsync; the index: fsync at checkpoints only (WAL mode, never corrupt).
        with storage.run_connection(run_id) as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0  # OFF
        with storage.index_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        # The idle connection kept on the index: each write's close is not the last one, so the
        # WAL stays (no checkpoint and its fsyncs per write) ...
        index = Path(storage.path_for_shard("index"))
        assert Path(f"{index}-wal").exists()
        # ... and a reader in another storage (Dagster's own, as in an older process) still sees
        # every committed event meanwhile.
        other = tmp_path / "other_home"
        other.mkdir()
        (other / "dagster.yaml").write_text(
            _OLD_YAML + f"event_log_storage:\n  module: dagster._core.storage.event_log\n"
            f"  class: SqliteEventLogStorage\n  config:\n    base_dir: {index.parent}\n"
        )
        with _no_dagster_home(), dg.DagsterInstance.from_config(str(other)) as reader:
            assert [
                r.run_id for r in reader.fetch_materializations(dg.AssetKey("probe_asset"), limit=5).records
            ] == [run_id]
    # Closed: the last connection checkpoints the WAL into the file.
    assert not Path(f"{index}-wal").exists()
    con = sqlite3.connect(index)
    try:
        assert con.execute("SELECT count(*) FROM event_logs WHERE run_id = ?", [run_id]).fetchone()[0] > 0
    finally:
        con.close()
