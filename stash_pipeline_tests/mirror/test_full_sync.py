"""A full sync (a backfill over every partition) makes the mirror equal to Stash, row by row."""

from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.model import SPECS_BY_NAME
from stash_pipeline.stash.queries import ids_query
from stash_pipeline_tests.sync_harness import ENTITY_NAMES


def test_full_sync_equals_truth(mirror_env):
    env = mirror_env()
    result = env.full()
    assert result.success
    env.assert_equal()
    for name in ENTITY_NAMES:
        meta = env.metadata(result, name)
        assert meta["sync_type"] == "full"
        assert meta["local_count"] == meta["stash_count"] == len(env.fake.truth()[name])
        assert meta["created"] == meta["local_count"]
        assert meta["fetched"] >= meta["local_count"]  # the catch-up pass may re-read a few rows


def test_second_full_sync_changes_nothing(mirror_env):
    env = mirror_env()
    env.full()
    result = env.full()
    for name in ENTITY_NAMES:
        meta = env.metadata(result, name)
        assert (meta["created"], meta["updated"], meta["deleted"]) == (0, 0, 0), name
        assert meta["unchanged"] == meta["fetched"]
    env.assert_equal()


def test_a_full_sync_lists_ids_with_its_own_read(mirror_env):
    """Deletes of every type are applied by a full sync without a separate id sweep: the read from
    the first id is the listing (mark and sweep in one pass).  Every sweep request fails here, so a
    sweep asked for would fail the run."""
    env = mirror_env()
    assert env.full().success
    victims = {}
    for name in ENTITY_NAMES:
        spec = SPECS_BY_NAME[name]
        victims[name] = env.fake.truth()[name][1]["id"]
        env.fake.mutations.destroy(spec.singular, [victims[name]])
        env.fake.faults.add("graphql_error", times=1000, match=ids_query(spec, True), message="no sweeps")
    result = env.full()
    assert result.success
    assert not env.fake.faults.fired, "a full sync asked for an id sweep"
    env.assert_equal()
    # Studios come first: their own step deletes the victim (later victims that referenced an
    # earlier one may already be gone with the repair of that earlier type).
    assert env.metadata(result, "studios")["deleted"] == 1
    for name in ENTITY_NAMES:  # (a victim referenced by a victim of an earlier type is deleted there)
        log = env.query(
            "SELECT action FROM sync_log WHERE entity_type = ? AND entity_id = ? ORDER BY logged_at",
            [name, victims[name]],
        )
        assert log[-1][0] == "deleted", name


def test_deletes_during_a_full_read_are_noticed(mirror_env):
    """A row deleted after the read passed it was listed; the count after the read disagrees, and
    an id sweep finds it.  A row deleted before the read reached it is simply not listed."""
    env = mirror_env(size=LibrarySize(scenes=150, images=1200))
    assert env.full().success
    ids = [i["id"] for i in env.fake.truth()["images"]]
    behind, ahead = ids[10], ids[900]  # on page 1 (already read) and on page 10 (not yet)
    fired = {}

    def delete_both(fake):
        fake.mutations.destroy("image", [behind, ahead])
        fired["at"] = fake.request_count

    env.fake.after_requests(5, delete_both)  # count, newest-updated probe, pages 1 to 3
    # A marker on the sweep's requests (a fault that delays by nothing): was a sweep asked for?
    env.fake.faults.add("slow", seconds=0, times=1000, match=ids_query(SPECS_BY_NAME["images"], True))
    result = env.full(types=["images"])
    assert result.success
    assert fired, "the mid-read delete did not fire"
    assert env.fake.faults.fired, "the counts disagreed, yet no id sweep was asked for"
    meta = env.metadata(result, "images")
    assert meta["deleted"] == 2
    assert meta["local_count"] == meta["stash_count"] == len(ids) - 2
    env.assert_equal()
