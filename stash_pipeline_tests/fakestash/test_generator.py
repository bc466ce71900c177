"""The generated library: deterministic, complete, and shaped like the real libraries that break mirrors."""

import re
from collections import Counter
from datetime import datetime

import pytest

from stash_pipeline.fakestash import store as store_module
from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.clock import ServerClock, ServerZone
from stash_pipeline.fakestash.generator import ENTITY_KEYS, LibrarySize, generate
from stash_pipeline.fakestash.store import ID_LIST_RELATIONS, NULLABLE_REFS, PAIR_LIST_RELATIONS, Store

NOW = 1_790_000_000  # 2026-09-21T14:13:20Z
# Sydney-like: +11:00 summer, +10:00 between April and October 2023.
DST_ZONE = "+11:00,+10:00@2023-04-01T16:00:00Z,+11:00@2023-09-30T16:00:00Z"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")


def build(size: LibrarySize, *, seed: int = 0, zone: str = "Z", now: float = NOW) -> Store:
    store = Store()
    clock = ServerClock(ServerZone.parse(zone))
    clock.freeze(now)
    generate(store, clock, size, seed=seed)
    return store


@pytest.fixture(scope="module")
def lib() -> Store:
    """The default size (2000 scenes, 10000 images) in a zone with DST switches."""
    return build(LibrarySize(), zone=DST_ZONE)


def instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_entity_keys_are_the_ones_documented_in_store() -> None:
    doc = store_module.__doc__ or ""
    section = doc.split("Entity dict keys", 1)[1]
    documented: dict[str, set[str]] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"^(\w+):\s+(.*)$", line)
        if match and match.group(1) in ENTITY_KEYS:
            current, text = match.group(1), match.group(2)
        elif current and line.startswith(" ") and not line.strip().startswith("--"):
            text = line
        else:
            continue
        while "(" in text:  # drop "(list of (group_id, scene_index))" notes, nested ones too
            text = re.sub(r"\([^()]*\)", " ", text)
        documented.setdefault(current, set()).update(text.split())
    assert {k: set(v) for k, v in ENTITY_KEYS.items()} == documented


def test_every_entity_has_exactly_the_documented_keys(lib: Store) -> None:
    for kind, keys in ENTITY_KEYS.items():
        rows = list(lib.iter_entities(kind))
        assert rows, kind
        for row in rows:
            assert tuple(row) == keys, (kind, row["id"])


def test_same_seed_same_library_and_other_seed_differs() -> None:
    size = LibrarySize(scenes=300, images=900)
    first = FakeStash(zone=DST_ZONE)
    first.clock.freeze(NOW)
    generate(first.store, first.clock, size, seed=7)
    second = FakeStash(zone=DST_ZONE)
    second.clock.freeze(NOW)
    generate(second.store, second.clock, size, seed=7)
    other = FakeStash(zone=DST_ZONE)
    other.clock.freeze(NOW)
    generate(other.store, other.clock, size, seed=8)
    assert first.truth() == second.truth()
    assert first.truth()["scenes"] != other.truth()["scenes"]


def test_generate_refuses_a_non_empty_store() -> None:
    store = build(LibrarySize(scenes=5, images=5))
    with pytest.raises(ValueError, match="empty store"):
        generate(store, ServerClock(), LibrarySize(scenes=5, images=5))


def test_tiny_library_still_has_every_type() -> None:
    store = build(LibrarySize(scenes=3, images=4))
    counts = store.counts()
    assert all(counts[kind] > 0 for kind in ENTITY_KEYS), counts
    assert counts["tag"] >= LibrarySize.MIN_TAGS
    assert counts["studio"] >= LibrarySize.MIN_STUDIOS


def test_library_size_proportions_and_explicit_counts() -> None:
    big = LibrarySize(scenes=200_000, images=1_000_000).resolved()
    assert (big.galleries, big.performers, big.studios, big.tags, big.groups) == (
        20_000,
        10_000,
        1_000,
        2_000,
        2_000,
    )
    explicit = LibrarySize(scenes=10, images=0, galleries=0, tags=5).resolved()
    assert (explicit.galleries, explicit.tags) == (0, 5)
    with pytest.raises(ValueError):
        LibrarySize(scenes=-1).resolved()
    store = build(LibrarySize(scenes=10, images=0, galleries=0, tags=5))
    assert store.counts()["gallery"] == 0
    assert store.counts()["tag"] == 5


