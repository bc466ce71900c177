"""Yearly partitions (the default), monthly on request, and the upgrade from monthly ones: the first
run after the change is a full sync over every partition, said so in its log."""

from datetime import date

import dagster as dg
import pytest

from stash_pipeline.assets.metadata import SyncMetadata, incremental_start
from stash_pipeline.assets.partitions import entity_partitions, keys_covering, window_for
from stash_pipeline.automation.probe import changed_types
from stash_pipeline.definitions import build_definitions
from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline.settings import Settings
from stash_pipeline_tests.dagster_instance import project_test_instance
from stash_pipeline_tests.expected_mirror import mirror_differences
from stash_pipeline_tests.sync_harness import open_db

START = date(2021, 6, 1)


def test_yearly_partitions_cover_from_the_start_year_to_this_one() -> None:
    partitions = entity_partitions(START)
    keys = partitions.get_partition_keys()
    assert keys[0] == "2021"
    assert keys[-1] == str(date.today().year)  # the current year is a partition (end_offset=1)
    assert len(keys) == date.today().year - 2021 + 1
    # A middle range stands for its years' dates; the first is open below, the last above.
    assert window_for(partitions, ["2022", "2023"], None).lower == "2022-01-01"
    assert window_for(partitions, ["2022", "2023"], None).upper == "2024-01-01"
    assert window_for(partitions, keys, None).lower is None
    assert window_for(partitions, keys, None).upper is None
    assert keys_covering(partitions, date(2023, 3, 1)) == ("2023", keys[-1])


def test_monthly_partitions_on_request_and_bad_values_refused() -> None:
    assert Settings.from_env({}, env_file=None).partition_by == "year"
    settings = Settings.from_env({"STASH_PARTITIONS": "month"}, env_file=None)
    assert settings.partition_by == "month"
    assert entity_partitions(START, "month").get_partition_keys()[0] == "2021-06-01"
    with pytest.raises(ValueError, match="STASH_PARTITIONS"):
        Settings.from_env({"STASH_PARTITIONS": "week"}, env_file=None)


def test_an_incremental_range_starts_where_new_rows_can_land() -> None:
    fresh = SyncMetadata(
        cursor="2022-05-01T00:00:00Z", fresh_bound="2026-11-30T10:00:00", partitioning="year"
    )
    assert incremental_start([fresh], "year") == date(2026, 11, 30)
    assert incremental_start([fresh, SyncMetadata()], "year") is None  # never synced: all
    old = SyncMetadata(cursor="2026-11-30T10:00:00Z")  # recorded before partitioning was
    assert incremental_start([old], "year") is None
    assert "partitions are by year now" in changed_types(
        {s.name: old for s in ENTITY_SPECS}, {}, 0, "year"
    ).get("studios", "")


def _sync(defs: dg.Definitions, instance: dg.DagsterInstance, mode: str) -> dg.ExecuteInProcessResult:
    from stash_pipeline.runner import run_sync

    outcome = run_sync(defs, instance, types=["studios", "tags"], mode=mode, with_derived=False)
    assert outcome.success, outcome.error
    return instance.get_run_by_id(outcome.run_id)


def test_after_switching_from_monthly_to_yearly_the_first_run_is_a_full_sync(
    tmp_path, make_fake_server, monkeypatch
) -> None:
    fake = FakeStash.generated(LibrarySize(scenes=20, images=40), seed=5)
    server = make_fake_server(fake)
    db = str(tmp_path / "mirror.duckdb")
    monkeypatch.setenv("STASH_URL", server.url)  # the resources read it from the environment
    start = date(date.today().year - 1, 1, 1)
    with project_test_instance() as instance:
        monthly = build_definitions(Settings.from_env({**_env(server.url, db), "STASH_PARTITIONS": "month"}))
        _sync(monthly, instance, "full")
        months = instance.get_materialized_partitions(dg.AssetKey("studios"))
        assert f"{start.year}-01-01" in months

        # Nothing changed in Stash, but the partitions did: the next incremental run is a full one.
        yearly = build_definitions(Settings.from_env(_env(server.url, db)))
        run = _sync(yearly, instance, "incremental")
        assert run.tags["dagster/asset_partition_range_start"] == str(start.year)  # every partition
        logs = [e.message for e in instance.all_logs(run.run_id) if e.message]
        assert any("the partitions are by year now" in m and "full sync" in m for m in logs), logs
        latest = SyncMetadata.latest(instance, "studios")
        assert (latest.sync_type, latest.partitioning) == ("full", "year")
        years = instance.get_materialized_partitions(dg.AssetKey("studios"))
        assert {str(start.year), str(start.year + 1)} <= years

        again = _sync(yearly, instance, "incremental")  # and then incremental again
        assert SyncMetadata.latest(instance, "studios").sync_type == "incremental"
        assert again.tags["dagster/asset_partition_range_start"] == str(date.today().year)
    with open_db(db) as con:
        problems = [p for p in mirror_differences(con, fake.truth()) if p.startswith(("studios", "tags"))]
    assert problems == []


def _env(url: str, db: str) -> dict[str, str]:
    return {
        "STASH_URL": url,
        "STASH_PIPELINE_DB": db,
        "STASH_RETRIES": "1",
        "STASH_PARTITION_START": date(date.today().year - 1, 1, 1).isoformat(),
    }
