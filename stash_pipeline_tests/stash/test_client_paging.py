"""Paged reads, sweeps, counts and id fetches of ``StashClient`` against the fake over real HTTP,
including pages shifted or emptied while the read is running."""

from collections import Counter
from collections.abc import Callable

import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline.model import (
    ENTITY_SPECS,
    GALLERIES,
    GROUPS,
    IMAGES,
    PERFORMERS,
    SCENES,
    STUDIOS,
    TAGS,
    EntitySpec,
)
from stash_pipeline.stash.client import Page, StashClient
from stash_pipeline.stash.errors import StashConsistencyError
from stash_pipeline_tests.stash.conftest import MakeClient

OFFSET_SPECS = [s for s in ENTITY_SPECS if not s.keyset]


def _ids(pages: list[Page]) -> list[int]:
    return [int(item["id"]) for page in pages for item in page.items]


def _store_ids(fake: FakeStash, spec: EntitySpec) -> list[int]:
    return list(fake.store.sorted_ids(spec.singular))


def test_every_type_is_read_completely_once(small_fake: FakeStash, client: StashClient) -> None:
    assert [s.keyset for s in OFFSET_SPECS] == [False] * 5
    for spec in ENTITY_SPECS:
        ids = _ids(list(client.iter_pages(spec, page_size=7)))
        assert ids == _store_ids(small_fake, spec), spec.name  # ascending, unique, complete


def test_items_are_raw_json_with_the_spec_selection(client: StashClient) -> None:
    page = next(iter(client.iter_pages(SCENES, page_size=5)))
    item = page.items[0]
    assert isinstance(item["id"], str)  # GraphQL IDs are strings
    assert {"id", "updated_at", "title", "tags", "performers", "files", "groups", "studio"} <= set(item)


def test_keyset_pages_select_count_only_first(small_fake: FakeStash, client: StashClient) -> None:
    before = small_fake.request_count
    pages = list(client.iter_pages(SCENES, page_size=60))
    assert [len(p.items) for p in pages] == [60, 60, 60, 20]
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert pages[0].count == 200
    assert [p.count for p in pages[1:]] == [None, None, None]
    assert small_fake.request_count - before == 5  # 4 pages + 1 end-of-read probe


