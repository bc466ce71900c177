"""Every ``updated_at`` bump rule of docs/stash-behaviour.md §6, proven over real HTTP against the fake server.

Each test snapshots ``id → updated_at`` of all seven types through GraphQL, mutates, snapshots again
and asserts the EXACT set of rows whose ``updated_at`` changed (and to which stamp).  The clock is
frozen far after the generated history, in a +02:00 zone, so a bump is unmistakable.
"""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.fakestash.mutations import Mutations
from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline_tests.conftest import GraphQLSession

ZONE = "+02:00"
T1 = 2_000_000_000  # 2033-05-18T03:33:20Z
STAMP1 = "2033-05-18T05:33:20+02:00"
STAMP2 = "2033-05-18T05:34:20+02:00"  # T1 + 60 s
FIND = {
    "scene": ("findScenes", "scenes"),
    "image": ("findImages", "images"),
    "gallery": ("findGalleries", "galleries"),
    "performer": ("findPerformers", "performers"),
    "studio": ("findStudios", "studios"),
    "tag": ("findTags", "tags"),
    "group": ("findGroups", "groups"),
}
SNAPSHOT = (
    "{ "
    + " ".join(
        f'{query}(filter: {{per_page: -1, sort: "id"}}) {{ {key} {{ id updated_at }} }}'
        for query, key in FIND.values()
    )
    + " }"
)
Key = tuple[str, int]


class Api:
    """Reads the fake through GraphQL only (what a mirror would see)."""

    def __init__(self, session: GraphQLSession, server: FakeStashServer, fake: FakeStash) -> None:
        self.session = session
        self.server = server
        self.fake = fake
        self.m: Mutations = fake.mutations

    def snapshot(self) -> dict[Key, str]:
        data = self.session.data(SNAPSHOT)
        out: dict[Key, str] = {}
        for kind, (query, key) in FIND.items():
            for row in data[query][key]:
                out[(kind, int(row["id"]))] = row["updated_at"]
        return out

    def get(self, kind: str, entity_id: int, selection: str) -> dict[str, Any]:
        query, key = FIND[kind]
        data = self.session.data(
            f"query($ids: [ID!]) {{ {query}(ids: $ids) {{ {key} {{ id updated_at {selection} }} }} }}",
            {"ids": [str(entity_id)]},
        )
        (row,) = data[query][key]
        return row

    def ids(self, kind: str, entity_id: int, field: str) -> list[int]:
        """Ids of a relation field (``tags``, ``galleries``, ...), sorted."""
        row = self.get(kind, entity_id, f"{field} {{ id }}")
        value = row[field]
        if value is None:
            return []
        if isinstance(value, dict):
            return [int(value["id"])]
        return sorted(int(v["id"]) for v in value)

    def gallery_image_ids(self, gallery_id: int) -> list[int]:
        data = self.session.data(
            "query($g: [ID!]) { findImages(image_filter: {galleries: {value: $g, modifier: INCLUDES}},"
            ' filter: {per_page: -1, sort: "id"}) { images { id } } }',
            {"g": [str(gallery_id)]},
        )
        return [int(i["id"]) for i in data["findImages"]["images"]]


class Diff:
    def __init__(self, before: dict[Key, str], after: dict[Key, str]) -> None:
        self.bumped = {k: v for k, v in after.items() if k in before and before[k] != v}
        self.removed = set(before) - set(after)
        self.added = set(after) - set(before)


@pytest.fixture
def api(
    make_fake_server: Callable[[FakeStash], FakeStashServer], gql_session: Callable[..., GraphQLSession]
) -> Api:
    fake = FakeStash.generated(LibrarySize(scenes=120, images=400), zone=ZONE, seed=5)
    fake.clock.freeze(T1)
    server = make_fake_server(fake)
    return Api(gql_session(server), server, fake)


def observe(api: Api, action: Callable[[], Any]) -> Diff:
    before = api.snapshot()
    action()
    return Diff(before, api.snapshot())


