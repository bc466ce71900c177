"""Each scenario: full sync, change Stash, ONE incremental sync, and the mirror equals Stash again.

The fake applies Stash's real bump rules, so merges, deletes and membership edits arrive exactly as
silently as they do from a real server.  Every scenario runs against every Stash release the fake
serves (``fakestash.versions``): the mirror holds what that release has, and NULL for the rest.
"""

import duckdb
import pytest

from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.fakestash.versions import RELEASES
from stash_pipeline_tests.sync_harness import ENTITY_NAMES


@pytest.fixture(params=list(RELEASES))
def stash_version(request) -> str:
    return request.param


def first(env, table: str, predicate=lambda e: True) -> dict:
    return next(e for e in env.fake.truth()[table] if predicate(e))


def synced(env):
    result = env.full()
    assert result.success
    env.assert_equal()
    return env


def incremental_and_check(env) -> dict:
    result = env.incremental()
    assert result.success
    env.assert_equal()
    return {name: env.metadata(result, name) for name in ENTITY_NAMES}


def log_rows(env, entity_type: str, entity_id: int) -> list[tuple]:
    return env.query(
        "SELECT action, changed_fields, sync_type FROM sync_log WHERE entity_type = ? AND entity_id = ? "
        "ORDER BY logged_at",
        [entity_type, entity_id],
    )


def test_field_edits_of_every_type(mirror_env):
    env = synced(mirror_env())
    m = env.fake.mutations
    scene = first(env, "scenes")
    m.update("scene", scene["id"], title="Edited title", rating100=99)
    m.update("image", first(env, "images")["id"], title="Edited image", date="2021-07")
    m.update("gallery", first(env, "galleries")["id"], details="new details")
    m.update("performer", first(env, "performers")["id"], country="NZ", alias_list=["x", "y"])
    m.update("studio", first(env, "studios")["id"], details="studio details")
    m.update("tag", first(env, "tags")["id"], description="tag description")
    m.update("group", first(env, "groups")["id"], synopsis="synopsis")
    m.marker_update(first(env, "scene_markers")["id"], title="Edited marker", seconds=1.5)
    meta = incremental_and_check(env)
    for name in ENTITY_NAMES:
        assert meta[name]["sync_type"] == "incremental"
        assert meta[name]["updated"] >= 1, name
    action, changed, sync_type = log_rows(env, "scenes", scene["id"])[-1]
    assert (action, sync_type) == ("updated", "incremental")
    assert {"title", "rating100", "updated_at"} <= set(changed)


def test_incremental_with_no_change_skips_every_type(mirror_env):
    env = synced(mirror_env())
    meta = incremental_and_check(env)
    for name in ENTITY_NAMES:
        assert meta[name]["skipped"] is True, name
        assert meta[name]["fetched"] == 0


def test_relation_edits_from_either_side(mirror_env):
    env = synced(mirror_env())
    m = env.fake.mutations
    truth = env.fake.truth()
    tags = [t["id"] for t in truth["tags"]]
    scene = first(env, "scenes")
    m.update("scene", scene["id"], tag_ids=tags[:3], performer_ids=[])
    gallery = first(env, "galleries")
    other_scenes = [s["id"] for s in truth["scenes"][5:8]]
    m.gallery_update(gallery["id"], scene_ids=other_scenes)  # bumps the gallery, not the scenes
    image = first(env, "images")
    m.update("image", image["id"], gallery_ids=[truth["galleries"][-1]["id"]])
    child = truth["tags"][-1]
    m.update("tag", child["id"], parent_ids=[tags[0]])
    group = truth["groups"][-1]
    m.update("group", group["id"], containing=[[truth["groups"][0]["id"], "part one"]])
    studio = truth["studios"][-1]
    m.update("studio", studio["id"], parent_id=truth["studios"][0]["id"], tag_ids=tags[4:6])
    m.update("performer", first(env, "performers")["id"], tag_ids=tags[6:9])
    incremental_and_check(env)


