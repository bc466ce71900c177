"""Targeted resync of given ids: ``stash-pipeline sync-ids`` (the CLI, a subprocess) and the Dagster
job ``resync_ids``.

Changes that bump nothing in Stash and that no check of the incremental run looks for (a field
edited behind Stash's back) are invisible to an incremental sync; a targeted resync picks them up for exactly the ids given, deletes
locally the ids Stash no longer has (not an error for the others), and is recorded as sync_type
'specific'.  The CLI run also recomputes the derived tables in the same run.
"""

import dagster as dg
import duckdb

from stash_pipeline.assets.derived import DERIVED_GROUP
from stash_pipeline.definitions import build_definitions
from stash_pipeline.settings import Settings
from stash_pipeline_tests.cli_harness import CliEnv, outcome, run_id_of
from stash_pipeline_tests.expected_derived import derived_differences
from stash_pipeline_tests.mirror.test_incremental_scenarios import synced
from stash_pipeline_tests.sync_harness import PARTITION_START


def edit_silently(fake, scene_id: int, value: str, field: str = "title") -> None:
    """A change Stash makes without bumping updated_at (here: written straight into its store)."""
    with fake.store.lock:
        fake.store.tables["scene"][scene_id][field] = value
        fake.store.touch()


def scene(env, scene_id: int) -> tuple | None:
    rows = env.query("SELECT title, o_counter FROM scenes WHERE id = ?", [scene_id])
    return rows[0] if rows else None


def details(env, scene_id: int) -> str | None:
    return env.query("SELECT details FROM scenes WHERE id = ?", [scene_id])[0][0]


def truth_scene(env, scene_id: int) -> tuple:
    entity = next(s for s in env.fake.truth()["scenes"] if s["id"] == scene_id)
    return entity["title"], entity["o_counter"]


def run_log(env, run_id: str) -> dict[int, tuple]:
    rows = env.query(
        "SELECT entity_id, action, changed_fields, sync_type FROM sync_log "
        "WHERE run_id = ? AND entity_type = 'scenes'",
        [run_id],
    )
    return {r[0]: (r[1], sorted(r[2] or []), r[3]) for r in rows}


def test_cli_sync_ids(mirror_env, tmp_path):
    env = synced(mirror_env())
    fake = env.fake
    o_before = scene(env, 11)[1]
    fake.mutations.scene_add_o(11)  # bumps nothing, but the incremental run's activity check sees it
    edit_silently(fake, 12, "details edited without a bump", field="details")
    edit_silently(fake, 13, "edited without a bump")
    edit_silently(fake, 15, "not asked for")
    assert env.incremental().success
    assert scene(env, 11)[1] == o_before + 1
    assert details(env, 12) != "details edited without a bump"  # these it cannot see
    assert scene(env, 13)[0] != "edited without a bump"
    fake.mutations.destroy("scene", [14])  # (the next incremental would see the count drop)

    cli = CliEnv(fake, env.server, tmp_path / "cli", db_file=env.db_path)
    result = cli.run("sync-ids", "scenes", "12", "13", "14")
    assert result.returncode == 0, outcome(result)
    run_id = run_id_of(result.stdout)

    assert details(env, 12) == "details edited without a bump"
    assert scene(env, 12) == truth_scene(env, 12)
    assert scene(env, 13) == truth_scene(env, 13)
    assert scene(env, 14) is None
    assert scene(env, 15)[0] != "not asked for"  # exactly the ids given
    assert run_log(env, run_id) == {
        12: ("updated", ["details"], "specific"),
        13: ("updated", ["title"], "specific"),
        14: ("deleted", [], "specific"),
    }
    assert env.query(
        "SELECT sync_type, status, fetched, updated, deleted FROM sync_runs "
        "WHERE run_id = ? AND entity_type = 'scenes'",
        [run_id],
    ) == [("specific", "success", 2, 2, 1)]
    assert env.differences() == [
        "scenes[15].title: mirror " + repr(scene(env, 15)[0]) + " != stash 'not asked for'"
    ]

    # The derived tables were recomputed in the same run (no daemon needed).
    with cli.instance() as instance:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        materialized = {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records}
        defs = build_definitions(Settings(partition_start=PARTITION_START))
        graph = defs.resolve_asset_graph()
        derived = {
            k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == DERIVED_GROUP
        }
    assert derived
    assert derived <= materialized
    assert "scenes" in materialized
    with duckdb.connect(env.db_path, read_only=True) as con:  # computed from the resynced rows
        assert derived_differences(con, fake.truth()) == []


def test_resync_ids_job(mirror_env, monkeypatch):
    env = synced(mirror_env())
    fake = env.fake
    edit_silently(fake, 20, "job picked this up")
    fake.mutations.scene_add_o(21)
    fake.mutations.destroy("scene", [22])

    # The job as the code location defines it: resources from the environment (definitions.py).
    for name in ("STASH_API_KEY", "STASH_TIMEOUT", "STASH_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STASH_URL", env.server.url)
    monkeypatch.setenv("STASH_PIPELINE_DB", env.db_path)
    monkeypatch.setenv("STASH_PARTITION_START", PARTITION_START.isoformat())
    monkeypatch.setenv("STASH_PAGE_SIZE", "100")
    defs = build_definitions(Settings.from_env(env_file=None))
    job = defs.resolve_job_def("resync_ids")
    ids = [20, 21, 22, 99_999]  # 99999 never existed: not an error either
    result = job.execute_in_process(
        run_config={"ops": {"resync_ids_op": {"config": {"entity_type": "scenes", "ids": ids}}}},
        instance=env.instance,
    )
    assert result.success

    assert scene(env, 20) == truth_scene(env, 20) == ("job picked this up", truth_scene(env, 20)[1])
    assert scene(env, 21) == truth_scene(env, 21)
    assert scene(env, 22) is None
    assert run_log(env, result.run_id) == {
        20: ("updated", ["title"], "specific"),
        21: ("updated", ["o_counter", "o_history"], "specific"),  # the O is also a history row
        22: ("deleted", [], "specific"),
    }
    assert env.query(
        "SELECT sync_type, status, deleted FROM sync_runs WHERE run_id = ? AND entity_type = 'scenes'",
        [result.run_id],
    ) == [("specific", "success", 1)]
    events = result.asset_materializations_for_node("resync_ids_op")
    assert [e.asset_key for e in events] == [dg.AssetKey("scenes")]
    meta = {k: getattr(v, "value", v) for k, v in events[0].metadata.items()}
    assert (meta["sync_type"], meta["updated"], meta["deleted"], meta["failed"]) == ("specific", 2, 1, 0)
    env.assert_equal()
