"""The ``stash-pipeline`` CLI as users run it: a subprocess, against a fake Stash over HTTP, with its
DuckDB file and DAGSTER_HOME in a temporary directory.

Covered: ``sync`` (a first run on an empty mirror is a full one), ``sync --types``, ``sync --since``,
``sync --full``, usage errors, and the API key: never printed, never stored (DuckDB, Dagster run
config, event logs, any file under DAGSTER_HOME), and a wrong or missing key fails fast and says so.
"""

import time
from pathlib import Path

import duckdb
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline_tests.cli_harness import CliEnv, outcome, run_id_of
from stash_pipeline_tests.mirror.conftest import SCENARIO_SIZE
from stash_pipeline_tests.sync_harness import ENTITY_NAMES

API_KEY = "stash-test-key-Q7x2Lp9Zr4"


def runs_of(env: CliEnv, run_id: str) -> dict[str, tuple]:
    rows = env.query(
        "SELECT entity_type, sync_type, status, fetched, updated FROM sync_runs WHERE run_id = ?", [run_id]
    )
    return {r[0]: r[1:] for r in rows}


def column(env: CliEnv, table: str, name: str, entity_id: int):
    return env.query(f"SELECT {name} FROM {table} WHERE id = ?", [entity_id])[0][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sync", "--types", "scenes,bogus"], "unknown entity type 'bogus'"),
        (["sync", "--full", "--since", "2024-01-01"], "--full and --since exclude each other"),
        (["sync-ids", "bogus", "1"], "unknown entity type 'bogus'"),
        (["sync-ids", "scenes", "twelve"], "'twelve' is not a valid integer"),
    ],
)
def test_usage_errors_are_clear(tmp_path, make_fake_server, args, message):
    fake = FakeStash()
    env = CliEnv(fake, make_fake_server(fake), tmp_path)
    result = env.run(*args, timeout=60)
    assert result.returncode == 2, outcome(result)
    assert message in result.stderr
    assert "Usage: stash-pipeline" in result.stderr
    assert fake.request_count == 0  # refused before talking to Stash
    assert not Path(env.db_path).exists()


