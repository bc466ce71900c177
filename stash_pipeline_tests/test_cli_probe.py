"""``sync`` asks Stash first: an incremental sync that the sensor's one probe request, and a look
at the mirror file, prove would change nothing makes no Dagster run; anything else runs.

Each test runs the real CLI against a fake Stash over HTTP, and reads the Dagster instance and the
DuckDB file the CLI wrote.
"""

import shutil
from pathlib import Path

from stash_pipeline.assets.metadata import SyncMetadata
from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.versions import CURRENT, release
from stash_pipeline.mirror.evolution import layout_digest
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline_tests.cli_harness import CliEnv, outcome
from stash_pipeline_tests.mirror.conftest import SCENARIO_SIZE

QUIET = "no change in Stash since the last sync (one probe request): nothing to run"


def run_count(env: CliEnv) -> int:
    if not env.dagster_home.is_dir():  # before the first sync
        return 0
    with env.instance() as instance:
        return len(instance.get_run_records())


def sync_runs_rows(env: CliEnv) -> int:
    if not Path(env.db_path).is_file():
        return 0
    return env.query("SELECT count(*) FROM sync_runs")[0][0]


def ran(env: CliEnv, *args: str) -> str:
    """``sync *args``, which must make one run and end with exit code 0; its output."""
    before = run_count(env)
    result = env.run("sync", *args)
    assert result.returncode == 0, outcome(result)
    assert "\nrun " in "\n" + result.stdout, outcome(result)
    assert run_count(env) == before + 1
    return result.stdout


# Loaded only to make a run: a sync that finds nothing must not pay for them.
RUN_ONLY_MODULES = {
    "polars",
    "stash_pipeline.definitions",
    "stash_pipeline.mirror.sync",
    "stash_pipeline.mirror.frames",
}


def imported_modules(stderr: str) -> set[str]:
    """The modules a process imported, from Python's ``-X importtime`` report on its stderr."""
    lines = (
        line.partition("|")[2].partition("|")[2]
        for line in stderr.splitlines()
        if line.startswith("import time:")
    )
    return {name.strip() for name in lines} - {"imported package"}  # its header line


def quiet(env: CliEnv) -> None:
    """``sync`` that finds nothing: one request to Stash, no run, nothing written to the mirror, and
    none of what only a run needs imported."""
    runs, rows, requests = run_count(env), sync_runs_rows(env), env.fake.request_count
    result = env.run("sync", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, outcome(result)
    assert QUIET in result.stdout, outcome(result)
    assert env.fake.request_count == requests + 1
    assert run_count(env) == runs
    assert sync_runs_rows(env) == rows
    imported = imported_modules(result.stderr)
    assert "stash_pipeline.precheck" in imported  # the report is read
    assert imported & RUN_ONLY_MODULES == set()


def test_a_sync_that_would_find_nothing_makes_no_run_and_a_play_makes_one(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=12)
    env = CliEnv(fake, make_fake_server(fake), tmp_path)
    ran(env)  # the first sync (full: nothing recorded yet) is never skipped
    # Each type's record names the tables' layout it wrote (the sensor, which never opens the
    # mirror, tells an upgrade of stash-pipeline by it).
    with env.instance() as instance:
        layouts = {SyncMetadata.latest(instance, s.name).mirror_layout for s in ENTITY_SPECS}
    assert layouts == {layout_digest()}
    quiet(env)

    # A play bumps nothing; the probe's stats totals see it, and the run brings it in.
    scene = fake.truth()["scenes"][3]["id"]
    fake.mutations.scene_add_play(scene)
    out = ran(env)
    assert "probe: scenes: plays, O counts or activity changed" in out
    env.assert_equal()
    quiet(env)

    # --always-run runs without asking.
    requests = fake.request_count
    out = ran(env, "--always-run")
    assert "probe:" not in out
    assert fake.request_count > requests + 1


def test_a_mirror_unlike_the_last_sync_is_synced_not_trusted(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=13)
    env = CliEnv(fake, make_fake_server(fake), tmp_path)
    ran(env)
    backup = tmp_path / "backup.duckdb"
    shutil.copy(env.db_path, backup)
    fake.mutations.update("scene", fake.truth()["scenes"][0]["id"], title="after the backup")
    out = ran(env)
    assert "probe: scenes: rows changed at or after" in out

    # The user restores the older file: Stash is as the last sync saw it, the mirror is not.
    shutil.copy(backup, env.db_path)
    out = ran(env)
    assert "the mirror was last synced by another run than Dagster's last" in out
    env.assert_equal()
    quiet(env)

    # The file is gone: the run builds it again.
    Path(env.db_path).unlink()
    out = ran(env)
    assert f"probe: no mirror at {env.db_path}" in out
    env.assert_equal()

    # Stash is gone: no answer is no proof, so the run is made, and fails saying why.
    env.server.close()
    result = env.run("sync")
    assert result.returncode == 1, outcome(result)
    assert (
        "probe: the probe got no usable answer (StashUnavailableError); the run asks again" in result.stdout
    )
    assert "connection error" in result.stderr


def test_a_stash_upgraded_since_the_last_sync_is_synced(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=14, version="v0.28.1")
    old = CliEnv(fake, make_fake_server(fake), tmp_path)
    ran(old)
    quiet(old)

    # The same library, now served by the current release (what an upgrade of Stash is).
    fake.release = release(CURRENT)
    fake.version = fake.release.name
    env = CliEnv(fake, make_fake_server(fake), tmp_path)
    out = ran(env)
    now = release(CURRENT).version
    assert f"Stash is {now} now (v0.28.1 at the last sync): the run reads what this version offers" in out
    assert env.query("SELECT DISTINCT stash_version FROM sync_state") == [(now,)]
    env.assert_equal()  # with what the current release offers and v0.28.1 did not
    quiet(env)
