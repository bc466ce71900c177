"""The server's UTC offset moves by hours: between runs, west and east, and in the middle of a run.

Stash writes ``updated_at`` in its current offset and compares filters as text, so after a move west
by N hours every edit sorts below the cursor for N hours (the trap each test first shows).  Each
scenario then lets the smart sensor decide: it must request a run for exactly the changed types,
that ONE incremental run must make the mirror equal to the fake's truth, and the next tick must be
quiet again (one request).
"""

import duckdb
import pytest

from stash_pipeline.definitions import build_definitions
from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.clock import parse_offset
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.mirror.state import read_state
from stash_pipeline.settings import Settings
from stash_pipeline_tests.automation.test_sensor import full_sync, launch, tick
from stash_pipeline_tests.dagster_instance import project_test_instance
from stash_pipeline_tests.expected_mirror import mirror_differences
from stash_pipeline_tests.sync_harness import PARTITION_START, open_db


@pytest.fixture
def world(tmp_path, make_fake_server):
    def make(zone: str):
        fake = FakeStash.generated(LibrarySize(scenes=60, images=200), zone=zone, seed=3)
        server = make_fake_server(fake)
        settings = Settings(
            stash_url=server.url,
            db_path=str(tmp_path / "m.duckdb"),
            partition_start=PARTITION_START,
            page_size=50,
        )
        return fake, build_definitions(settings), settings

    with project_test_instance() as instance:
        yield make, instance


def cursor_of(settings: Settings, entity_type: str) -> str:
    with open_db(settings.db_path) as con:
        return read_state(con, entity_type).cursor or ""


def assert_equal(fake: FakeStash, settings: Settings) -> None:
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []


def settle(fake: FakeStash, defs, instance, settings: Settings, expected: set[str]) -> None:
    """The sensor asks for a run of exactly ``expected``; that one incremental run makes the mirror
    equal; the next tick costs one request and launches nothing."""
    result = tick(defs, instance)
    assert result.run_requests, result.skip_message
    (request,) = result.run_requests
    assert {k.path[-1] for k in request.asset_selection} == expected
    assert request.tags["stash/sync_type"] == "incremental"
    assert launch(defs, instance, request).success
    assert_equal(fake, settings)
    before = fake.request_count
    quiet = tick(defs, instance)
    assert quiet.run_requests == [], [r.asset_selection for r in quiet.run_requests]
    assert fake.request_count - before == 1


def edited(fake: FakeStash, kind: str, entity_id: int, **values) -> str:
    fake.mutations.update(kind, entity_id, **values)
    table = {"scene": "scenes", "performer": "performers", "studio": "studios", "group": "groups"}[kind]
    return next(e["updated_at"] for e in fake.truth()[table] if e["id"] == entity_id)


def test_offset_moves_west_between_runs(world):
    make, instance = world
    fake, defs, settings = make("+11:00")
    truth = fake.truth()
    recent, old = truth["scenes"][0]["id"], truth["scenes"][1]["id"]
    fake.mutations.update("scene", recent, title="edited just before the sync")
    full_sync(defs, instance)
    cursor = cursor_of(settings, "scenes")

    fake.clock.set_zone("-05:00")  # sixteen hours west: the container got its TZ
    stamps = [
        edited(fake, "scene", recent, title="re-edited after the move"),  # inside the overlap window
        edited(fake, "scene", old, details="edited after the move"),
        edited(fake, "performer", truth["performers"][0]["id"], country="CL"),
    ]
    fake.mutations.create("tag", name="created after the move")
    assert all(s < cursor and s.endswith("-05:00") for s in stamps)  # the trap: below the cursor

    settle(fake, defs, instance, settings, {"scenes", "performers", "tags"})


def test_offset_moves_east_then_back_west(world):
    make, instance = world
    fake, defs, settings = make("Z")
    truth = fake.truth()
    full_sync(defs, instance)

    fake.clock.set_zone("+09:00")  # east: later edits sort above the cursor, as they should
    edited(fake, "scene", truth["scenes"][2]["id"], title="edited in +09:00")
    edited(fake, "group", truth["groups"][0]["id"], synopsis="edited in +09:00")
    settle(fake, defs, instance, settings, {"scenes", "groups"})
    cursor = cursor_of(settings, "scenes")
    assert cursor.endswith("+09:00")

    fake.clock.set_zone("Z")  # and back west: now the cursor is nine hours ahead of every edit
    stamps = [
        edited(fake, "scene", truth["scenes"][2]["id"], title="edited back in UTC"),
        edited(fake, "scene", truth["scenes"][3]["id"], rating100=12),
        edited(fake, "studio", truth["studios"][0]["id"], details="edited back in UTC"),
    ]
    assert all(s < cursor for s in stamps)
    settle(fake, defs, instance, settings, {"scenes", "studios"})


@pytest.mark.parametrize(("before", "after"), [("+11:00", "-03:00"), ("Z", "+10:00")])
def test_offset_moves_in_the_middle_of_a_run(world, before, after):
    make, instance = world
    fake, defs, settings = make(before)
    truth = fake.truth()
    scene, performer = truth["scenes"][4]["id"], truth["performers"][1]["id"]
    images = [i["id"] for i in truth["images"][:3]]
    # Recent edits of every type edited below, so each cursor is "now" in the old offset.
    fake.mutations.update("performer", performer, details="edited before the sync")
    fake.mutations.update("image", images[0], title="edited before the sync")
    full_sync(defs, instance)
    fake.mutations.update("scene", scene, title="edited before the run")
    cursors = {t: cursor_of(settings, t) for t in ("scenes", "performers", "images")}

    def move_and_edit(f: FakeStash) -> None:
        # A Stash restarted mid-run in another zone, and edits made right after it came back.
        f.clock.set_zone(after)
        f.mutations.update("scene", scene, title="edited during the run")
        f.mutations.update("performer", performer, details="edited during the run")
        for image in images:
            f.mutations.update("image", image, title="edited during the run")

    fake.after_requests(3, move_and_edit)
    result = tick(defs, instance)
    (request,) = result.run_requests
    assert {k.path[-1] for k in request.asset_selection} == {"scenes"}
    assert launch(defs, instance, request).success  # the run the move happened in
    assert fake.clock.zone.describe() == after
    if parse_offset(after) < parse_offset(before):  # west: the trap (edits below each cursor)
        now = fake.truth()
        assert (
            next(e["updated_at"] for e in now["performers"] if e["id"] == performer) < cursors["performers"]
        )
        assert all(e["updated_at"] < cursors["images"] for e in now["images"] if e["id"] in images)

    # What that run did not see (at least the types it did not sync), the next one must: the
    # sensor asks for exactly those, and one run repairs them.
    missed = stale_types(fake, settings)
    assert {"performers", "images"} <= missed
    settle(fake, defs, instance, settings, missed)


def stale_types(fake: FakeStash, settings: Settings) -> set[str]:
    """The types whose (id, updated_at) in the mirror differ from the fake's."""
    truth = fake.truth()
    stale = set()
    with duckdb.connect(settings.db_path, read_only=True) as con:
        for table in ("scenes", "images", "galleries", "performers", "studios", "tags", "groups"):
            mirrored = set(con.execute(f"SELECT id, updated_at_text FROM {table}").fetchall())
            if mirrored != {(e["id"], e["updated_at"]) for e in truth[table]}:
                stale.add(table)
    return stale