def first(kind: str, api: Api, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The lowest-id entity of ``kind`` matching ``predicate`` (picking test subjects)."""
    for row in api.fake.store.iter_entities(kind):
        if predicate(row):
            return row
    raise AssertionError(f"no {kind} matches")


# ------------------------------------------------------------------------------ single edits
def test_field_edit_bumps_only_the_edited_row(api: Api) -> None:
    diff = observe(api, lambda: api.m.update("scene", 7, title="Édité ✨", rating100=55))
    assert diff.bumped == {("scene", 7): STAMP1}
    assert not diff.removed
    assert not diff.added
    row = api.get("scene", 7, "title rating100 created_at")
    assert row["title"] == "Édité ✨"
    assert row["rating100"] == 55
    assert row["updated_at"] == STAMP1
    assert row["created_at"] != STAMP1


RELATION_EDITS = [
    # (kind, field, GraphQL field, target kind) -- the edited (owning) side is bumped, never the target
    ("scene", "tag_ids", "tags", "tag"),
    ("scene", "performer_ids", "performers", "performer"),
    ("scene", "gallery_ids", "galleries", "gallery"),
    ("scene", "studio_id", "studio", "studio"),
    ("image", "tag_ids", "tags", "tag"),
    ("image", "performer_ids", "performers", "performer"),
    ("gallery", "tag_ids", "tags", "tag"),
    ("gallery", "performer_ids", "performers", "performer"),
    ("performer", "tag_ids", "tags", "tag"),
    ("studio", "tag_ids", "tags", "tag"),
    ("studio", "parent_id", "parent_studio", "studio"),
    ("tag", "parent_ids", "parents", "tag"),
    ("group", "tag_ids", "tags", "tag"),
]


@pytest.mark.parametrize(("kind", "field", "gql_field", "target"), RELATION_EDITS)
def test_relation_edit_bumps_the_owner_not_the_target(
    api: Api, kind: str, field: str, gql_field: str, target: str
) -> None:
    owner = api.fake.store.table(kind)[3]
    old = [owner[field]] if field.endswith("_id") else list(owner[field])
    old = [x for x in old if x is not None]
    # A target new for this owner; for self-relations a lower id, which cannot close a cycle.
    candidates = api.fake.store.sorted_ids(target)
    new_target = next(t for t in candidates if t not in old and (target != kind or t < 3))
    value = new_target if field.endswith("_id") else [*old, new_target]
    diff = observe(api, lambda: api.m.update(kind, 3, **{field: value}))
    assert diff.bumped == {(kind, 3): STAMP1}
    assert new_target in api.ids(kind, 3, gql_field)


def test_relation_seen_from_the_other_side_changes_without_a_bump(api: Api) -> None:
    """Scene tag edit: the tag's scene list (other side) changes, its updated_at does not."""
    tag_id = next(
        t for t in api.fake.store.sorted_ids("tag") if t not in api.fake.store.table("scene")[5]["tag_ids"]
    )
    before_tag = api.get("tag", tag_id, "scene_count")
    diff = observe(
        api, lambda: api.m.update("scene", 5, tag_ids=[*api.fake.store.table("scene")[5]["tag_ids"], tag_id])
    )
    assert set(diff.bumped) == {("scene", 5)}
    after_tag = api.get("tag", tag_id, "scene_count")
    assert after_tag["scene_count"] == before_tag["scene_count"] + 1
    assert after_tag["updated_at"] == before_tag["updated_at"]


def test_group_containing_edit_bumps_the_edited_group_only(api: Api) -> None:
    diff = observe(api, lambda: api.m.update("group", 4, containing=[[1, "sequel"]]))
    assert diff.bumped == {("group", 4): STAMP1}
    row = api.get("group", 4, "containing_groups { group { id } description }")
    assert row["containing_groups"] == [{"group": {"id": "1"}, "description": "sequel"}]
    parent = api.get("group", 1, "sub_groups { group { id } }")
    assert {"group": {"id": "4"}} in parent["sub_groups"]


def test_scene_groups_edit_with_scene_index(api: Api) -> None:
    diff = observe(api, lambda: api.m.update("scene", 9, groups=[[2, 7], [3, None]]))
    assert set(diff.bumped) == {("scene", 9)}
    row = api.get("scene", 9, "groups { group { id } scene_index }")
    assert sorted((g["group"]["id"], g["scene_index"]) for g in row["groups"]) == [("2", 7), ("3", None)]


# ------------------------------------------------------------------------------ images and galleries
def test_image_gallery_edit_bumps_the_image_and_every_impacted_gallery(api: Api) -> None:
    image = first("image", api, lambda i: len(i["gallery_ids"]) == 1)
    kept = image["gallery_ids"][0]
    added = next(g for g in api.fake.store.sorted_ids("gallery") if g != kept)
    # Adding a gallery: the image and the added gallery are bumped; the kept one is not.
    diff = observe(api, lambda: api.m.update("image", image["id"], gallery_ids=[kept, added]))
    assert diff.bumped == {("image", image["id"]): STAMP1, ("gallery", added): STAMP1}
    assert image["id"] in api.gallery_image_ids(added)
    # Replacing both: the removed and the added gallery are bumped, with the image's stamp.
    api.fake.clock.advance(60)
    third = next(g for g in api.fake.store.sorted_ids("gallery") if g not in (kept, added))
    diff = observe(api, lambda: api.m.update("image", image["id"], gallery_ids=[third]))
    assert diff.bumped == {
        ("image", image["id"]): STAMP2,
        ("gallery", kept): STAMP2,
        ("gallery", added): STAMP2,
        ("gallery", third): STAMP2,
    }
    assert api.ids("image", image["id"], "galleries") == [third]
    assert image["id"] not in api.gallery_image_ids(kept)


def test_add_and_remove_gallery_images_bump_the_gallery_not_the_images(api: Api) -> None:
    gallery_id = 2
    outsiders = [
        i for i in api.fake.store.sorted_ids("image") if i not in api.fake.store.images_of_gallery(2)
    ][:3]
    diff = observe(api, lambda: api.m.add_gallery_images(gallery_id, outsiders))
    assert diff.bumped == {("gallery", gallery_id): STAMP1}
    assert set(outsiders) <= set(api.gallery_image_ids(gallery_id))
    assert all(gallery_id in api.ids("image", i, "galleries") for i in outsiders)
    api.fake.clock.advance(60)
    diff = observe(api, lambda: api.m.remove_gallery_images(gallery_id, outsiders[:2]))
    assert diff.bumped == {("gallery", gallery_id): STAMP2}
    members = api.gallery_image_ids(gallery_id)
    assert outsiders[2] in members
    assert not set(outsiders[:2]) & set(members)


def test_gallery_update_scene_ids_bumps_the_gallery_not_the_scenes(api: Api) -> None:
    gallery_id = 3
    old_scenes = sorted(api.fake.store.scenes_of_gallery(gallery_id))
    new_scenes = [s for s in (11, 12, 13) if s not in old_scenes]
    diff = observe(
        api, lambda: api.m.gallery_update(gallery_id, scene_ids=new_scenes, title="Nouvelle galerie")
    )
    assert diff.bumped == {("gallery", gallery_id): STAMP1}
    row = api.get("gallery", gallery_id, "title scenes { id }")
    assert row["title"] == "Nouvelle galerie"
    assert sorted(int(s["id"]) for s in row["scenes"]) == new_scenes
    assert all(gallery_id in api.ids("scene", s, "galleries") for s in new_scenes)
    assert all(gallery_id not in api.ids("scene", s, "galleries") for s in old_scenes)


def test_scene_gallery_edit_bumps_the_scene_not_the_gallery(api: Api) -> None:
    scene = first("scene", api, lambda s: not s["gallery_ids"])
    diff = observe(api, lambda: api.m.update("scene", scene["id"], gallery_ids=[1]))
    assert diff.bumped == {("scene", scene["id"]): STAMP1}
    assert scene["id"] in [int(s["id"]) for s in api.get("gallery", 1, "scenes { id }")["scenes"]]


# ------------------------------------------------------------------------------ bulk, create, destroy
def test_bulk_update_shares_one_timestamp_and_applies_modes(api: Api) -> None:
    ids = [20, 21, 22, 23]
    tag = 1
    olds = {i: set(api.fake.store.table("scene")[i]["tag_ids"]) for i in ids}
    diff = observe(api, lambda: api.m.bulk_update("scene", ids, mode="ADD", tag_ids=[tag], organized=True))
    assert diff.bumped == {("scene", i): STAMP1 for i in ids}
    for i in ids:
        row = api.get("scene", i, "organized tags { id }")
        assert row["organized"] is True
        assert {int(t["id"]) for t in row["tags"]} == olds[i] | {tag}
    api.fake.clock.advance(60)
    diff = observe(api, lambda: api.m.bulk_update("scene", ids[:2], mode="REMOVE", tag_ids=[tag]))
    assert diff.bumped == {("scene", i): STAMP2 for i in ids[:2]}
    assert tag not in api.ids("scene", ids[0], "tags")


def test_bulk_image_gallery_edit_bumps_added_galleries_with_the_same_stamp(api: Api) -> None:
    images = [
        i
        for i in api.fake.store.sorted_ids("image")
        if 4 not in api.fake.store.table("image")[i]["gallery_ids"]
    ]
    chosen = images[:5]
    diff = observe(api, lambda: api.m.bulk_update("image", chosen, mode="ADD", gallery_ids=[4]))
    assert diff.bumped == {**{("image", i): STAMP1 for i in chosen}, ("gallery", 4): STAMP1}


def test_bulk_stamp_is_taken_before_the_write(api: Api) -> None:
    """The stamp is read once, before any row is written: a clock moving mid-write changes nothing."""

    class TickingClock:
        def __init__(self) -> None:
            self.calls = 0

        def stamp(self) -> str:
            self.calls += 1
            return f"2033-05-18T05:33:{20 + self.calls:02d}+02:00"

    ticking = TickingClock()
    mutations = Mutations(api.fake.store, ticking)  # type: ignore[arg-type]
    diff = observe(api, lambda: mutations.bulk_update("performer", [1, 2, 3], details="bulk"))
    assert ticking.calls == 1
    assert set(diff.bumped.values()) == {"2033-05-18T05:33:21+02:00"}
    assert len(diff.bumped) == 3


def test_create_stamps_created_and_updated_and_never_reuses_ids(api: Api) -> None:
    top = max(api.fake.store.sorted_ids("scene"))
    created: list[int] = []
    diff = observe(
        api, lambda: created.append(api.m.create("scene", title="Neu", tag_ids=[1, 2], studio_id=1))
    )
    new_id = created[0]
    assert new_id == top + 1
    assert diff.added == {("scene", new_id)}
    assert not diff.bumped  # neither the tags nor the studio
    row = api.get("scene", new_id, "title created_at tags { id } studio { id } organized files { id }")
    assert row["created_at"] == row["updated_at"] == STAMP1
    assert row["title"] == "Neu"
    assert sorted(int(t["id"]) for t in row["tags"]) == [1, 2]
    assert row["studio"] == {"id": "1"}
    assert row["organized"] is False
    assert row["files"] == []
    api.m.destroy("scene", [new_id])
    assert api.m.create("scene", title="again") == new_id + 1  # AUTOINCREMENT: never reused


def test_create_of_every_kind_is_served(api: Api) -> None:
    made = {
        "tag": api.m.create("tag", name="Brand-new tag"),
        "studio": api.m.create("studio", name="Brand-new studio", parent_id=1),
        "performer": api.m.create("performer", name="Zoë Nouvelle", gender="FEMALE"),
        "group": api.m.create("group", name="Neue Gruppe", containing=[[1, None]]),
        "gallery": api.m.create("gallery", title="New gallery", performer_ids=[1]),
        "image": api.m.create("image", title="New image", gallery_ids=[1]),
    }
    for kind, new_id in made.items():
        row = api.get(kind, new_id, "created_at")
        assert row["created_at"] == row["updated_at"] == STAMP1, kind
    # A scanned image joining a gallery bumps that gallery too.
    assert api.get("gallery", 1, "")["updated_at"] == STAMP1


def test_destroy_cascades_links_sets_null_and_bumps_nothing(api: Api) -> None:
    store = api.fake.store
    tag = first("tag", api, lambda t: any(t["id"] in s["tag_ids"] for s in store.iter_entities("scene")))
    tagged_scenes = [s["id"] for s in store.iter_entities("scene") if tag["id"] in s["tag_ids"]]
    studio = first("studio", api, lambda s: bool(store.children_of_studio(s["id"])))
    children = store.children_of_studio(studio["id"])
    studio_scenes = [s["id"] for s in store.iter_entities("scene") if s["studio_id"] == studio["id"]]
    gallery_id = next(g for g in store.sorted_ids("gallery") if store.images_of_gallery(g))
    members = sorted(store.images_of_gallery(gallery_id))

    def destroy() -> None:
        api.m.destroy("tag", tag["id"])
        api.m.destroy("studio", [studio["id"]])
        api.m.destroy("gallery", [gallery_id])

    diff = observe(api, destroy)
    assert not diff.bumped
    assert diff.removed == {("tag", tag["id"]), ("studio", studio["id"]), ("gallery", gallery_id)}
    assert all(tag["id"] not in api.ids("scene", s, "tags") for s in tagged_scenes)
    assert all(api.get("scene", s, "studio { id }")["studio"] is None for s in studio_scenes)  # SET NULL
    assert all(api.get("studio", c, "parent_studio { id }")["parent_studio"] is None for c in children)
    assert all(gallery_id not in api.ids("image", i, "galleries") for i in members)  # images survive
    errors = api.session.errors(f'{{ findTags(ids: ["{tag["id"]}"]) {{ tags {{ id }} }} }}')
    assert errors == [f"tag with id {tag['id']} not found"]


# ------------------------------------------------------------------------------ merges
def test_tags_merge_moves_every_link_and_bumps_nothing(api: Api) -> None:
    store, m = api.fake.store, api.m
    source, other_source, dest = 30, 31, 32
    # Plant the source tag on every kind of owner, plus a scene holding both source and destination.
    m.update("scene", 1, tag_ids=[source, dest])
    m.update("image", 1, tag_ids=[source])
    m.update("gallery", 1, tag_ids=[other_source])
    m.update("performer", 1, tag_ids=[source])
    m.update("studio", 1, tag_ids=[source])
    m.update("group", 1, tag_ids=[other_source])
    m.update("tag", 35, parent_ids=[source])  # a child of a source
    m.update("tag", source, parent_ids=[2])  # a parent of a source
    source_names = [store.table("tag")[source]["name"], store.table("tag")[other_source]["name"]]
    api.fake.clock.advance(3600)
    diff = observe(api, lambda: m.tags_merge([source, other_source], dest))
    assert not diff.bumped  # nothing at all, not even the destination
    assert diff.removed == {("tag", source), ("tag", other_source)}
    for kind, entity_id in [
        ("scene", 1),
        ("image", 1),
        ("gallery", 1),
        ("performer", 1),
        ("studio", 1),
        ("group", 1),
    ]:
        assert dest in api.ids(kind, entity_id, "tags"), kind
    row = api.get("scene", 1, "tags { id }")
    assert [t["id"] for t in row["tags"]].count(str(dest)) == 1  # UPDATE OR IGNORE: no duplicate link
    assert dest in api.ids("tag", 35, "parents")
    assert 2 in api.ids("tag", dest, "parents")
    assert set(source_names) <= set(api.get("tag", dest, "aliases")["aliases"])
    assert api.get("tag", dest, "")["updated_at"] != api.fake.clock.stamp()


def test_performer_merge_bumps_only_the_destination(api: Api) -> None:
    m = api.m
    source, dest = 5, 6
    m.update("scene", 2, performer_ids=[source, dest])
    m.update("scene", 3, performer_ids=[source])
    m.update("image", 2, performer_ids=[source])
    m.update("gallery", 2, performer_ids=[source])
    api.fake.clock.advance(60)
    diff = observe(api, lambda: m.performer_merge([source], dest))
    assert diff.bumped == {("performer", dest): STAMP2}
    assert diff.removed == {("performer", source)}
    assert api.ids("scene", 2, "performers") == [dest]
    assert dest in api.ids("scene", 3, "performers")
    assert dest in api.ids("image", 2, "performers")
    assert dest in api.ids("gallery", 2, "performers")


# ------------------------------------------------------------------------------ no-bump activity
def test_o_counter_and_play_history_do_not_bump(api: Api) -> None:
    scene_id, image_id = 8, 8
    before = api.get("scene", scene_id, "o_counter play_count o_history play_history last_played_at")
    image_before = api.get("image", image_id, "o_counter")

    def activity() -> None:
        api.m.scene_add_o(scene_id)
        api.m.scene_add_play(scene_id)
        api.m.image_increment_o(image_id)

    diff = observe(api, activity)
    assert not diff.bumped
    after = api.get("scene", scene_id, "o_counter play_count o_history play_history last_played_at")
    assert after["o_counter"] == (before["o_counter"] or 0) + 1
    assert after["play_count"] == (before["play_count"] or 0) + 1
    assert (
        after["o_history"][-1]
        == after["play_history"][-1]
        == after["last_played_at"]
        == "2033-05-18T03:33:20Z"
    )
    assert api.get("image", image_id, "o_counter")["o_counter"] == (image_before["o_counter"] or 0) + 1


def test_saved_and_reset_activity_do_not_bump(api: Api) -> None:
    scene_id = 9

    def activity() -> tuple[float, float]:
        row = api.get("scene", scene_id, "resume_time play_duration")
        return row["resume_time"], row["play_duration"]

    _resume, duration = activity()
    diff = observe(api, lambda: api.m.scene_save_activity(scene_id, resume_time=75.25, play_duration=12.5))
    assert not diff.bumped
    assert activity() == (75.25, (duration or 0) + 12.5)
    diff = observe(api, lambda: api.m.scene_reset_activity(scene_id))  # the resume point only
    assert not diff.bumped
    assert activity() == (0, (duration or 0) + 12.5)
    diff = observe(api, lambda: api.m.scene_reset_activity(scene_id, reset_resume=False, reset_duration=True))
    assert not diff.bumped
    assert activity() == (0, 0)


def test_sub_group_edits_do_not_bump(api: Api) -> None:
    diff = observe(api, lambda: api.m.add_group_sub_groups(1, [[3, "prequel"], 4]))
    assert not diff.bumped
    subs = api.get("group", 1, "sub_groups { group { id } description }")["sub_groups"]
    assert {"group": {"id": "3"}, "description": "prequel"} in subs
    assert {"group": {"id": "4"}, "description": None} in subs
    diff = observe(api, lambda: api.m.remove_group_sub_groups(1, [3]))
    assert not diff.bumped
    containing = api.get("group", 3, "containing_groups { group { id } }")["containing_groups"]
    assert {"group": {"id": "1"}} not in containing


def test_file_move_changes_the_path_without_a_bump(api: Api) -> None:
    scene = first("scene", api, lambda s: bool(s["files"]))
    diff = observe(api, lambda: api.m.move_file("scene", scene["id"], "/data/moved/renamed é.mp4"))
    assert not diff.bumped
    row = api.get("scene", scene["id"], "files { path basename updated_at }")
    assert row["files"][0]["path"] == "/data/moved/renamed é.mp4"
    assert row["files"][0]["basename"] == "renamed é.mp4"
    assert row["files"][0]["updated_at"] == STAMP1


# ------------------------------------------------------------------------------ control endpoint, scheduling
def test_mutation_through_the_http_control_endpoint(api: Api) -> None:
    url = api.server.url + "/control"
    before = api.snapshot()
    response = httpx.post(
        url,
        json={
            "action": "mutate",
            "method": "update",
            "args": {"kind": "scene", "id": "12", "details": "via HTTP"},
        },
    )
    assert response.status_code == 200, response.text
    diff = Diff(before, api.snapshot())
    assert diff.bumped == {("scene", 12): STAMP1}
    assert api.get("scene", 12, "details")["details"] == "via HTTP"
    created = httpx.post(
        url, json={"action": "mutate", "method": "create", "args": {"kind": "tag", "name": "HTTP tag"}}
    )
    assert created.json() == {"result": max(api.fake.store.sorted_ids("tag"))}
    missing = httpx.post(
        url, json={"action": "mutate", "method": "update", "args": {"kind": "scene", "id": 99999}}
    )
    assert missing.status_code == 400
    assert "scene with id 99999 not found" in missing.json()["error"]


def test_scheduled_mutation_fires_mid_way_through_a_paged_read(api: Api) -> None:
    """A row deleted behind an offset pager shifts the pages: the next page skips a live row."""
    query = (
        'query($page: Int!) { findScenes(filter: {page: $page, per_page: 40, sort: "id"})'
        " { count scenes { id title } } }"
    )
    api.fake.after_requests(2, lambda fake: fake.mutations.destroy("scene", [10]))
    api.fake.after_requests(2, lambda fake: fake.mutations.update("scene", 100, title="changed mid-read"))
    seen: list[int] = []
    titles: dict[int, str] = {}
    counts = []
    for page in (1, 2, 3):
        data = api.session.data(query, {"page": page})["findScenes"]
        counts.append(data["count"])
        for scene in data["scenes"]:
            seen.append(int(scene["id"]))
            titles[int(scene["id"])] = scene["title"]
    assert counts == [120, 119, 119]  # the mutation ran just before the 2nd request was answered
    assert 10 in seen  # read on page 1, before it was deleted
    assert 41 not in seen  # shifted onto page 1's range: skipped although it still exists
    assert api.get("scene", 41, "")["id"] == "41"
    assert titles[100] == "changed mid-read"


def test_schedule_through_the_control_endpoint(api: Api) -> None:
    url = api.server.url + "/control"
    response = httpx.post(
        url,
        json={
            "action": "schedule",
            "after": 2,
            "method": "update",
            "args": {"kind": "performer", "id": 1, "name": "Renamed later"},
        },
    )
    assert response.status_code == 200, response.text
    first_read = api.get("performer", 1, "name")
    second_read = api.get("performer", 1, "name")
    assert first_read["name"] != "Renamed later"
    assert second_read["name"] == "Renamed later"
    assert second_read["updated_at"] == STAMP1


# ------------------------------------------------------------------------------ validation and safety
def test_validation_errors_are_clear(api: Api) -> None:
    m = api.m
    with pytest.raises(ValueError, match="unknown entity kind 'movie'"):
        m.update("movie", 1, title="x")
    with pytest.raises(ValueError, match="unknown scene field"):
        m.update("scene", 1, colour="red")
    with pytest.raises(ValueError, match="scene with id 99999 not found"):
        m.update("scene", 99999, title="x")
    with pytest.raises(ValueError, match="tag with id 99999 not found"):
        m.update("scene", 1, tag_ids=[99999])
    child = next(t for t in m.store.iter_entities("tag") if t["parent_ids"])
    with pytest.raises(ValueError, match="cycle"):
        m.update("tag", child["parent_ids"][0], parent_ids=[child["id"]])
    with pytest.raises(ValueError, match="already exists"):
        m.create("tag", name=m.store.table("tag")[1]["name"].upper())
    with pytest.raises(ValueError, match="unknown bulk update mode"):
        m.bulk_update("scene", [1], mode="TOGGLE", organized=True)
    with pytest.raises(ValueError, match="source == destination"):
        m.tags_merge([1], 1)
    with pytest.raises(ValueError, match="unknown scene field"):
        m.update("scene", 1, updated_at="2000-01-01T00:00:00Z")
    # A failed bulk edit writes nothing (all or nothing, like the transaction).
    before = api.snapshot()
    with pytest.raises(ValueError, match="scene with id 99999 not found"):
        m.bulk_update("scene", [1, 99999], title="partial?")
    assert Diff(before, api.snapshot()).bumped == {}


def test_shared_empty_lists_are_never_mutated_in_place(api: Api) -> None:
    store = api.fake.store
    empties = [s for s in store.iter_entities("scene") if not s["tag_ids"]]
    assert len(empties) >= 3
    api.m.update("scene", empties[0]["id"], tag_ids=[1])
    api.m.bulk_update("scene", [empties[1]["id"]], mode="ADD", tag_ids=[2], urls=["https://x.example/"])
    assert empties[2]["tag_ids"] == []
    assert all(not s["tag_ids"] for s in empties[2:])
    assert api.ids("scene", empties[2]["id"], "tags") == []
