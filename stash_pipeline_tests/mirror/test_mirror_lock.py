"""Another process holding the mirror file (a user's DuckDB session): the sync names it at once,
waits the configured time, and then fails with that message; released in time, the sync goes on."""

import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from stash_pipeline.mirror.db import MirrorLockedError, connect_writer
from stash_pipeline.runner import _root_cause
from stash_pipeline_tests.mirror.conftest import MirrorEnv

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
sys.stdin.readline()
con.close()
print("released", flush=True)
"""


class Reader:
    """A separate process with the file open read-only until ``release()``."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "holding"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(timeout=30)


@pytest.fixture
def synced(mirror_env) -> MirrorEnv:
    env: MirrorEnv = mirror_env()
    assert env.full().success
    return env


def test_a_reader_holding_the_file_is_named_then_the_sync_fails_past_the_wait(synced) -> None:
    reader = Reader(synced.db_path)
    try:
        result = synced.incremental(lock_wait_seconds=1.5, raise_on_error=False)
    finally:
        reader.release()
    assert not result.success
    logs = [e.message for e in synced.instance.all_logs(result.run_id) if e.message]
    waiting = [m for m in logs if "waiting up to 2 s for it to close" in m]
    assert waiting, logs[-10:]
    assert f"is open in process {reader.proc.pid} (" in waiting[0]
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = _root_cause(failure.step_failure_data.error)
    assert f"still open in process {reader.proc.pid}" in message
    assert "STASH_LOCK_WAIT_SECONDS" in message
    assert synced.incremental().success  # released: the next run goes through
    synced.assert_equal()


def test_a_reader_that_lets_go_within_the_wait_is_waited_for(tmp_path: Path) -> None:
    path = str(tmp_path / "mirror.duckdb")
    duckdb.connect(path).close()
    reader = Reader(path)
    said: list[str] = []

    def log(message: str) -> None:  # called once, when the writer first finds the file held
        said.append(message)
        threading.Thread(target=reader.release).start()

    con = connect_writer(path, wait_seconds=120, log=log)
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    assert len(said) == 1
    assert f"open in process {reader.proc.pid}" in said[0]


def test_other_io_errors_are_not_taken_for_a_lock(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "mirror.duckdb"
    with pytest.raises(duckdb.IOException):
        connect_writer(str(missing_dir), wait_seconds=60)
    assert not issubclass(MirrorLockedError, duckdb.IOException)