def test_sync_modes_and_the_api_key_is_never_shown(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=11, api_key=API_KEY)
    env = CliEnv(fake, make_fake_server(fake), tmp_path, api_key=API_KEY)
    results = []

    def cli(*args: str) -> str:
        result = env.run(*args)
        results.append(result)
        assert result.returncode == 0, outcome(result)
        return run_id_of(result.stdout)

    # 1. `sync` on an empty mirror: every type gets a full sync, and the derived tables follow.
    first = cli("sync")
    assert {t: r[:2] for t, r in runs_of(env, first).items()} == dict.fromkeys(
        ENTITY_NAMES, ("full", "success")
    )
    assert "derived: " in results[-1].stdout
    env.assert_equal()

    # Edits stamped two days ahead, so `--since` can pick them out exactly.
    fake.clock.freeze(time.time() + 2 * 86400)
    truth = fake.truth()
    scene, image, performer = truth["scenes"][3]["id"], truth["images"][7]["id"], truth["performers"][2]["id"]
    fake.mutations.update("scene", scene, title="CLI edited scene")
    fake.mutations.update("image", image, title="CLI edited image")
    fake.mutations.update("performer", performer, details="CLI edited performer")
    o_scene = truth["scenes"][5]["id"]
    fake.mutations.scene_add_o(o_scene)  # bumps nothing: the activity check finds it

    # 2. `sync --types scenes,images`: an incremental run of those two types only.
    second = cli("sync", "--types", "scenes,images")
    runs = runs_of(env, second)
    assert set(runs) == {"scenes", "images"}
    for name, edits in (("scenes", 2), ("images", 1)):  # the edits, plus what the window re-reads
        sync_type, status, fetched, updated = runs[name]
        assert (sync_type, status, updated) == ("incremental", "success", edits)
        assert fetched >= edits
    assert column(env, "scenes", "title", scene) == "CLI edited scene"
    assert column(env, "performers", "details", performer) != "CLI edited performer"
    assert column(env, "scenes", "o_counter", o_scene) == truth["scenes"][5]["o_counter"] + 1

    # 3. `sync --since`: from the given timestamp (the server's format), not from the cursor.
    since = fake.clock.stamp(fake.clock.now() - 3600)
    third = cli("sync", "--since", since, "--types", "performers,tags")
    runs = runs_of(env, third)
    assert runs["performers"] == ("incremental", "success", 1, 1)
    assert runs["tags"][:3] == ("incremental", "skipped", 0)  # nothing since then
    assert column(env, "performers", "details", performer) == "CLI edited performer"

    # 4. `sync --full`: re-reads everything.
    fourth = cli("sync", "--full", "--types", "scenes")
    runs = runs_of(env, fourth)
    assert set(runs) == {"scenes"}
    assert runs["scenes"][:2] == ("full", "success")
    assert column(env, "scenes", "o_counter", o_scene) == truth["scenes"][5]["o_counter"] + 1
    env.assert_equal()

    # 5. A mass delete in Stash is refused (exit 1, saying why) until --allow-mass-delete.
    doomed = [i["id"] for i in truth["images"][:30]]  # 30 of 400: above the 5% limit
    fake.mutations.destroy("image", doomed)
    refused = env.run("sync", "--types", "images")
    results.append(refused)
    assert refused.returncode == 1, outcome(refused)
    assert "refusing to delete 30 of 400 local rows" in refused.stderr
    assert "--allow-mass-delete" in refused.stderr
    assert env.query("SELECT count(*) FROM images") == [(400,)]
    fifth = run_id_of(refused.stdout)
    sixth = cli("sync", "--types", "images", "--allow-mass-delete")
    assert env.query("SELECT deleted FROM sync_runs WHERE run_id = ?", [sixth]) == [(30,)]
    env.assert_equal()

    # The key was sent (the fake refuses requests without it) but shows up nowhere.
    for result in results:
        assert API_KEY not in result.stdout
        assert API_KEY not in result.stderr
    with duckdb.connect(env.db_path, read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        assert {"sync_runs", "sync_log", "sync_state"} <= set(tables)
        for table in tables:
            assert API_KEY not in str(con.execute(f"SELECT * FROM {table}").fetchall()), table
    with env.instance() as instance:
        run_ids = [r.run_id for r in instance.get_runs()]
        assert set(run_ids) == {first, second, third, fourth, fifth, sixth}
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            assert API_KEY not in repr(run.run_config)
            assert API_KEY not in repr(run.tags)
            for entry in instance.all_logs(run_id):
                assert API_KEY not in str(entry)
    secret = API_KEY.encode()
    for path in [*env.dagster_home.rglob("*"), *env.root.glob("mirror.duckdb*")]:
        if path.is_file():
            assert secret not in path.read_bytes(), path


def test_a_wrong_or_missing_api_key_fails_fast_and_says_so(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=11, api_key=API_KEY)
    server = make_fake_server(fake)
    wrong = "wrong-key-Hh8Kd3Vn1"
    env = CliEnv(fake, server, tmp_path / "wrong", api_key=wrong)
    result = env.run("sync")
    assert result.returncode == 1, outcome(result)
    assert "rejected the API key (HTTP 401)" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert API_KEY not in result.stdout + result.stderr
    # No retries on a 401: at most one request per entity step before the run gives up.
    assert fake.request_count <= len(ENTITY_NAMES)
    assert env.query("SELECT count(*) FROM scenes") == [(0,)]

    missing = CliEnv(fake, server, tmp_path / "missing")
    result = missing.run("sync", "--types", "tags")
    assert result.returncode == 1, outcome(result)
    assert "requires an API key (HTTP 401) and none is set" in result.stderr


def test_status_names_what_an_older_stash_does_not_offer(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=4, version="v0.27.2")
    env = CliEnv(fake, make_fake_server(fake), tmp_path)
    result = env.run("sync")
    assert result.returncode == 0, outcome(result)
    env.assert_equal()  # what v0.27.2 holds; sort_name NULL, one URL per studio read from url
    status = env.run("status")
    assert status.returncode == 0, outcome(status)
    assert "not offered by Stash v0.27.2: studios.urls, read from studios.url" in status.stdout
    assert "not offered by Stash v0.27.2: tags.sort_name" in status.stdout
    assert env.query("SELECT count(*) FROM tags WHERE sort_name IS NOT NULL") == [(0,)]
    assert env.query("SELECT DISTINCT stash_version FROM sync_state") == [("v0.27.2",)]


def test_status_says_when_a_sync_last_changed_each_type(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=6)
    env = CliEnv(fake, make_fake_server(fake), tmp_path)
    assert env.run("sync").returncode == 0

    def changed_at() -> dict[str, object]:
        return dict(env.query("SELECT entity_type, changed_at FROM mirror_changes"))

    first = changed_at()
    assert set(ENTITY_NAMES) <= set(first)  # every type was written by the first sync
    assert env.run("sync").returncode == 0  # finds nothing: nothing moves
    assert changed_at() == first
    fake.mutations.update("scene", fake.truth()["scenes"][0]["id"], title="changed for status")
    assert env.run("sync").returncode == 0
    after = changed_at()
    assert after["scenes"] > first["scenes"]
    assert {k: v for k, v in after.items() if k != "scenes"} == {
        k: v for k, v in first.items() if k != "scenes"
    }

    status = env.run("status")
    assert status.returncode == 0, outcome(status)
    header, *lines = status.stdout.splitlines()
    assert "last change" in header
    scenes = next(line for line in lines if line.startswith("scenes "))
    assert after["scenes"].strftime("%Y-%m-%d %H:%M") in scenes
