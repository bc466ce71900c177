"""Upgrading stash-pipeline: a mirror written by an older version (columns and a link table
missing, the old sync_log index, no recorded schema version) is brought to the current schema in
place by one ``stash-pipeline sync``, filled, equal to the fake's truth, with its history kept."""

import duckdb
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.mirror.changes import version_of
from stash_pipeline.mirror.derived import DERIVED_TABLES, changed_by
from stash_pipeline.mirror.evolution import SCHEMA_VERSION, MirrorSchemaError, evolve
from stash_pipeline.mirror.schema import ensure_schema
from stash_pipeline_tests.cli_harness import CliEnv, outcome, run_id_of
from stash_pipeline_tests.mirror.conftest import SCENARIO_SIZE
from stash_pipeline_tests.sync_harness import ENTITY_NAMES

# What a mirror of the version before schema versioning lacked, applied to a current one.
DOWNGRADE = [
    "ALTER TABLE scenes DROP COLUMN code",
    "ALTER TABLE galleries DROP COLUMN photographer",
    "DROP TABLE scene_groups",
    "ALTER TABLE sync_state DROP COLUMN refill_columns",
    "DROP TABLE mirror_schema",
    "DROP TABLE mirror_changes",  # before the derived tables were rebuilt only on a change
    "DROP TABLE derived_builds",
    "CREATE INDEX sync_log_entity ON sync_log (entity_type, entity_id)",
]

LOG_ROWS = "SELECT * REPLACE (array_to_string(changed_fields, ',') AS changed_fields) FROM sync_log"


def sync_types(env: CliEnv, run_id: str) -> dict[str, str]:
    rows = env.query("SELECT entity_type, sync_type, status FROM sync_runs WHERE run_id = ?", [run_id])
    assert {r[2] for r in rows} <= {"success", "skipped"}, rows
    return {r[0]: r[1] for r in rows}


def test_one_sync_upgrades_an_old_mirror_in_place_and_keeps_its_history(tmp_path, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=5)
    env = CliEnv(fake, make_fake_server(fake), tmp_path)
    first = env.run("sync")
    assert first.returncode == 0, outcome(first)

    with duckdb.connect(env.db_path) as con:
        for statement in DOWNGRADE:
            con.execute(statement)
        old_log = con.execute(LOG_ROWS).fetchall()
        old_runs = con.execute("SELECT run_id, entity_type FROM sync_runs ORDER BY ALL").fetchall()
    assert old_log, "the first sync logged its creations"
    scene = fake.truth()["scenes"][0]["id"]
    assert any(row[1] == "scenes" and row[2] == scene for row in old_log)
    fake.mutations.update("scene", fake.truth()["scenes"][1]["id"], title="edited after the upgrade")

    result = env.run("sync")
    assert result.returncode == 0, outcome(result)
    assert (
        "scenes: 1 new column (code) and 1 new link table (scene_groups), re-read all rows to fill them"
        in (result.stdout)
    )
    assert "galleries: 1 new column (photographer), re-read all rows to fill it" in result.stdout
    types = sync_types(env, run_id_of(result.stdout))
    assert types == {**dict.fromkeys(ENTITY_NAMES, "incremental"), "scenes": "full", "galleries": "full"}
    env.assert_equal()  # the new columns and the new link table hold Stash's values

    # History kept: every old row and run is still there, and `history` shows the old entries.
    with duckdb.connect(env.db_path, read_only=True) as con:
        log_now = set(con.execute(LOG_ROWS).fetchall())
        assert set(old_log) <= log_now
        assert set(old_runs) <= set(con.execute("SELECT run_id, entity_type FROM sync_runs").fetchall())
        assert con.execute("SELECT version FROM mirror_schema").fetchall() == [(SCHEMA_VERSION,)]
        # The upgraded mirror counts its changes, and its derived tables were built from them.
        assert con.execute("SELECT count(*) FROM mirror_changes WHERE entity_type = 'scenes'").fetchall() == [
            (1,)
        ]
        built = dict(con.execute("SELECT table_name, mirror_version FROM derived_builds").fetchall())
        assert built == {t.name: version_of(con, changed_by(t)) for t in DERIVED_TABLES}
        assert con.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'sync_log_entity'"
        ).fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM sync_state WHERE refill_columns IS NOT NULL").fetchall() == [
            (0,)
        ]
    history = env.run("history", "scenes", str(scene))
    assert history.returncode == 0, outcome(history)
    assert f"run {run_id_of(first.stdout)[:8]}" in history.stdout  # the creation, logged before the upgrade

    # The refill is done: a sync finds nothing to do (the mirror is as that run left it), and a
    # run made anyway is an ordinary incremental one for every type.
    quiet = env.run("sync")
    assert quiet.returncode == 0, outcome(quiet)
    assert "no change in Stash since the last sync (one probe request): nothing to run" in quiet.stdout
    again = env.run("sync", "--always-run")
    assert again.returncode == 0, outcome(again)
    assert set(sync_types(env, run_id_of(again.stdout)).values()) == {"incremental"}
    assert "re-read all rows" not in again.stdout


def test_a_change_no_migration_covers_is_refused_and_changes_nothing(tmp_path):
    path = str(tmp_path / "mirror.duckdb")
    with duckdb.connect(path) as con:
        ensure_schema(con)
        con.execute("ALTER TABLE scenes DROP COLUMN rating100")
        con.execute("ALTER TABLE scenes ADD COLUMN rating100 VARCHAR")  # a type this version cannot read
        con.execute("ALTER TABLE scenes DROP COLUMN code")
        con.execute("DELETE FROM mirror_schema")
        with pytest.raises(
            MirrorSchemaError, match=r"scenes\.rating100 is VARCHAR, but this version stores BIGINT"
        ):
            evolve(con)
        columns = {r[0] for r in con.execute("DESCRIBE scenes").fetchall()}
        assert "code" not in columns  # rolled back whole: not even the additive part was applied


def test_a_mirror_from_a_newer_version_is_refused(tmp_path):
    path = str(tmp_path / "mirror.duckdb")
    with duckdb.connect(path) as con:
        ensure_schema(con)
        con.execute("UPDATE mirror_schema SET version = version + 1, fingerprint = 'newer'")
        with pytest.raises(MirrorSchemaError, match="written by a newer stash-pipeline"):
            evolve(con)


def test_a_current_mirror_is_left_alone(tmp_path):
    with duckdb.connect(str(tmp_path / "mirror.duckdb")) as con:
        assert ensure_schema(con).changed is False  # a new mirror: created, nothing to report
        assert ensure_schema(con).changed is False
        assert con.execute("SELECT count(*) FROM mirror_schema").fetchall() == [(1,)]
