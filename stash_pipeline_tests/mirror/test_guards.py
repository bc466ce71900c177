"""Never mass-delete on a bad answer (docs/architecture.md §2 rule 5).

After a good full sync and some real deletes in Stash, a sync that gets a bad id listing (empty,
short, or with duplicate ids) or that would delete more than the allowed fraction must delete
NOTHING, fail the run and say why; the next good answer (or an explicit allow_mass_delete) applies
the deletes.  An incremental sync lists ids with an id sweep; a full sync with its own read (and a
sweep only if the counts disagree afterwards), so there every answer about the type is bad.
"""

import pytest

from stash_pipeline.model import SPECS_BY_NAME
from stash_pipeline.stash.queries import ids_query
from stash_pipeline_tests.mirror.test_incremental_scenarios import synced


def sweep_query(entity_type: str) -> str:
    """The text of the first (count-selecting) request of an id sweep: the fault's ``match``."""
    return ids_query(SPECS_BY_NAME[entity_type], True)


def listing_queries(entity_type: str, mode: str) -> str:
    """The fault's ``match``: the sweep's first request, or for a full sync every request about the
    type (its read is the listing)."""
    spec = SPECS_BY_NAME[entity_type]
    return spec.query if mode == "full" else sweep_query(entity_type)


def failure_text(result) -> str:
    """Every message of the run's step failures, causes included."""
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    return "\n".join(parts)


def local_ids(env, table: str) -> list[int]:
    return [r[0] for r in env.query(f"SELECT id FROM {table} ORDER BY id")]


def deleted_log(env, table: str) -> list[int]:
    return [
        r[0]
        for r in env.query(
            "SELECT entity_id FROM sync_log WHERE entity_type = ? AND action = 'deleted'", [table]
        )
    ]


def last_run_row(env, table: str) -> tuple:
    return env.query(
        "SELECT status, deleted, error FROM sync_runs WHERE entity_type = ? ORDER BY started_at DESC LIMIT 1",
        [table],
    )[0]


BAD_SWEEPS = [
    # (type, fault kind, fault params, sync mode, what the error must say)
    pytest.param("images", "empty_list", {}, "incremental", "first page is empty", id="empty-keyset"),
    pytest.param("tags", "empty_list", {}, "full", "first page is empty", id="empty-offset-full"),
    pytest.param("images", "empty_list", {}, "full", "first page is empty", id="empty-keyset-full"),
    pytest.param("tags", "truncate_list", {"keep": 5}, "incremental", "refusing to trust it", id="short"),
    pytest.param("scenes", "duplicate_items", {}, "incremental", "appears twice", id="duplicate-ids-keyset"),
    pytest.param(
        "performers", "duplicate_items", {}, "full", "unique) but Stash reports count", id="duplicate-ids"
    ),
]


@pytest.mark.parametrize(("table", "kind", "params", "mode", "message"), BAD_SWEEPS)
def test_a_bad_sweep_deletes_nothing_and_fails_the_run(mirror_env, table, kind, params, mode, message):
    env = synced(mirror_env())
    singular = SPECS_BY_NAME[table].singular
    before = local_ids(env, table)
    victims = before[2:4]
    env.fake.mutations.destroy(singular, victims)  # real deletes: only a good sweep may apply them
    # Every listing answer is bad, however often the client asks (a retry must not launder it).
    env.fake.faults.add(kind, times=50, match=listing_queries(table, mode), **params)
    sync = env.full if mode == "full" else env.incremental

    result = sync(types=[table], raise_on_error=False)

    assert not result.success
    text = failure_text(result)
    assert message in text, text
    assert local_ids(env, table) == before  # nothing deleted
    assert deleted_log(env, table) == []
    status, deleted, error = last_run_row(env, table)
    assert (status, deleted) == ("failed", 0)
    assert message in error

    env.fake.faults.clear()  # Stash answers properly again: the deletes go through
    assert sync(types=[table]).success
    assert sorted(set(before) - set(local_ids(env, table))) == victims
    assert sorted(deleted_log(env, table)) == victims
    env.assert_equal()


def test_a_short_keyset_sweep_is_verified_not_believed(mirror_env):
    """A sweep answer that is merely short (once) is followed up, not mistaken for deletions."""
    env = synced(mirror_env())
    victims = local_ids(env, "images")[5:8]
    env.fake.mutations.destroy("image", victims)
    env.fake.faults.add("truncate_list", times=1, match=sweep_query("images"), keep=20)
    result = env.incremental(types=["images"])
    assert result.success
    assert env.fake.faults.fired, "the short sweep was never asked for"
    assert env.metadata(result, "images")["deleted"] == 3  # exactly the real deletes
    assert sorted(deleted_log(env, "images")) == victims
    env.assert_equal()


def test_mass_delete_is_refused_until_allowed(mirror_env):
    env = synced(mirror_env())
    before = local_ids(env, "images")
    victims = before[:30]  # 30 of 400: 7.5% > the 5% limit, and above the 10-row floor
    env.fake.mutations.destroy("image", victims)

    refused = env.incremental(types=["images"], raise_on_error=False)
    assert not refused.success
    text = failure_text(refused)
    assert "refusing to delete 30 of 400 local rows" in text, text
    assert "Nothing was deleted" in text
    assert "allow_mass_delete" in text
    assert local_ids(env, "images") == before
    assert deleted_log(env, "images") == []
    assert last_run_row(env, "images")[:2] == ("failed", 0)

    # A full sync is refused the same way (the nightly reconciliation must not wipe the mirror).
    assert not env.full(types=["images"], raise_on_error=False).success
    assert local_ids(env, "images") == before

    allowed = env.incremental(types=["images"], allow_mass_delete=True)
    assert allowed.success
    assert env.metadata(allowed, "images")["deleted"] == 30
    assert sorted(deleted_log(env, "images")) == victims
    env.assert_equal()


def test_a_few_deletes_below_the_floor_need_no_permission(mirror_env):
    env = synced(mirror_env())
    tags = local_ids(env, "tags")
    env.fake.mutations.destroy("tag", tags[-8:])  # 8 of 36 (22%), but only 8 rows: under the floor
    result = env.incremental(types=["tags"])
    assert result.success
    assert env.metadata(result, "tags")["deleted"] == 8
    env.assert_equal()
