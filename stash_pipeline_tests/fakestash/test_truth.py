"""The truth export: complete, plain, order-independent, and equal to what the HTTP API serves."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import ENTITY_KEYS, LibrarySize, generate
from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline.fakestash.store import PLURAL
from stash_pipeline_tests.conftest import GraphQLSession

ZONE = "+11:00,+10:00@2024-04-06T16:00:00Z"
NOW = 1_790_000_000


@pytest.fixture
def fake() -> FakeStash:
    fake = FakeStash(zone=ZONE, seed=2)
    fake.clock.freeze(NOW)
    generate(fake.store, fake.clock, LibrarySize(scenes=150, images=500), seed=2)
    return fake


@pytest.fixture
def session(
    fake: FakeStash,
    make_fake_server: Callable[[FakeStash], FakeStashServer],
    gql_session: Callable[..., GraphQLSession],
) -> GraphQLSession:
    return gql_session(make_fake_server(fake))


def no_tuples(value: Any) -> bool:
    if isinstance(value, tuple):
        return False
    if isinstance(value, dict):
        return all(no_tuples(v) for v in value.values())
    if isinstance(value, list):
        return all(no_tuples(v) for v in value)
    return True


def test_truth_is_complete_plain_and_sorted(fake: FakeStash) -> None:
    truth = fake.truth()
    assert truth["zone"] == ZONE
    assert truth["counts"] == {PLURAL[k]: n for k, n in fake.store.counts().items()}
    assert json.loads(json.dumps(truth)) == truth  # plain JSON types only
    assert no_tuples(truth)
    for kind, keys in ENTITY_KEYS.items():
        rows = truth[PLURAL[kind]]
        assert len(rows) == truth["counts"][PLURAL[kind]]
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        for row in rows:
            assert set(keys) <= set(row)
            for key in ("tag_ids", "performer_ids", "gallery_ids", "parent_ids"):
                if key in row:
                    assert row[key] == sorted(row[key])
            for key in ("groups", "containing"):
                if key in row:
                    assert row[key] == sorted(row[key], key=lambda p: p[0])
                    assert all(isinstance(p, list) and len(p) == 2 for p in row[key])


def test_gallery_membership_is_derived_from_the_owning_side(fake: FakeStash) -> None:
    truth = fake.truth()
    for gallery in truth["galleries"]:
        images = sorted(i["id"] for i in truth["images"] if gallery["id"] in i["gallery_ids"])
        scenes = sorted(s["id"] for s in truth["scenes"] if gallery["id"] in s["gallery_ids"])
        assert gallery["image_ids"] == images
        assert gallery["scene_ids"] == scenes
    assert any(g["image_ids"] for g in truth["galleries"])


def test_truth_is_a_deep_copy(fake: FakeStash) -> None:
    truth = fake.truth()
    scene = next(s for s in truth["scenes"] if s["files"] and s["tag_ids"])
    scene["tag_ids"].append(999)
    scene["files"][0]["path"] = "/elsewhere"
    scene["title"] = "changed"
    live = fake.store.table("scene")[scene["id"]]
    assert 999 not in live["tag_ids"]
    assert live["files"][0]["path"] != "/elsewhere"
    assert fake.truth()["scenes"][scene["id"] - 1]["title"] == live["title"]


SCENE_SELECTION = (
    "title code details director date urls rating100 organized o_counter play_count created_at "
    "studio { id } tags { id } performers { id } galleries { id } groups { group { id } scene_index } "
    "files { id path size duration fingerprints { type value } }"
)


def ids_of(items: list[dict[str, Any]] | None) -> list[int]:
    return sorted(int(i["id"]) for i in items or [])


def test_truth_matches_the_http_api(fake: FakeStash, session: GraphQLSession) -> None:
    truth = fake.truth()
    data = session.data(
        f'{{ findScenes(filter: {{per_page: -1, sort: "id"}}) {{ scenes {{ id updated_at {SCENE_SELECTION} }} }} }}'
    )
    served = {int(s["id"]): s for s in data["findScenes"]["scenes"]}
    assert set(served) == {s["id"] for s in truth["scenes"]}
    for scene in truth["scenes"]:
        got = served[scene["id"]]
        for key in ("title", "code", "details", "director", "date", "urls", "rating100", "organized"):
            assert got[key] == scene[key], (scene["id"], key)
        assert got["created_at"] == scene["created_at"]
        assert got["updated_at"] == scene["updated_at"]
        assert (int(got["studio"]["id"]) if got["studio"] else None) == scene["studio_id"]
        assert ids_of(got["tags"]) == scene["tag_ids"]
        assert ids_of(got["performers"]) == scene["performer_ids"]
        assert ids_of(got["galleries"]) == scene["gallery_ids"]
        assert sorted([int(g["group"]["id"]), g["scene_index"]] for g in got["groups"]) == scene["groups"]
        assert [f["path"] for f in got["files"]] == [f["path"] for f in scene["files"]]  # primary first
        assert [f["size"] for f in got["files"]] == [f["size"] for f in scene["files"]]
        if scene["files"]:
            assert got["files"][0]["fingerprints"] == scene["files"][0]["fingerprints"]

    images = session.data(
        '{ findImages(filter: {per_page: -1, sort: "id"}) { images { id updated_at date studio { id } '
        "galleries { id } performers { id } visual_files { ... on ImageFile { path } ... on VideoFile { path } } } } }"
    )["findImages"]["images"]
    for got, image in zip(images, truth["images"], strict=True):
        assert int(got["id"]) == image["id"]
        assert got["updated_at"] == image["updated_at"]
        assert got["date"] == image["date"]
        assert ids_of(got["galleries"]) == image["gallery_ids"]
        assert ids_of(got["performers"]) == image["performer_ids"]
        assert [f["path"] for f in got["visual_files"]] == [f["path"] for f in image["files"]]

    galleries = session.data(
        '{ findGalleries(filter: {per_page: -1, sort: "id"}) { galleries { id image_count scenes { id } } } }'
    )["findGalleries"]["galleries"]
    for got, gallery in zip(galleries, truth["galleries"], strict=True):
        assert got["image_count"] == len(gallery["image_ids"])
        assert ids_of(got["scenes"]) == gallery["scene_ids"]

    tags = session.data(
        '{ findTags(filter: {per_page: -1, sort: "id"}) { tags { id name aliases parents { id } } } }'
    )
    for got, tag in zip(tags["findTags"]["tags"], truth["tags"], strict=True):
        assert (got["name"], got["aliases"], ids_of(got["parents"])) == (
            tag["name"],
            tag["aliases"],
            tag["parent_ids"],
        )
    groups = session.data(
        '{ findGroups(filter: {per_page: -1, sort: "id"}) { groups { id containing_groups { group { id } description } } } }'
    )
    for got, group in zip(groups["findGroups"]["groups"], truth["groups"], strict=True):
        pairs = sorted([int(c["group"]["id"]), c["description"]] for c in got["containing_groups"])
        assert pairs == group["containing"]


def test_truth_reflects_mutations(fake: FakeStash, session: GraphQLSession) -> None:
    m = fake.mutations
    fake.clock.freeze(NOW + 3600)
    m.update("scene", 4, title="Nuevo título", tag_ids=[3, 1])
    m.destroy("performer", [2])
    m.add_gallery_images(1, [500])
    new_tag = m.create("tag", name="Neu")
    truth = fake.truth()
    scene = truth["scenes"][3]
    assert scene["title"] == "Nuevo título"
    assert scene["tag_ids"] == [1, 3]
    assert scene["updated_at"] == fake.clock.stamp()
    assert 2 not in [p["id"] for p in truth["performers"]]
    assert all(2 not in s["performer_ids"] for s in truth["scenes"])
    assert 500 in truth["galleries"][0]["image_ids"]
    assert truth["tags"][-1]["id"] == new_tag
    assert truth["counts"]["tags"] == len(truth["tags"])
    # The control endpoint serves the same export.
    served = httpx.post(session.server.url + "/control", json={"action": "truth"}).json()
    assert served == json.loads(json.dumps(truth))
