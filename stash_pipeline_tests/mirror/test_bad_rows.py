"""Bad data from Stash never stops a sync (docs/architecture.md §2 rule 7).

Odd values are planted straight into the fake's store (it serves what is stored, types and all):
values that can be normalised are stored normalised; rows that cannot be stored are left out, logged
in ``sync_log`` as 'failed' with a reason naming the field, and the run ends 'partial' (CLI exit
code 2 with a summary); everything else is synced; once Stash fixes a row (and bumps it), the next
incremental sync stores it.
"""

from datetime import date

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.model import SPECS_BY_NAME
from stash_pipeline.stash.queries import page_query
from stash_pipeline_tests.cli_harness import CliEnv, outcome
from stash_pipeline_tests.mirror.conftest import SCENARIO_SIZE

HUGE = "x" * 5_000_000  # 5 MB of details

# id → (field, planted value); rows that cannot be stored, and the field their reason must name
FAILING_SCENES = {
    11: ("rating100", "abc"),
    12: ("organized", "yes"),
    13: ("date", "2024-13-45"),
    14: ("date", "not a date"),
    15: ("updated_at", None),
}
FAILING_PERFORMERS = {
    3: ("birthdate", "1990-02-30"),
    4: ("favorite", "maybe"),
}
# id → (field, planted value, what the mirror must hold)
NORMALISED_SCENES = {
    21: ("rating100", "85", 85),
    22: ("organized", "true", True),
    23: ("date", "2024-05", (date(2024, 5, 1), "month")),
    24: ("date", "2023", (date(2023, 1, 1), "year")),
    25: ("details", HUGE, HUGE),
    26: ("title", "", None),
    27: ("urls", "https://example.com/one", ["https://example.com/one"]),
    28: ("rating100", 70.0, 70),
}
NORMALISED_PERFORMERS = {
    5: ("height_cm", "170", 170),
    6: ("alias_list", "Solo", ["Solo"]),
}
# What Stash's fix looks like for the values kept as typed in the store (so the mirror can equal it).
FIXES = {
    "scene": {
        11: {"rating100": 40},
        12: {"organized": True},
        13: {"date": "2024-12-25"},
        14: {"date": None},
        15: {"title": "updated_at is back"},
        21: {"rating100": 85},
        22: {"organized": True},
        27: {"urls": ["https://example.com/one"]},
        28: {"rating100": 70},
    },
    "performer": {
        3: {"birthdate": "1990-02-28"},
        4: {"favorite": False},
        5: {"height_cm": 170},
        6: {"alias_list": ["Solo"]},
    },
}


def plant(fake: FakeStash) -> None:
    with fake.store.lock:
        scenes, performers = fake.store.tables["scene"], fake.store.tables["performer"]
        for table, cases in ((scenes, FAILING_SCENES), (performers, FAILING_PERFORMERS)):
            for entity_id, (name, value) in cases.items():
                table[entity_id][name] = value
        for table, cases in ((scenes, NORMALISED_SCENES), (performers, NORMALISED_PERFORMERS)):
            for entity_id, (name, value, _stored) in cases.items():
                table[entity_id][name] = value
        fake.store.touch()
    # Scene 1 twice in the first scenes page, performer 1 twice in the performers page.
    for spec in ("scenes", "performers"):
        fake.faults.add("duplicate_items", match=page_query(SPECS_BY_NAME[spec], True))


def failed_log(env, table: str) -> dict[int, str]:
    return dict(
        env.query(
            "SELECT entity_id, error FROM sync_log WHERE entity_type = ? AND action = 'failed'", [table]
        )
    )


def test_bad_rows_are_logged_the_rest_is_synced_and_a_fix_is_picked_up(mirror_env, tmp_path):
    env = mirror_env(size=SCENARIO_SIZE)
    plant(env.fake)

    result = env.full()
    assert result.success  # a partial sync is a materialization, not a crash
    assert len(env.fake.faults.fired) == 2  # both duplicated pages were served
    assert env.metadata(result, "scenes")["duplicates"] == 1
    for table, failing in (("scenes", FAILING_SCENES), ("performers", FAILING_PERFORMERS)):
        meta = env.metadata(result, table)
        assert meta["status"] == "partial"
        assert meta["failed"] == len(failing)
        assert {f["id"] for f in meta["failures"]} == set(failing)
        logged = failed_log(env, table)
        assert set(logged) == set(failing)
        for entity_id, (name, _value) in failing.items():
            assert name in logged[entity_id], (entity_id, logged[entity_id])
        # The failing rows are absent, every other row is there (duplicates stored once).
        truth_ids = {e["id"] for e in env.fake.truth()[table]}
        local = [r[0] for r in env.query(f"SELECT id FROM {table}")]
        assert len(local) == len(set(local))
        assert set(local) == truth_ids - set(failing)
    for table in ("studios", "tags", "groups", "galleries", "images"):
        assert env.metadata(result, table)["status"] == "success"
    assert env.query(
        "SELECT count(*) FROM scene_tags WHERE scene_id IN (SELECT unnest(?))", [list(FAILING_SCENES)]
    ) == [(0,)]

    for entity_id, (name, _value, stored) in NORMALISED_SCENES.items():
        columns = f"{name}, {name}_precision" if name == "date" else name
        row = env.query(f"SELECT {columns} FROM scenes WHERE id = ?", [entity_id])[0]
        assert (row if name == "date" else row[0]) == stored, (entity_id, name)
    for entity_id, (name, _value, stored) in NORMALISED_PERFORMERS.items():
        assert env.query(f"SELECT {name} FROM performers WHERE id = ?", [entity_id]) == [(stored,)]

    # The CLI says so: exit code 2 and a summary of what failed (a fresh mirror, same Stash).
    cli = CliEnv(env.fake, env.server, tmp_path / "cli")
    run = cli.run("sync", "--types", "scenes,performers")
    assert run.returncode == 2, outcome(run)
    assert "failed scenes 11: field rating100: not an integer: 'abc'" in run.stdout
    assert "failed performers 3: field birthdate" in run.stdout
    assert "partial" in run.stderr

    # Stash fixes the rows (each edit bumps updated_at): the next incremental sync stores them.
    for kind, fixes in FIXES.items():
        for entity_id, values in fixes.items():
            env.fake.mutations.update(kind, entity_id, **values)
    fixed = env.incremental()
    assert fixed.success
    for table in ("scenes", "performers"):
        meta = env.metadata(fixed, table)
        assert (meta["status"], meta["failed"]) == ("success", 0)
    env.assert_equal()
