"""The fake's files (``findFiles``, v0.29.3 on), scene markers and gallery chapters, over real HTTP:
what each query serves per release, and which rows each mutation bumps (docs/stash-behaviour.md §6:
a rename, rescan, marker or chapter edit bumps only its own row)."""

import httpx
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize

SIZE = LibrarySize(scenes=120, images=300)
FILES = (
    "query($f: FileFilterType, $ids: [ID!]) { findFiles(file_filter: $f, ids: $ids, "
    'filter: {per_page: -1, sort: "id"}) { count files { __typename id path updated_at '
    "... on VideoFile { video_codec } ... on ImageFile { width } } } }"
)
MARKERS = (
    'query { findSceneMarkers(filter: {per_page: -1, sort: "id"}) { count scene_markers { id title '
    "seconds scene { id } primary_tag { id } tags { id } updated_at } } }"
)


def post(server, query: str, variables: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )


def data(server, query: str, variables: dict | None = None) -> dict:
    reply = post(server, query, variables)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def world(make_fake_server):
    fake = FakeStash.generated(SIZE, seed=5)
    return fake, make_fake_server(fake)


def test_find_files_lists_every_owners_file_as_its_type(world) -> None:
    fake, server = world
    truth = fake.truth()
    expected = {
        f["id"]: kind
        for table, kind in (("scenes", "VideoFile"), ("galleries", "GalleryFile"))
        for e in truth[table]
        for f in e["files"]
    }
    answer = data(server, FILES)["findFiles"]
    got = {int(f["id"]): f["__typename"] for f in answer["files"]}
    assert {i: got[i] for i in expected} == expected
    image_files = {f["id"] for i in truth["images"] for f in i["files"]}
    assert set(got) == set(expected) | image_files
    assert answer["count"] == len(got)
    assert {got[i] for i in image_files} == {"ImageFile", "VideoFile"}  # clips among the pictures


def test_rename_rescan_and_owner_counts(world) -> None:
    fake, server = world
    truth = fake.truth()
    scene = next(s for s in truth["scenes"] if s["files"])
    image = next(i for i in truth["images"] if i["files"])
    fake.clock.freeze(fake.clock.now() + 3600)
    before = fake.clock.stamp()
    fake.mutations.file_rename(scene["files"][0]["id"], "/x/renamed.mp4")
    fake.mutations.file_rescan(image["files"][0]["id"])
    after = fake.truth()
    assert next(s for s in after["scenes"] if s["id"] == scene["id"])["updated_at"] == scene["updated_at"]
    assert next(i for i in after["images"] if i["id"] == image["id"])["updated_at"] == image["updated_at"]
    since = {"updated_at": {"modifier": "GREATER_THAN", "value": before[:-1]}}
    changed = data(server, FILES, {"f": since})["findFiles"]["files"]
    assert sorted(int(f["id"]) for f in changed) == sorted([scene["files"][0]["id"], image["files"][0]["id"]])
    owned = {**since, "scene_count": {"modifier": "GREATER_THAN", "value": 0}}
    (renamed,) = data(server, FILES, {"f": owned})["findFiles"]["files"]
    assert (int(renamed["id"]), renamed["path"]) == (scene["files"][0]["id"], "/x/renamed.mp4")
    rescanned = next(f for f in fake.truth()["images"] if f["id"] == image["id"])["files"][0]
    assert rescanned["size"] != image["files"][0]["size"]
    assert rescanned["fingerprints"] != image["files"][0]["fingerprints"]


def test_a_file_added_or_made_primary_bumps_the_scene(world) -> None:
    fake, server = world
    scene = next(s for s in fake.truth()["scenes"] if s["files"])
    fake.clock.freeze(fake.clock.now() + 60)
    added = fake.mutations.scene_add_file(scene["id"])
    now = next(s for s in fake.truth()["scenes"] if s["id"] == scene["id"])
    assert now["updated_at"] == fake.clock.stamp() != scene["updated_at"]
    assert [f["id"] for f in now["files"]] == [scene["files"][0]["id"], added]
    fake.mutations.scene_set_primary_file(scene["id"], added)
    assert next(s for s in fake.truth()["scenes"] if s["id"] == scene["id"])["files"][0]["id"] == added
    assert int(data(server, FILES, {"ids": [str(added)]})["findFiles"]["files"][0]["id"]) == added