def test_a_thousand_edits_in_one_second(mirror_env):
    env = synced(mirror_env(size=LibrarySize(scenes=150, images=1200)))
    ids = [i["id"] for i in env.fake.truth()["images"]][:1000]
    env.fake.mutations.bulk_update("image", ids, photographer="Bulk Photographer")
    stamps = {i["updated_at"] for i in env.fake.truth()["images"] if i["id"] in set(ids)}
    assert len(stamps) == 1  # one shared second, across ten 100-row pages
    meta = incremental_and_check(env)
    assert meta["images"]["updated"] == 1000


def test_edits_and_deletes_while_paging(mirror_env):
    env = synced(mirror_env(size=LibrarySize(scenes=150, images=1200)))
    fake = env.fake
    ids = [i["id"] for i in fake.truth()["images"]]
    fake.mutations.bulk_update("image", ids[:900], photographer="Before")
    early, late = ids[10], ids[800]
    seen = {}

    def edit_and_delete(f):
        # Fires before the 4th request of the run: the count probe, then pages 1 and 2 are read.
        f.mutations.update("image", early, title="edited mid-sync")  # on page 1, already read
        f.mutations.destroy("image", [ids[500], late])
        f.mutations.create("image", title="created mid-sync")
        seen["fired"] = f.request_count

    fake.after_requests(4, edit_and_delete)
    result = env.incremental(types=["images"])
    assert result.success
    assert seen, "the mid-sync mutation did not fire"
    env.assert_equal()
    meta = env.metadata(result, "images")
    assert meta["deleted"] == 2
    assert meta["created"] == 1


def test_creates_of_every_type(mirror_env):
    env = synced(mirror_env())
    m = env.fake.mutations
    truth = env.fake.truth()
    studio = m.create("studio", name="New Studio", parent_id=truth["studios"][0]["id"])
    tag = m.create("tag", name="New Tag", parent_ids=[truth["tags"][0]["id"]])
    performer = m.create("performer", name="New Performer", tag_ids=[tag])
    group = m.create("group", name="New Group", studio_id=studio)
    gallery = m.create("gallery", title="New Gallery", performer_ids=[performer])
    m.create(
        "scene",
        title="New Scene",
        studio_id=studio,
        tag_ids=[tag],
        gallery_ids=[gallery],
        groups=[[group, 1]],
    )
    m.create("image", title="New Image", gallery_ids=[gallery])
    m.marker_create(truth["scenes"][0]["id"], "New Marker", 3.0, truth["scene_markers"][0]["primary_tag_id"])
    meta = incremental_and_check(env)
    for name in ENTITY_NAMES:
        assert meta[name]["created"] == 1, name


@pytest.mark.parametrize("kind", ["studio", "tag", "performer", "group", "gallery", "scene", "image"])
def test_delete_of_each_type(mirror_env, kind):
    env = synced(mirror_env())
    plural = {"gallery": "galleries"}.get(kind, kind + "s")
    victim = env.fake.truth()[plural][1]["id"]
    env.fake.mutations.destroy(kind, [victim])
    meta = incremental_and_check(env)
    assert meta[plural]["deleted"] == 1
    assert log_rows(env, plural, victim)[-1][0] == "deleted"


