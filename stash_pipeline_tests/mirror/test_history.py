"""`stash-pipeline history` / `status`: the timeline of one entity across real syncs."""

import duckdb
import pytest
from click.testing import CliRunner

from stash_pipeline.cli import main
from stash_pipeline.history import MirrorBusyError, entity_timeline, open_read_only
from stash_pipeline_tests.sync_harness import ENTITY_NAMES


def test_history_shows_creation_update_and_deletion(mirror_env, monkeypatch):
    env = mirror_env()
    env.full()
    scene = env.fake.mutations.create("scene", title="Brand new scene")
    assert env.incremental().success
    env.fake.mutations.update("scene", scene, title="Renamed scene", rating100=42)
    assert env.incremental().success
    env.fake.mutations.destroy("scene", [scene])
    assert env.incremental().success

    with duckdb.connect(env.db_path, read_only=True) as con:
        actions = [(e.sync_type, e.action) for e in entity_timeline(con, "scenes", scene)]
    assert actions[-3:] == [
        ("incremental", "created"),
        ("incremental", "updated"),
        ("incremental", "deleted"),
    ]

    monkeypatch.setenv("STASH_PIPELINE_DB", env.db_path)
    result = CliRunner().invoke(main, ["history", "scenes", str(scene)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "not in the mirror" in lines[0]
    assert any("created" in line for line in lines)
    assert any("updated" in line and "title" in line and "rating100" in line for line in lines)
    assert any("deleted" in line for line in lines)
    # A scene that only full syncs saw lists those full syncs.
    other = env.fake.truth()["scenes"][0]["id"]
    result = CliRunner().invoke(main, ["history", "scene", str(other)])
    assert result.exit_code == 0
    assert "full sync (success)" in result.output or "created" in result.output


def test_status_lists_every_type(mirror_env, monkeypatch):
    env = mirror_env()
    env.full()
    monkeypatch.setenv("STASH_PIPELINE_DB", env.db_path)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 0, result.output
    for name in ENTITY_NAMES:
        line = next(line for line in result.output.splitlines() if line.startswith(name))
        assert "success" in line


def test_history_says_when_a_sync_holds_the_file(tmp_path, monkeypatch):
    path = str(tmp_path / "busy.duckdb")
    import subprocess
    import sys

    # Another process holds the file open for writing, as a running sync does.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({path!r}); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(MirrorBusyError, match="a sync is running"):
            open_read_only(path)
        monkeypatch.setenv("STASH_PIPELINE_DB", path)
        result = CliRunner().invoke(main, ["status"])
        assert result.exit_code != 0
        assert "a sync is running" in result.output
    finally:
        holder.communicate("")