def test_a_clean_removes_one_file_and_bumps_its_owner_or_deletes_it_with_its_last(world) -> None:
    fake, server = world
    scene = next(s for s in fake.truth()["scenes"] if s["files"])
    added = fake.mutations.scene_add_file(scene["id"])
    fake.clock.freeze(fake.clock.now() + 60)
    primary = scene["files"][0]["id"]
    fake.mutations.file_clean(primary)
    now = next(s for s in fake.truth()["scenes"] if s["id"] == scene["id"])
    assert [f["id"] for f in now["files"]] == [added]  # the next file is the primary now
    assert now["updated_at"] == fake.clock.stamp()
    assert data(server, FILES, {"ids": [str(added)]})["findFiles"]["count"] == 1
    assert primary not in {int(f["id"]) for f in data(server, FILES)["findFiles"]["files"]}
    fake.mutations.file_clean(added)  # its last file: the scene goes too
    assert scene["id"] not in {s["id"] for s in fake.truth()["scenes"]}
    assert added not in {int(f["id"]) for f in data(server, FILES)["findFiles"]["files"]}


def test_markers_served_and_edited_without_a_scene_bump(world) -> None:
    fake, server = world
    truth = fake.truth()
    answer = data(server, MARKERS)["findSceneMarkers"]
    assert answer["count"] == len(truth["scene_markers"]) > 0
    first = answer["scene_markers"][0]
    marker = truth["scene_markers"][0]
    assert (int(first["scene"]["id"]), int(first["primary_tag"]["id"])) == (
        marker["scene_id"],
        marker["primary_tag_id"],
    )
    scene = truth["scenes"][0]["id"]
    created = fake.mutations.marker_create(scene, "new", 1.5, marker["primary_tag_id"])
    fake.mutations.marker_update(marker["id"], title="changed")
    assert [s["updated_at"] for s in fake.truth()["scenes"]] == [s["updated_at"] for s in truth["scenes"]]
    titles = {int(m["id"]): m["title"] for m in data(server, MARKERS)["findSceneMarkers"]["scene_markers"]}
    assert (titles[created], titles[marker["id"]]) == ("new", "changed")
    with pytest.raises(ValueError, match="primary tag"):
        fake.mutations.destroy("tag", [marker["primary_tag_id"]])
    fake.mutations.destroy("scene", [marker["scene_id"]])  # its markers go with it
    assert all(m["scene_id"] != marker["scene_id"] for m in fake.truth()["scene_markers"])


def test_chapters_edited_without_a_gallery_bump(world) -> None:
    fake, _server = world
    truth = fake.truth()
    gallery = truth["galleries"][0]
    cid = fake.mutations.chapter_create(gallery["id"], "Part one", 1)
    fake.mutations.chapter_update(cid, title="Part 1")
    after = next(g for g in fake.truth()["galleries"] if g["id"] == gallery["id"])
    assert after["updated_at"] == gallery["updated_at"]
    assert [c["title"] for c in after["chapters"] if c["id"] == cid] == ["Part 1"]
    fake.mutations.chapter_destroy(cid)
    assert cid not in [
        c["id"] for c in next(g for g in fake.truth()["galleries"] if g["id"] == gallery["id"])["chapters"]
    ]


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        (
            "v0.27.2",
            [
                FILES,
                MARKERS.replace("seconds", "end_seconds"),
                'query { findSceneMarkers(ids: ["1"]) { count } }',
            ],
        ),
        ("v0.28.1", [FILES]),
    ],
)
def test_older_releases_refuse_what_they_lack(make_fake_server, version, refused) -> None:
    server = make_fake_server(FakeStash.generated(SIZE, seed=5, version=version))
    for query in refused:
        assert post(server, query).status_code == 422
    assert post(server, MARKERS).status_code == 200


def test_v0_29_3_lists_files(make_fake_server) -> None:
    server = make_fake_server(FakeStash.generated(SIZE, seed=5, version="v0.29.3"))
    assert data(server, FILES)["findFiles"]["count"] > 0
