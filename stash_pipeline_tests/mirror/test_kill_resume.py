"""SIGKILL a full sync (the CLI, a separate process) in the middle of the images pages; the same
command run again resumes where the last committed page left off, and the mirror equals Stash.

The kill point is exact, not timed: the fake answers the first images pages and holds one request
(``slow`` fault, ``after`` the first pages), so when that request is seen the process is known to be
inside the images paging; then its whole process group is killed.
"""

import os
import signal
import time

import duckdb

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.mirror.schema import LINK_TABLES
from stash_pipeline.model import ENTITY_SPECS, SPECS_BY_NAME
from stash_pipeline.stash.queries import page_query
from stash_pipeline_tests.cli_harness import CliEnv, outcome, run_id_of

SIZE = LibrarySize(scenes=300, images=4000)  # 40 images pages of 100 (the CLI env's page size)
HELD_PAGE = 11  # images page 1 selects count; pages 2.. are the no-count query


def wait_for_held_request(env: CliEnv, proc, deadline_seconds: float = 180) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if env.fake.faults.fired:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    log = (env.root / "cli.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"the sync never reached images page {HELD_PAGE} (exit {proc.poll()}):\n{log}")


def duplicate_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = [s.name for s in ENTITY_SPECS] + list(LINK_TABLES)
    counts = {}
    for table in tables:
        total, distinct = con.execute(
            f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT * FROM {table})) FROM {table}"
        ).fetchone()
        if total != distinct:
            counts[table] = total - distinct
    return counts


def test_sigkill_mid_images_then_the_rerun_resumes(tmp_path, make_fake_server):
    fake = FakeStash.generated(SIZE, seed=3)
    # One page per batch and per transaction, so the kill point is exact in pages.
    env = CliEnv(
        fake,
        make_fake_server(fake),
        tmp_path,
        extra_env={"STASH_MERGE_ROWS": "100", "STASH_COMMIT_ROWS": "100"},
    )
    images_page = page_query(SPECS_BY_NAME["images"], False)
    fake.faults.add("slow", match=images_page, after=HELD_PAGE - 2, seconds=60)

    proc = env.start("sync", "--full")
    try:
        wait_for_held_request(env, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed_run = run_id_of_killed(env)

    # The file opens; what is there is exactly the committed pages, and the resume position says so.
    with duckdb.connect(env.db_path, read_only=True) as con:
        count, top = con.execute("SELECT count(*), max(id) FROM images").fetchone()
        resume_key, after_id = con.execute(
            "SELECT resume_key, resume_after_id FROM sync_state WHERE entity_type = 'images'"
        ).fetchone()
        status = con.execute(
            "SELECT status FROM sync_runs WHERE entity_type = 'images' AND run_id = ?", [killed_run]
        ).fetchone()
        assert duplicate_rows(con) == {}
    assert 0 < count <= (HELD_PAGE - 1) * 100, count
    assert count % 100 == 0, count  # whole pages only
    assert top == count == after_id  # the committed position is the last committed page
    assert resume_key.startswith("full")
    assert status == ("running",)  # killed: nobody could write its end

    # Stash moves on while nobody syncs: an edit below the resume point, a delete below it, and
    # later (3 h on) an edit above it and a new image.
    m = fake.mutations
    m.update("image", 5, title="edited after the kill")
    m.destroy("image", [10])
    fake.clock.advance(3 * 3600)
    m.update("image", 3000, title="edited three hours later")
    m.create("image", title="created after the kill")

    result = env.run("sync", "--full")
    assert result.returncode == 0, outcome(result)
    assert f"earlier run {killed_run} had died" in result.stdout
    rerun = run_id_of(result.stdout)

    env.assert_equal()
    with duckdb.connect(env.db_path, read_only=True) as con:
        assert duplicate_rows(con) == {}
        runs = dict(
            con.execute(
                "SELECT run_id, status FROM sync_runs WHERE entity_type = 'images' ORDER BY started_at"
            ).fetchall()
        )
        fetched, created, updated, deleted = con.execute(
            "SELECT fetched, created, updated, deleted FROM sync_runs "
            "WHERE entity_type = 'images' AND run_id = ?",
            [rerun],
        ).fetchone()
        state = con.execute(
            "SELECT resume_key, resume_after_id, resume_cursor, last_status FROM sync_state "
            "WHERE entity_type = 'images'"
        ).fetchone()
    assert runs == {killed_run: "interrupted", rerun: "success"}
    # Resumed: only the ids above the committed position were read again (plus a catch-up of the
    # few rows edited since), not all 4000.
    assert created == 4001 - count  # ids count+1 .. 4000, and the new 4001
    assert fetched < 4000 - count + 100, fetched
    assert updated >= 1
    assert deleted == 1
    assert state == (None, None, None, "success")

    with env.instance() as instance:
        assert instance.get_run_by_id(killed_run).status.value == "FAILURE"
        assert instance.get_run_by_id(rerun).status.value == "SUCCESS"
        slots = instance.event_log_storage.get_concurrency_info("duckdb_writer")
        assert slots.claimed_slots == []
        assert slots.pending_steps == []


def run_id_of_killed(env: CliEnv) -> str:
    """The killed run's id, from the CLI's instance (it never printed one)."""
    with env.instance() as instance:
        runs = instance.get_runs()
    assert len(runs) == 1, runs
    return runs[0].run_id
