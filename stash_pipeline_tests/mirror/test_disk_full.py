"""A mirror on a disk that fills up mid-sync: the run fails with a message naming the disk and the
mirror, the mirror still opens, and once space is freed the next run completes it.

The disk is a small tmpfs mounted by the test (root only: elsewhere the tests are skipped, saying
why); a filler file leaves less room than the sync needs.
"""

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.runner import _root_cause
from stash_pipeline_tests.mirror.conftest import MirrorEnv

SIZE = LibrarySize(scenes=300, images=3000)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _bytes_of(db_path: str) -> int:
    return sum(p.stat().st_size for p in Path(db_path).parent.glob(Path(db_path).name + "*"))


def test_a_full_disk_fails_clearly_keeps_the_mirror_and_the_next_run_resumes(mirror_env, small_disk) -> None:
    reference: MirrorEnv = mirror_env(size=SIZE)
    assert reference.full().success
    needed = _bytes_of(reference.db_path)

    env = dataclasses.replace(reference, db_path=str(small_disk / "mirror.duckdb"))
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (free - min(needed // 3, 256 * 1024)))  # too little room for the mirror

    failed = env.full(raise_on_error=False)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    message = _root_cause(failure.step_failure_data.error)
    assert "the disk holding the mirror is full" in message
    assert str(small_disk) in message
    assert env.db_path in message

    with duckdb.connect(env.db_path, read_only=True) as con:  # the mirror still opens
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "scenes" in tables

    filler.unlink()
    assert env.full().success
    env.assert_equal()
