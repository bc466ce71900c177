"""A full sync (a backfill over every partition) makes the mirror equal to Stash, row by row."""

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