def test_keyset_with_filter_is_anded_with_the_id_criterion(
    small_fake: FakeStash, client: StashClient
) -> None:
    rows = small_fake.store.table("scene").values()
    cutoff = sorted(r["updated_at"] for r in rows)[len(rows) // 2]
    expected = sorted(r["id"] for r in rows if r["updated_at"] > cutoff)
    window = {"updated_at": {"modifier": "GREATER_THAN", "value": cutoff}}
    assert _ids(list(client.iter_pages(SCENES, window, page_size=9))) == expected
    assert client.sweep_ids(SCENES, window, page_size=9) == expected
    assert client.count(SCENES, window) == len(expected)


def test_keyset_survives_creates_and_deletes_between_pages(
    small_fake: FakeStash, client: StashClient
) -> None:
    initial = _store_ids(small_fake, SCENES)
    read_early, gone_late = initial[2], initial[150:153]
    created: list[int] = []

    small_fake.after_requests(2, lambda f: f.mutations.destroy("scene", [read_early, *gone_late]))
    small_fake.after_requests(4, lambda f: created.extend(f.mutations.create("scene") for _ in range(3)))
    small_fake.after_requests(6, lambda f: f.mutations.destroy("scene", [initial[-1]]))
    ids = _ids(list(client.iter_pages(SCENES, page_size=20)))

    counts = Counter(ids)
    assert max(counts.values()) == 1  # every entity at most once
    survivors = set(initial) - {read_early, *gone_late, initial[-1]}
    assert survivors <= set(ids)  # everything present throughout appears
    assert len(created) == 3
    assert set(created) <= set(ids)  # created with higher ids: appear
    assert read_early in ids  # read before its delete
    assert not set(gone_late) & set(ids)  # deleted before they were reached
    assert initial[-1] not in ids


def test_keyset_recovers_from_a_truncated_page(small_fake: FakeStash, client: StashClient) -> None:
    small_fake.faults.add("truncate_list", times=1, match="ScenesPage(", keep=5)
    pages = list(client.iter_pages(SCENES, page_size=50))
    assert len(pages[0].items) == 5
    assert _ids(pages) == _store_ids(small_fake, SCENES)


def test_keyset_sweep_recovers_from_a_truncated_page(small_fake: FakeStash, client: StashClient) -> None:
    small_fake.faults.add("truncate_list", times=2, match="ImagesIdsNoCount", keep=3)
    assert client.sweep_ids(IMAGES, page_size=100) == _store_ids(small_fake, IMAGES)


def test_keyset_refuses_rows_it_is_told_of_but_never_given(
    small_fake: FakeStash, client: StashClient
) -> None:
    small_fake.faults.add("empty_list", times=50, match="ScenesPageNoCount")
    with pytest.raises(StashConsistencyError, match="returns none of them"):
        list(client.iter_pages(SCENES, page_size=50))


def test_keyset_rereads_rows_that_came_to_match_behind_the_cursor(
    small_fake: FakeStash, client: StashClient
) -> None:
    rows = list(small_fake.store.table("scene").values())
    cutoff = sorted(r["updated_at"] for r in rows)[len(rows) // 2]
    window = {"updated_at": {"modifier": "GREATER_THAN", "value": cutoff}}
    early = min(r["id"] for r in rows if r["updated_at"] <= cutoff)
    # Edited after the read passed its id: it now matches the window but lies behind the cursor.
    small_fake.after_requests(3, lambda f: f.mutations.update("scene", early, title="edited mid-read"))
    pages = list(client.iter_pages(SCENES, window, page_size=10))
    ids = _ids(pages)
    assert early in ids
    assert Counter(ids)[early] == 1
    assert pages[-1].items[-1]["title"] == "edited mid-read"  # re-fetched in a final page


@pytest.mark.parametrize("spec", OFFSET_SPECS, ids=lambda s: s.name)
def test_offset_read_recovers_a_page_shifted_by_a_delete(
    spec: EntitySpec, small_fake: FakeStash, client: StashClient
) -> None:
    initial = _store_ids(small_fake, spec)
    size = max(1, len(initial) // 3)
    victim = initial[0]  # read on page 1, then deleted: every later row shifts back by one
    skipped = initial[size]  # would be skipped: it moves from page 2 onto page 1
    small_fake.after_requests(2, lambda f: f.mutations.destroy(spec.singular, [victim]))
    before = small_fake.request_count
    pages = list(client.iter_pages(spec, page_size=size))
    ids = _ids(pages)
    assert Counter(ids).most_common(1)[0][1] == 1  # each exactly once
    assert set(initial) - {victim} <= set(ids)  # every survivor
    assert victim in ids
    assert [int(i["id"]) for i in pages[-1].items] == [skipped]  # recovered in a final page
    assert pages[-1].count is None
    pages_requested = -(-(len(initial) - 1) // size)  # ceil: one row fewer after the delete
    assert small_fake.request_count - before == pages_requested + 2  # + sweep + fetch by ids


def test_offset_single_page_is_one_request(small_fake: FakeStash, client: StashClient) -> None:
    before = small_fake.request_count
    pages = list(client.iter_pages(TAGS, page_size=1000))
    assert len(pages) == 1
    assert pages[0].count == len(small_fake.store.table("tag"))
    assert small_fake.request_count - before == 1  # one read transaction: no sweep needed


def test_offset_recovers_a_truncated_page(small_fake: FakeStash, client: StashClient) -> None:
    small_fake.faults.add("truncate_list", times=1, match="PerformersPage", keep=2)
    ids = _ids(list(client.iter_pages(PERFORMERS, page_size=1000)))
    assert sorted(ids) == _store_ids(small_fake, PERFORMERS)
    assert len(ids) == len(set(ids))


def test_offset_read_that_cannot_be_verified_raises(small_fake: FakeStash, client: StashClient) -> None:
    # Every answer about performers is cut short, the verifying sweep too: refuse, don't guess.
    small_fake.faults.add("truncate_list", times=100, match="findPerformers", keep=2)
    with pytest.raises(StashConsistencyError, match="count"):
        list(client.iter_pages(PERFORMERS, page_size=4))


@pytest.mark.parametrize("spec", [SCENES, GALLERIES, STUDIOS, GROUPS], ids=lambda s: s.name)
def test_empty_first_page_with_a_count_raises(
    spec: EntitySpec, small_fake: FakeStash, client: StashClient
) -> None:
    small_fake.faults.add("empty_list", times=1, match=spec.query)
    with pytest.raises(StashConsistencyError, match="first page is empty"):
        list(client.iter_pages(spec, page_size=3))


@pytest.mark.parametrize("spec", ENTITY_SPECS, ids=lambda s: s.name)
def test_sweep_ids_matches_the_store(spec: EntitySpec, small_fake: FakeStash, client: StashClient) -> None:
    before = small_fake.request_count
    assert client.sweep_ids(spec, page_size=1000) == _store_ids(small_fake, spec)
    assert small_fake.request_count - before == 1  # one page, consistent with its own count
    assert client.sweep_ids(spec, page_size=3) == _store_ids(small_fake, spec)


def test_sweep_ids_refuses_a_short_snapshot(small_fake: FakeStash, client: StashClient) -> None:
    small_fake.faults.add("truncate_list", times=1, match="TagsIds", keep=5)
    with pytest.raises(StashConsistencyError, match="refusing"):
        client.sweep_ids(TAGS)
    small_fake.faults.add("empty_list", times=1, match="ScenesIds(")
    with pytest.raises(StashConsistencyError, match="first page is empty"):
        client.sweep_ids(SCENES)


def test_sweep_ids_with_deletes_during_the_sweep(small_fake: FakeStash, client: StashClient) -> None:
    initial = _store_ids(small_fake, IMAGES)
    small_fake.after_requests(2, lambda f: f.mutations.destroy("image", [initial[0], initial[-1]]))
    ids = client.sweep_ids(IMAGES, page_size=100)
    assert ids == initial[:-1]  # initial[0] was read before its delete; the last one was not


def test_counts(small_fake: FakeStash, client: StashClient) -> None:
    counts = small_fake.store.counts()
    for spec in ENTITY_SPECS:
        assert client.count(spec) == counts[spec.singular]
    # Stash's stats count the seven types, not markers.
    assert client.stats() == {spec.name: counts[spec.singular] for spec in ENTITY_SPECS if spec.in_stats}


def test_count_many_is_one_request(small_fake: FakeStash, client: StashClient) -> None:
    rows = small_fake.store.table("scene").values()
    cutoff = sorted(r["updated_at"] for r in rows)[50]
    since = {"updated_at": {"modifier": "GREATER_THAN", "value": cutoff}}
    expected_changed = sum(1 for r in rows if r["updated_at"] > cutoff)
    filters = {spec.name: (since if spec.keyset else None) for spec in ENTITY_SPECS}
    before = small_fake.request_count
    result = client.count_many(filters)
    assert small_fake.request_count - before == 1
    counts = small_fake.store.counts()
    assert result["scenes"] == expected_changed
    assert result["scenes_total"] == counts["scene"]
    for spec in ENTITY_SPECS:
        assert result[f"{spec.name}_total"] == counts[spec.singular]
        if not spec.keyset:
            assert result[spec.name] == counts[spec.singular]
        assert result[spec.name] == client.count(spec, filters[spec.name])
    assert client.count_many({"tag": None}) == {"tags": counts["tag"], "tags_total": counts["tag"]}


def test_fetch_by_ids_drops_missing_ids(small_fake: FakeStash, client: StashClient) -> None:
    ids = _store_ids(small_fake, SCENES)
    before = small_fake.request_count
    entities, missing = client.fetch_by_ids(SCENES, [ids[5], 999_999, ids[1], ids[5], 888_888])
    assert [int(e["id"]) for e in entities] == [ids[5], ids[1]]  # input order, duplicates removed
    assert missing == [888_888, 999_999]
    assert small_fake.request_count - before == 3  # one failed query per missing id, then success
    assert entities[0]["title"] == small_fake.store.get("scene", ids[5])["title"]


def test_fetch_by_ids_in_chunks(
    small_fake: FakeStash, small_server: FakeStashServer, make_client: MakeClient
) -> None:
    client = make_client(small_server, ids_chunk_size=4)
    ids = _store_ids(small_fake, TAGS)[:10]
    entities, missing = client.fetch_by_ids(TAGS, [*ids, 777_777])
    assert sorted(int(e["id"]) for e in entities) == ids
    assert missing == [777_777]
    assert client.fetch_by_ids(TAGS, []) == ([], [])


def test_image_ids_of_gallery(small_fake: FakeStash, client: StashClient) -> None:
    galleries = _store_ids(small_fake, GALLERIES)
    with_images = [g for g in galleries if small_fake.store.images_of_gallery(g)]
    assert with_images
    for gallery_id in with_images[:3]:
        assert client.image_ids_of_gallery(gallery_id) == sorted(
            small_fake.store.images_of_gallery(gallery_id)
        )
    empty = small_fake.mutations.create("gallery", title="empty")
    assert client.image_ids_of_gallery(empty) == []


def test_keyset_read_resumes_after_an_id(small_fake: FakeStash, client: StashClient) -> None:
    ids = _store_ids(small_fake, SCENES)
    pages = list(client.iter_pages(SCENES, page_size=30, after_id=ids[99]))
    assert _ids(pages) == ids[100:]
    assert pages[0].count == len(ids) - 100  # the count covers what is left
    rows = small_fake.store.table("scene").values()
    cutoff = sorted(r["updated_at"] for r in rows)[len(rows) // 2]
    window = {"updated_at": {"modifier": "GREATER_THAN", "value": cutoff}}
    expected = sorted(r["id"] for r in rows if r["updated_at"] > cutoff and r["id"] > ids[99])
    assert _ids(list(client.iter_pages(SCENES, window, page_size=7, after_id=ids[99]))) == expected
    with pytest.raises(ValueError, match="no id criterion"):
        list(client.iter_pages(PERFORMERS, after_id=3))


def test_gallery_image_pairs(
    small_fake: FakeStash, small_server: FakeStashServer, make_client: MakeClient
) -> None:
    client = make_client(small_server, ids_chunk_size=5)
    galleries = _store_ids(small_fake, GALLERIES)
    expected = sorted((i, g) for g in galleries for i in small_fake.store.images_of_gallery(g))
    assert expected
    before = small_fake.request_count
    assert _gallery_image_pairs(client, [*galleries, 999_999]) == expected
    assert small_fake.request_count - before == -(-(len(galleries) + 1) // 5)  # one request per chunk
    one = galleries[0]
    assert _gallery_image_pairs(client, [one]) == [(i, one) for i in client.image_ids_of_gallery(one)]


@pytest.mark.parametrize("spec", ENTITY_SPECS, ids=lambda s: s.name)
def test_latest_updated_at(spec: EntitySpec, small_fake: FakeStash, client: StashClient) -> None:
    rows = small_fake.store.table(spec.singular).values()
    assert client.latest_updated_at(spec) == max(r["updated_at"] for r in rows)
    small_fake.clock.freeze(small_fake.clock.now() + 86_400 * 365 * 5)
    edit = {"tag": {"description": "x"}, "group": {"synopsis": "x"}, "scene_marker": {"title": "x"}}.get(
        spec.singular, {"details": "x"}
    )
    small_fake.mutations.update(spec.singular, min(r["id"] for r in rows), **edit)
    assert client.latest_updated_at(spec) == small_fake.clock.stamp()
    # Restricted to an incremental read's rows: the same newest value, and nothing past the newest.
    values = sorted({r["updated_at"] for r in rows})
    since = {"updated_at": {"modifier": "GREATER_THAN", "value": values[(len(values) - 1) // 2]}}
    assert client.latest_updated_at(spec, since) == small_fake.clock.stamp()
    later = {"updated_at": {"modifier": "GREATER_THAN", "value": small_fake.clock.stamp()}}
    assert client.latest_updated_at(spec, later) is None


def test_latest_updated_at_of_an_empty_type(
    make_fake_server: Callable[[FakeStash], FakeStashServer], make_client: MakeClient
) -> None:
    client = make_client(make_fake_server(FakeStash()))
    assert client.latest_updated_at(SCENES) is None


def _gallery_image_pairs(client: StashClient, gallery_ids: list[int]) -> list[tuple[int, int]]:
    return client.member_pairs(IMAGES, IMAGES.relation("galleries"), gallery_ids)


@pytest.mark.parametrize("spec", [SCENES, TAGS], ids=["keyset", "offset"])
def test_stamps_list_id_and_updated_at_verbatim(small_fake: FakeStash, client: StashClient, spec) -> None:
    rows = small_fake.store.tables[spec.singular]
    bound = sorted(r["updated_at"] for r in rows.values())[len(rows) // 2]
    table = client.stamps(spec, {"updated_at": {"modifier": "GREATER_THAN", "value": bound}}, page_size=7)
    expected = sorted((i, r["updated_at"]) for i, r in rows.items() if r["updated_at"] > bound)
    assert list(zip(table["id"].to_pylist(), table["updated_at"].to_pylist(), strict=True)) == expected
    assert expected  # the bound leaves rows on both sides


def test_server_time_is_read_from_the_date_header(small_fake: FakeStash, client: StashClient) -> None:
    from datetime import UTC, datetime

    small_fake.clock.freeze(datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp())
    small_fake.clock.set_zone("+11:00")  # the offset the server writes in does not matter
    assert client.server_time is None or client.server_time.year < 2031
    client.count(SCENES, None)
    assert client.server_time == datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_a_missing_or_garbled_date_header_is_no_server_time() -> None:
    import httpx

    from stash_pipeline.stash.transport import Reply

    assert Reply(200, httpx.Headers({}), b"").server_time is None
    assert Reply(200, httpx.Headers({"date": "yesterday-ish"}), b"").server_time is None
    assert Reply(200, httpx.Headers({"date": "Wed, 02 Jan 2030 03:04:05 GMT"}), b"").server_time.hour == 3
