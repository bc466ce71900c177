"""Asset checks: green after a sync, red (or yellow) with the offending ids when the DuckDB file is
corrupted behind the pipeline's back or Stash moves on, and never a failed run."""

import dagster as dg

from stash_pipeline.assets.checks import COUNT_CHECK, DERIVED_CHECK, DUPLICATES_CHECK, LINKS_CHECK
from stash_pipeline.mirror.derived import DERIVED_TABLES
from stash_pipeline.model import ENTITY_SPECS

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
ALL_CHECKS = {
    *((s.name, c) for s in ENTITY_SPECS for c in (COUNT_CHECK, DUPLICATES_CHECK, LINKS_CHECK)),
    *((t.name, DERIVED_CHECK) for t in DERIVED_TABLES),
}


def meta(evaluation) -> dict:
    return {k: getattr(v, "value", getattr(v, "data", v)) for k, v in evaluation.metadata.items()}


def failed(evaluations: dict) -> dict:
    return {key: e for key, e in evaluations.items() if not e.passed}


def test_every_check_runs_with_a_sync_and_passes(derived_env):
    env = derived_env()
    outcome = env.full()
    evaluations = env.check_evaluations(outcome.run_id)
    assert set(evaluations) == ALL_CHECKS
    assert failed(evaluations) == {}
    scenes = meta(evaluations[("scenes", COUNT_CHECK)])
    assert scenes["local_count"] == scenes["stash_count"] == len(env.fake.truth()["scenes"])
    assert scenes["stash_count_at_last_sync"] == scenes["stash_count"]
    # The checks job audits the mirror without syncing, and agrees.
    assert failed(env.run_checks()) == {}


def test_corruption_is_reported_with_the_offending_ids(derived_env):
    env = derived_env()
    env.full()
    scene_id, tag_id = env.query("SELECT scene_id, tag_id FROM scene_tags ORDER BY ALL LIMIT 1")[0]
    scene_2 = env.query("SELECT id FROM scenes ORDER BY id LIMIT 1 OFFSET 1")[0][0]
    image_id = env.query("SELECT id FROM images ORDER BY id LIMIT 1")[0][0]
    performer_id = env.query("SELECT min(id) FROM performers")[0][0]
    root_tag = env.query("SELECT min(id) FROM tags")[0][0]
    # A link row twice, a link to a performer that does not exist, a studio that does not exist.
    env.execute("INSERT INTO scene_tags VALUES (?, ?)", [scene_id, tag_id])
    env.execute("INSERT INTO scene_performers VALUES (?, 999999)", [scene_2])
    env.execute("UPDATE images SET studio_id = 888888 WHERE id = ?", [image_id])
    # An entity table that lost its key, with an id twice.
    env.execute(
        "CREATE TABLE performers_copy AS SELECT * FROM performers; DROP TABLE performers; "
        "ALTER TABLE performers_copy RENAME TO performers"
    )
    env.execute("INSERT INTO performers SELECT * FROM performers WHERE id = ?", [performer_id])
    # Derived tables that no longer match their inputs.
    env.execute("DELETE FROM images_effective WHERE image_id = ?", [image_id])
    env.execute("DELETE FROM tag_ancestors WHERE tag_id = ? AND depth = 0", [root_tag])
    linked_image, performer = env.query(
        "SELECT image_id, performer_id FROM image_performers_effective WHERE NOT inherited ORDER BY ALL LIMIT 1"
    )[0]
    env.execute(
        "DELETE FROM image_performers_effective WHERE image_id = ? AND performer_id = ?",
        [linked_image, performer],
    )
    env.execute("INSERT INTO scene_inherited_tags VALUES (?, ?)", [scene_id, tag_id])
    studio = env.query("SELECT min(id) FROM studios")[0][0]
    env.execute(
        "INSERT INTO entity_counts SELECT * FROM entity_counts WHERE entity_type = 'studio' AND entity_id = ?",
        [studio],
    )

    evaluations = env.run_checks()
    bad = failed(evaluations)
    assert set(bad) == {
        ("scenes", DUPLICATES_CHECK),
        ("scenes", LINKS_CHECK),
        ("images", LINKS_CHECK),
        ("performers", DUPLICATES_CHECK),
        ("performers", COUNT_CHECK),
        ("images_effective", DERIVED_CHECK),
        ("tag_ancestors", DERIVED_CHECK),
        ("image_performers_effective", DERIVED_CHECK),
        ("scene_inherited_tags", DERIVED_CHECK),
        ("entity_counts", DERIVED_CHECK),
    }

    dup = bad[("scenes", DUPLICATES_CHECK)]
    assert dup.severity == ERROR
    assert meta(dup)["scene_tags_duplicates"] == [[scene_id, tag_id]]
    assert meta(dup)["scene_tags_duplicates_count"] == 1

    dangling = bad[("scenes", LINKS_CHECK)]
    assert dangling.severity == WARN  # legitimate for a while; see the check's description
    assert meta(dangling)["scene_performers_dangling_performer_id"] == [[scene_2, 999999]]
    assert meta(bad[("images", LINKS_CHECK)])["studio_id_dangling"] == [[image_id, 888888]]

    assert meta(bad[("performers", DUPLICATES_CHECK)])["duplicate_ids"] == [performer_id]
    count = bad[("performers", COUNT_CHECK)]
    assert count.severity == ERROR  # not even the count Stash gave the last sync
    assert meta(count)["local_count"] == meta(count)["stash_count"] + 1

    assert meta(bad[("images_effective", DERIVED_CHECK)])["images_missing"] == [image_id]
    assert bad[("images_effective", DERIVED_CHECK)].severity == ERROR
    assert meta(bad[("tag_ancestors", DERIVED_CHECK)])["tags_without_self_row"] == [root_tag]
    effective = meta(bad[("image_performers_effective", DERIVED_CHECK)])
    assert effective["direct_links_missing"] == [[linked_image, performer]]
    assert meta(bad[("scene_inherited_tags", DERIVED_CHECK)])["direct_tags_repeated"] == [[scene_id, tag_id]]
    assert meta(bad[("entity_counts", DERIVED_CHECK)])["duplicate_rows"] == [["studio", studio]]


def test_stash_moving_on_is_a_warning_with_the_new_ids(derived_env):
    env = derived_env()
    env.full()
    new_tag = env.fake.mutations.create("tag", name="Created after the sync")
    gone = env.fake.truth()["studios"][-1]["id"]
    env.fake.mutations.destroy("studio", [gone])
    bad = failed(env.run_checks())
    assert set(bad) == {("tags", COUNT_CHECK), ("studios", COUNT_CHECK)}
    tags = bad[("tags", COUNT_CHECK)]
    assert tags.severity == WARN  # the mirror matched Stash at the sync; Stash moved since
    assert meta(tags)["missing_locally"] == [new_tag]
    assert meta(tags)["extra_locally"] == []
    studios = bad[("studios", COUNT_CHECK)]
    assert meta(studios)["extra_locally"] == [gone]
    assert meta(studios)["difference"] == 1
    env.cli("incremental")  # the next sync catches up
    assert failed(env.run_checks()) == {}


def test_checks_with_stash_unreachable_fail_softly(derived_env):
    env = derived_env()
    env.full()
    env.server.close()
    evaluations = env.run_checks()  # the run itself succeeds
    bad = failed(evaluations)
    assert set(bad) == {(s.name, COUNT_CHECK) for s in ENTITY_SPECS}
    for evaluation in bad.values():
        assert evaluation.severity == WARN
        assert "error" in meta(evaluation)