def test_tags_merge(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    used = sorted({t for s in truth["scenes"] for t in s["tag_ids"]})
    sources, destination = used[:2], used[2]
    env.fake.mutations.tags_merge(sources, destination)  # bumps nothing at all
    meta = incremental_and_check(env)
    assert meta["tags"]["deleted"] == 2
    assert meta["tags"]["repaired"] >= 1


def test_performer_merge(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    used = sorted({p for s in truth["scenes"] for p in s["performer_ids"]})
    env.fake.mutations.performer_merge(used[:2], used[2])
    meta = incremental_and_check(env)
    assert meta["performers"]["deleted"] == 2


def test_gallery_membership_edits(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    gallery = truth["galleries"][0]["id"]
    members = [i["id"] for i in truth["images"] if gallery in i["gallery_ids"]]
    outsiders = [i["id"] for i in truth["images"] if gallery not in i["gallery_ids"]][:3]
    env.fake.mutations.add_gallery_images(gallery, outsiders)
    if members:
        env.fake.mutations.remove_gallery_images(gallery, members[:2])
    other = truth["galleries"][1]["id"]
    env.fake.mutations.add_gallery_images(other, outsiders[:1])
    incremental_and_check(env)


def test_gallery_update_scene_ids(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    gallery = truth["galleries"][2]["id"]
    env.fake.mutations.gallery_update(gallery, scene_ids=[s["id"] for s in truth["scenes"][:4]])
    incremental_and_check(env)


@pytest.mark.parametrize("zone", ["Z", "+11:00", "-05:00"])
def test_server_time_zones(mirror_env, zone):
    env = synced(mirror_env(zone=zone))
    truth = env.fake.truth()
    suffix = "Z" if zone == "Z" else zone
    assert all(s["updated_at"].endswith(suffix) for s in truth["scenes"])
    m = env.fake.mutations
    m.update("scene", truth["scenes"][3]["id"], title=f"edited at {zone}")
    m.update("performer", truth["performers"][0]["id"], details=f"edited at {zone}")
    meta = incremental_and_check(env)
    assert meta["scenes"]["updated"] == 1
    assert meta["performers"]["updated"] == 1


def test_dst_fall_back(mirror_env):
    import time

    switch = int(time.time()) // 60 * 60 - 1800  # fall-back half an hour ago: +11:00 → +10:00
    zone = f"+11:00,+10:00@{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(switch))}"
    env = mirror_env(zone=zone)
    clock = env.fake.clock
    clock.freeze(switch - 20 * 60)  # 20 minutes before the switch, local +11:00
    scene = env.fake.truth()["scenes"][0]["id"]
    env.fake.mutations.update("scene", scene, title="before the switch")
    synced(env)
    clock.freeze(switch + 10 * 60)  # 10 minutes after: the local wall clock is 30 minutes EARLIER
    edited = env.fake.truth()["scenes"][1]["id"]
    env.fake.mutations.update("scene", edited, title="after the switch")
    before, after = (s["updated_at"] for s in env.fake.truth()["scenes"][:2])
    assert after < before  # the later edit sorts first as text: the trap
    meta = incremental_and_check(env)
    assert meta["scenes"]["updated"] == 1


def test_plays_o_counts_and_activity_without_a_bump(mirror_env):
    env = synced(mirror_env())
    m = env.fake.mutations
    truth = env.fake.truth()
    scenes = [s["id"] for s in truth["scenes"]]
    images = [i["id"] for i in truth["images"]]
    m.scene_add_play(scenes[0])
    m.scene_add_play(scenes[0])
    m.scene_add_o(scenes[1])
    m.scene_save_activity(scenes[2], resume_time=61.5, play_duration=30.25)
    played = next(s["id"] for s in truth["scenes"] if s["play_count"] and s["id"] not in scenes[:3])
    m.scene_reset_play_count(played)  # a reset: active in the mirror, idle in Stash
    o_scene = next(s["id"] for s in truth["scenes"] if s["o_counter"] and s["id"] not in scenes[:3])
    m.scene_delete_o(o_scene)
    m.image_increment_o(images[0])
    o_image = next((i["id"] for i in truth["images"] if i["o_counter"] and i["id"] != images[0]), images[1])
    m.image_reset_o(o_image)
    after = env.fake.truth()
    assert [s["updated_at"] for s in after["scenes"]] == [s["updated_at"] for s in truth["scenes"]]  # no bump
    meta = incremental_and_check(env)
    assert meta["scenes"]["activity_changed"] == 5
    assert meta["images"]["activity_changed"] == 2
    assert meta["scenes"]["updated"] == 5
    action, changed, _ = log_rows(env, "scenes", scenes[0])[-1]
    assert action == "updated"
    assert {"play_count", "last_played_at"} <= set(changed)


def test_tag_child_edit_bumps_only_the_parent(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    parent = truth["tags"][0]["id"]
    children = [t["id"] for t in truth["tags"] if parent in t["parent_ids"]]
    others = [t["id"] for t in truth["tags"][1:] if t["id"] not in children and not t["parent_ids"]][:2]
    env.fake.mutations.tag_set_children(parent, [*children[1:], *others])
    after = {t["id"]: t["updated_at"] for t in env.fake.truth()["tags"]}
    assert [
        i
        for i, stamp in after.items()
        if stamp != next(t for t in truth["tags"] if t["id"] == i)["updated_at"]
    ] == [parent]
    meta = incremental_and_check(env)
    assert meta["tags"]["updated"] == 1


def test_sub_groups_added_and_removed_without_a_bump(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    groups = [g["id"] for g in truth["groups"]]
    contained = next(g for g in truth["groups"] if g["containing"])
    parent = contained["containing"][0][0]
    env.fake.mutations.remove_group_sub_groups(parent, [contained["id"]])
    free = [g for g in groups if g not in (parent, contained["id"])][-2:]
    env.fake.mutations.add_group_sub_groups(groups[0], [[free[0], "part two"], free[1]])
    after = env.fake.truth()["groups"]
    assert [g["updated_at"] for g in after] == [g["updated_at"] for g in truth["groups"]]  # no bump
    meta = incremental_and_check(env)
    assert meta["groups"]["links_changed"] == 3


def lists_files(env) -> bool:
    """The release has ``findFiles`` (v0.29.3 on): files changed without an owner bump are found."""
    return "Query.findFiles" not in env.fake.release.lacks


def test_file_rename_and_rescan_without_a_bump(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    scene = next(s for s in truth["scenes"] if s["files"])
    image = next(i for i in truth["images"] if i["files"])
    gallery = next(g for g in truth["galleries"] if g["files"])
    renamed, rescanned, zip_renamed = (
        scene["files"][0]["id"],
        image["files"][0]["id"],
        gallery["files"][0]["id"],
    )
    m = env.fake.mutations
    m.file_rename(renamed, "/data/videos/renamed/a new name.mp4")
    m.file_rescan(rescanned)
    m.file_rename(zip_renamed, "/data/pictures/zips/moved.zip")
    after = env.fake.truth()
    for table in ("scenes", "images", "galleries"):  # Stash bumps no owner
        assert [e["updated_at"] for e in after[table]] == [e["updated_at"] for e in truth[table]]
    if not lists_files(env):
        # Before v0.29.3 nothing lists files: only a full sync sees them (said in the README).
        result = env.incremental()
        assert result.success
        assert any(p.startswith(f"files[{renamed}].path") for p in env.differences())
        assert env.metadata(result, "scenes").get("files_changed") is None
        assert env.full().success
        env.assert_equal()
        return
    meta = incremental_and_check(env)
    assert (meta["scenes"]["files_changed"], meta["images"]["files_changed"]) == (1, 1)
    assert meta["galleries"]["files_changed"] == 1
    assert env.query("SELECT path, basename FROM files WHERE id = ?", [renamed]) == [
        ("/data/videos/renamed/a new name.mp4", "a new name.mp4")
    ]
    action, changed, sync_type = log_rows(env, "files", renamed)[-1]
    assert (action, sync_type) == ("updated", "incremental")
    assert {"path", "basename", "updated_at"} <= set(changed)
    _action, changed, _ = log_rows(env, "files", rescanned)[-1]
    assert {"size", "mod_time", "updated_at"} <= set(changed)
    assert incremental_and_check(env)["scenes"]["files_changed"] == 0  # and then nothing


def test_a_second_edit_in_the_second_of_the_read(mirror_env):
    """Stamps have whole seconds: a row edited again in the second a run read it keeps its stamp.
    The next run reads it again (the stamp is not older than the last run's start) and has the
    edit; the run after that, which began later than the stamp, trusts it again."""
    env = synced(mirror_env())
    env.fake.clock.freeze()
    scene = env.fake.truth()["scenes"][0]["id"]
    env.fake.mutations.update("scene", scene, title="first edit")
    incremental_and_check(env)
    stamp = env.query("SELECT updated_at_text FROM scenes WHERE id = ?", [scene])[0][0]
    env.fake.mutations.update("scene", scene, title="second edit, same second")
    assert env.fake.truth()["scenes"][0]["updated_at"] == stamp  # nothing tells the edit apart
    env.fake.clock.advance(5)
    report = incremental_and_check(env)["scenes"]  # equal to Stash: it has the second title
    assert (report["stamps_changed"], report["updated"]) == (0, 1)
    report = incremental_and_check(env)["scenes"]
    assert report["skipped"]
    assert report["fetched"] == 0


def test_a_second_file_and_a_new_primary(mirror_env):
    env = synced(mirror_env())
    scene = next(s for s in env.fake.truth()["scenes"] if s["files"])
    added = env.fake.mutations.scene_add_file(scene["id"])  # a scan attaches it: the scene is bumped
    incremental_and_check(env)
    assert env.query(
        "SELECT file_id, is_primary FROM scene_files WHERE scene_id = ? ORDER BY file_id", [scene["id"]]
    ) == sorted([(scene["files"][0]["id"], True), (added, False)])
    env.fake.mutations.scene_set_primary_file(scene["id"], added)
    incremental_and_check(env)
    assert env.query("SELECT file_id FROM scene_files WHERE scene_id = ? AND is_primary", [scene["id"]]) == [
        (added,)
    ]
    assert env.query("SELECT path FROM scenes WHERE id = ?", [scene["id"]]) == env.query(
        "SELECT path FROM files WHERE id = ?", [added]
    )


def test_files_of_a_deleted_scene_go_with_it(mirror_env):
    env = synced(mirror_env())
    scene = next(s for s in env.fake.truth()["scenes"] if s["files"])
    env.fake.mutations.destroy("scene", [scene["id"]])
    incremental_and_check(env)
    gone = [f["id"] for f in scene["files"]]
    assert env.query(f"SELECT count(*) FROM files WHERE id IN ({', '.join('?' * len(gone))})", gone) == [(0,)]
    assert log_rows(env, "files", gone[0])[-1][0] == "deleted"


def test_a_cleaned_file_leaves_the_mirror_with_nothing_else(mirror_env):
    """A clean drops one of a scene's two files (the scene is bumped): the file goes, and the
    incremental run prunes only it, in the scene's own transaction."""
    env = synced(mirror_env())
    scene = next(s for s in env.fake.truth()["scenes"] if s["files"])
    added = env.fake.mutations.scene_add_file(scene["id"])
    incremental_and_check(env)
    files_before = env.query("SELECT count(*) FROM files")[0][0]
    env.fake.mutations.file_clean(scene["files"][0]["id"])
    incremental_and_check(env)
    assert env.query("SELECT file_id, is_primary FROM scene_files WHERE scene_id = ?", [scene["id"]]) == [
        (added, True)
    ]
    assert env.query("SELECT count(*) FROM files")[0][0] == files_before - 1
    assert log_rows(env, "files", scene["files"][0]["id"])[-1][0] == "deleted"
    deleted = env.query("SELECT entity_id FROM sync_log WHERE entity_type = 'files' AND action = 'deleted'")
    assert deleted == [(scene["files"][0]["id"],)]


def test_a_full_sync_sweeps_files_no_row_links(mirror_env):
    """A mirror kept from before merges pruned their own files can hold orphans: a full sync
    removes them; an incremental one leaves every other file alone."""
    env = synced(mirror_env())
    orphan = env.query("SELECT max(id) + 1000 FROM files")[0][0]
    with duckdb.connect(env.db_path) as con:
        con.execute("INSERT INTO files (id, path) VALUES (?, '/gone/orphan.mp4')", [orphan])
    assert env.full().success
    env.assert_equal()
    assert env.query("SELECT count(*) FROM files WHERE id = ?", [orphan]) == [(0,)]
    assert log_rows(env, "files", orphan)[-1][0] == "deleted"


def test_marker_create_update_delete(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    m = env.fake.mutations
    scene, tag = truth["scenes"][3]["id"], truth["tags"][2]["id"]
    end = None if "SceneMarker.end_seconds" in env.fake.release.lacks else 20.0  # from v0.28
    created = m.marker_create(scene, "a new marker", 12.5, tag, end_seconds=end, tag_ids=[tag])
    existing = truth["scene_markers"]
    m.marker_update(existing[0]["id"], title="renamed marker", seconds=3.25)
    m.marker_destroy(existing[1]["id"])
    assert [s["updated_at"] for s in env.fake.truth()["scenes"]] == [s["updated_at"] for s in truth["scenes"]]
    meta = incremental_and_check(env)
    assert (meta["scene_markers"]["created"], meta["scene_markers"]["updated"]) == (1, 1)
    assert meta["scene_markers"]["deleted"] == 1
    assert log_rows(env, "scene_markers", created)[-1][0] == "created"


def test_gallery_chapters_without_a_bump(mirror_env):
    env = synced(mirror_env())
    truth = env.fake.truth()
    m = env.fake.mutations
    first_gallery, second_gallery = truth["galleries"][0]["id"], truth["galleries"][1]["id"]
    opening = m.chapter_create(first_gallery, "Opening", 1)
    closing = m.chapter_create(second_gallery, "Closing", 2)
    stamps = [g["updated_at"] for g in truth["galleries"]]
    assert [g["updated_at"] for g in env.fake.truth()["galleries"]] == stamps  # no bump
    assert incremental_and_check(env)["galleries"]["links_changed"] == 2
    m.chapter_update(opening, title="Renamed chapter")
    m.chapter_destroy(closing)
    assert [g["updated_at"] for g in env.fake.truth()["galleries"]] == stamps
    assert incremental_and_check(env)["galleries"]["links_changed"] == 2
    assert env.query("SELECT title FROM gallery_chapters WHERE chapter_id = ?", [opening]) == [
        ("Renamed chapter",)
    ]
    # Mirrored chapters compare equal to Stash's (timestamps as instants): nothing left to re-read.
    assert incremental_and_check(env)["galleries"]["links_changed"] == 0


def test_rows_already_in_the_overlap_window_are_not_read_again(mirror_env):
    """The stamp check names every changed row: an incremental run reads those by id, not the whole
    overlap window (which, in a busy library, holds many rows the previous run already stored).
    The first pass is written seconds before the run that reads it: a row written in the second a
    run began is read again by the next one (test_a_second_edit_in_the_second_of_the_read)."""
    env = synced(mirror_env())
    ids = [i["id"] for i in env.fake.truth()["images"]]
    env.fake.clock.freeze()
    env.fake.mutations.bulk_update("image", ids[:30], photographer="First pass")
    env.fake.clock.advance(5)
    assert incremental_and_check(env)["images"]["updated"] == 30
    env.fake.mutations.update("image", ids[-1], title="One more edit")
    images = incremental_and_check(env)["images"]
    # The 30 first-pass rows are still inside the window; only the edited one comes over the wire.
    assert (images["fetched"], images["updated"], images["stamps_changed"]) == (1, 1, 1)