def test_ids_are_dense_and_relations_point_at_existing_rows(lib: Store) -> None:
    for kind in ENTITY_KEYS:
        assert list(lib.sorted_ids(kind)) == list(range(1, len(lib.tables[kind]) + 1))
    for (owner, key), target in ID_LIST_RELATIONS.items():
        for row in lib.iter_entities(owner):
            assert len(set(row[key])) == len(row[key]), (owner, key, row["id"])
            assert all(t in lib.tables[target] for t in row[key]), (owner, key, row["id"])
    for (owner, key), target in PAIR_LIST_RELATIONS.items():
        for row in lib.iter_entities(owner):
            assert all(t in lib.tables[target] for t, _payload in row[key])
    for (owner, key), target in NULLABLE_REFS.items():
        for row in lib.iter_entities(owner):
            assert row[key] is None or row[key] in lib.tables[target]
    # the reverse indexes agree with the owning side
    for gid in lib.tables["gallery"]:
        images = {i["id"] for i in lib.iter_entities("image") if gid in i["gallery_ids"]}
        assert lib.images_of_gallery(gid) == images


def test_partial_dates_nulls_empty_strings_unicode_and_duplicates(lib: Store) -> None:
    scenes = list(lib.iter_entities("scene"))
    dates = Counter(len(s["date"]) if s["date"] else 0 for s in scenes)
    assert dates[10] > dates[7] > 0
    assert dates[4] > 0
    assert dates[0] > 0
    assert any(p["birthdate"] and len(p["birthdate"]) < 10 for p in lib.iter_entities("performer")) or any(
        g["date"] and len(g["date"]) < 10 for g in lib.iter_entities("gallery")
    )
    titles = [s["title"] for s in scenes]
    assert "" in titles
    assert None in titles
    counted = Counter(t for t in titles if t)
    assert counted.most_common(1)[0][1] > 1  # duplicate titles
    assert any(re.search(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]", t or "") for t in titles)  # CJK
    assert any(re.search(r"[\U0001F300-\U0001FAFF\u2728\u2764]", t or "") for t in titles)  # emoji
    assert any(re.search(r"[À-ÿ]", t or "") for t in titles)  # accents
    performers = list(lib.iter_entities("performer"))
    names = Counter(p["name"] for p in performers)
    assert names.most_common(1)[0][1] > 1  # duplicate performer names...
    pairs = [(p["name"], p["disambiguation"]) for p in performers]
    assert len(pairs) == len(set(pairs))  # ...told apart by disambiguation, as Stash requires
    tag_names = [t["name"].casefold() for t in lib.iter_entities("tag")]
    studio_names = [s["name"].casefold() for s in lib.iter_entities("studio")]
    assert len(tag_names) == len(set(tag_names))
    assert len(studio_names) == len(set(studio_names))


def test_tag_dag_has_multiple_parents_and_no_cycles(lib: Store) -> None:
    tags = lib.tables["tag"]
    assert any(len(t["parent_ids"]) >= 2 for t in tags.values())
    assert any(t["parent_ids"] for t in tags.values())
    assert any(not t["parent_ids"] for t in tags.values())
    state: dict[int, int] = {}

    def visit(tag_id: int) -> None:  # depth-first search; 1 = on the stack, 2 = done
        state[tag_id] = 1
        for parent in tags[tag_id]["parent_ids"]:
            assert state.get(parent) != 1, f"cycle through tag {parent}"
            if parent not in state:
                visit(parent)
        state[tag_id] = 2

    for tag_id in tags:
        if tag_id not in state:
            visit(tag_id)


def test_studio_hierarchy_goes_three_levels_deep(lib: Store) -> None:
    studios = lib.tables["studio"]

    def depth(studio_id: int) -> int:
        parent = studios[studio_id]["parent_id"]
        return 1 if parent is None else 1 + depth(parent)

    depths = Counter(depth(s) for s in studios)
    assert depths[1]
    assert depths[2]
    assert depths[3]
    assert max(depths) <= 3


def test_scene_shape(lib: Store) -> None:
    scenes = list(lib.iter_entities("scene"))
    assert max(len(s["performer_ids"]) for s in scenes) == 5
    assert any(not s["performer_ids"] for s in scenes)
    assert max(len(s["tag_ids"]) for s in scenes) <= 10
    assert any(len(s["tag_ids"]) >= 8 for s in scenes)
    assert {len(s["gallery_ids"]) for s in scenes} == {0, 1, 2}
    assert {len(s["groups"]) for s in scenes} >= {0, 1, 2}
    assert any(idx is None for s in scenes for _g, idx in s["groups"])
    assert 0.75 < sum(s["studio_id"] is not None for s in scenes) / len(scenes) < 0.95
    with_files = [s for s in scenes if s["files"]]
    assert any(len(s["files"]) == 2 for s in scenes)
    assert len(with_files) < len(scenes)
    file_keys = {"__typename", "id", "path", "basename", "parent_folder", "zip_file", "mod_time", "size"}
    file_keys |= {"fingerprints", "format", "width", "height", "duration", "video_codec", "audio_codec"}
    file_keys |= {"frame_rate", "bit_rate", "created_at", "updated_at"}
    file_keys |= {"_owner"}  # the store's mark of its owner (findFiles' scene_count)
    for scene in with_files:
        for file in scene["files"]:
            assert set(file) == file_keys
            assert file["__typename"] == "VideoFile"
            assert file["path"].endswith(file["basename"])
            assert {"oshash"} <= {fp["type"] for fp in file["fingerprints"]}
    assert any(s["play_history"] for s in scenes)
    assert any(s["o_history"] for s in scenes)
    for scene in scenes:
        assert scene["o_counter"] == len(scene["o_history"])
        assert scene["play_count"] == len(scene["play_history"])
        assert all(h.endswith("Z") for h in scene["play_history"] + scene["o_history"])  # UTC history
        assert scene["last_played_at"] == (max(scene["play_history"]) if scene["play_history"] else None)


def test_images_mostly_in_galleries_and_inherit_from_them(lib: Store) -> None:
    images = list(lib.iter_entities("image"))
    galleries = lib.tables["gallery"]
    share = sum(bool(i["gallery_ids"]) for i in images) / len(images)
    assert 0.78 < share < 0.92
    assert any(len(i["gallery_ids"]) == 2 for i in images)
    inheriting = [
        i
        for i in images
        if i["gallery_ids"] and not i["performer_ids"] and galleries[i["gallery_ids"][0]]["performer_ids"]
    ]
    assert len(inheriting) > len(images) / 3
    bare = [
        i
        for i in images
        if i["gallery_ids"] and i["studio_id"] is None and i["date"] is None and not i["tag_ids"]
    ]
    assert len(bare) > len(images) / 3
    assert any(i["performer_ids"] for i in images)
    assert any(i["date"] for i in images)
    typenames = Counter(i["files"][0]["__typename"] for i in images)
    assert typenames["ImageFile"] > typenames["VideoFile"] > 0  # visual_files is a union
    assert any(i["files"][0]["zip_file"] for i in images)  # members of zip galleries
    file_ids = [
        f["id"] for kind in ("scene", "image", "gallery") for e in lib.iter_entities(kind) for f in e["files"]
    ]
    assert len(file_ids) == len(set(file_ids))  # file ids are global in Stash
    kinds = Counter(
        "zip" if g["files"] else "folder" if g["folder"] else "virtual" for g in galleries.values()
    )
    assert kinds["zip"]
    assert kinds["folder"]
    assert kinds["virtual"]


def test_timestamps_well_formed_in_range_and_updated_after_created(lib: Store) -> None:
    start = datetime(2019, 1, 1).timestamp() - 86400
    for kind in ENTITY_KEYS:
        for row in lib.iter_entities(kind):
            created, updated = row["created_at"], row["updated_at"]
            assert RFC3339.match(created), (kind, row["id"])
            assert RFC3339.match(updated), (kind, row["id"])
            assert start <= instant(created) <= instant(updated) <= NOW, (kind, row["id"])


def test_bulk_imports_share_updated_at_seconds(lib: Store) -> None:
    for kind in ("scene", "image"):
        runs = Counter(row["updated_at"] for row in lib.iter_entities(kind))
        assert runs.most_common(1)[0][1] >= 100, kind
        assert len(runs) > 50, kind  # ...but not everything in one second
    assert Counter(row["updated_at"] for row in lib.iter_entities("gallery")).most_common(1)[0][1] > 1


def test_offsets_follow_the_zone_across_dst_switches(lib: Store) -> None:
    zone = ServerZone.parse(DST_ZONE)
    offsets: Counter[str] = Counter()
    for kind in ENTITY_KEYS:
        for row in lib.iter_entities(kind):
            for text in (row["created_at"], row["updated_at"]):
                assert zone.format(instant(text)) == text  # exactly what the server would have written
                offsets[text[-6:]] += 1
    assert set(offsets) == {"+11:00", "+10:00"}
    # Rows inside the +10:00 window exist: their text sorts out of instant order near the switch.
    assert offsets["+10:00"] > 10


def test_utc_zone_uses_z_suffix() -> None:
    store = build(LibrarySize(scenes=20, images=20), zone="Z")
    assert all(s["updated_at"].endswith("Z") for s in store.iter_entities("scene"))


def test_history_before_2019_when_the_clock_is_early() -> None:
    """A clock earlier than 2019 still gives a valid spread (five years back), never the future."""
    early = datetime(2019, 1, 10).timestamp()
    store = build(LibrarySize(scenes=30, images=30), now=early)
    assert all(instant(s["updated_at"]) <= early for s in store.iter_entities("scene"))
