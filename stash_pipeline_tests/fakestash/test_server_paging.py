"""Paging, sorting, default orders and ties, as Stash does them (docs/stash-behaviour.md §2)."""

import pytest

from stash_pipeline.fakestash.executor import SORTS

FIND = {
    "scene": ("findScenes", "scenes"),
    "image": ("findImages", "images"),
    "gallery": ("findGalleries", "galleries"),
    "performer": ("findPerformers", "performers"),
    "studio": ("findStudios", "studios"),
    "tag": ("findTags", "tags"),
    "group": ("findGroups", "groups"),
}


def ids_of(gql, kind: str, filter_text: str | None, extra: str = "") -> tuple[list[int], int]:
    query_name, key = FIND[kind]
    args = (
        f"(filter: {filter_text}{extra})" if filter_text is not None else (f"({extra[2:]})" if extra else "")
    )
    data = gql.data(f"{{ {query_name}{args} {{ count {key} {{ id }} }} }}")[query_name]
    return [int(item["id"]) for item in data[key]], data["count"]


def test_per_page_rules(gql, small_fake) -> None:
    all_ids = sorted(small_fake.store.tables["scene"])
    assert len(all_ids) > 30
    assert ids_of(gql, "scene", '{sort: "id"}') == (all_ids[:25], len(all_ids))  # per_page null → 25
    assert ids_of(gql, "scene", '{sort: "id", per_page: null}') == (all_ids[:25], len(all_ids))
    assert ids_of(gql, "scene", '{sort: "id", per_page: -1}') == (all_ids, len(all_ids))  # all
    assert ids_of(gql, "scene", '{sort: "id", per_page: -7, page: 3}') == (all_ids, len(all_ids))
    assert ids_of(gql, "scene", '{sort: "id", per_page: 0}') == ([], len(all_ids))  # count only
    ids, count = ids_of(gql, "scene", None)  # filter omitted: first 25 in no particular order
    assert len(ids) == 25
    assert count == len(all_ids)


def test_page_rules(gql, small_fake) -> None:
    all_ids = sorted(small_fake.store.tables["scene"])
    first = all_ids[:10]
    for page in ("null", "0", "-3", "1"):
        assert ids_of(gql, "scene", f'{{sort: "id", per_page: 10, page: {page}}}')[0] == first
    assert ids_of(gql, "scene", '{sort: "id", per_page: 10, page: 3}')[0] == all_ids[20:30]
    assert (
        ids_of(gql, "scene", '{sort: "id", per_page: 10, page: 3, direction: DESC}')[0]
        == all_ids[::-1][20:30]
    )
    beyond, count = ids_of(gql, "scene", '{sort: "id", per_page: 10, page: 1000}')
    assert beyond == []
    assert count == len(all_ids)


def test_count_is_of_the_whole_filter(gql, small_fake) -> None:
    rows = small_fake.store.tables["image"].values()
    cut = sorted(r["updated_at"] for r in rows)[len(rows) // 2]
    expected = sorted(r["id"] for r in rows if r["updated_at"] > cut)
    ids, count = ids_of(
        gql,
        "image",
        '{sort: "id", per_page: 5, page: 2}',
        f', image_filter: {{updated_at: {{modifier: GREATER_THAN, value: "{cut}"}}}}',
    )
    assert count == len(expected)
    assert ids == expected[5:10]


def test_scene_and_image_aggregates(gql, small_fake) -> None:
    scenes = small_fake.store.tables["scene"].values()
    data = gql.data('{ findScenes(filter: {per_page: 1, sort: "id"}) { count duration filesize } }')[
        "findScenes"
    ]
    assert data["duration"] == pytest.approx(sum(s["files"][0]["duration"] for s in scenes if s["files"]))
    assert data["filesize"] == pytest.approx(sum(s["files"][0]["size"] for s in scenes if s["files"]))
    images = small_fake.store.tables["image"].values()
    data = gql.data("{ findImages(filter: {per_page: 0}) { count megapixels filesize } }")["findImages"]
    expected = sum(i["files"][0]["width"] * i["files"][0]["height"] for i in images if i["files"]) / 1e6
    assert data["megapixels"] == pytest.approx(expected)
    assert data["count"] == len(images)


@pytest.mark.parametrize("kind", list(FIND))
def test_every_allowed_sort_works_and_unknown_is_refused(gql, kind) -> None:
    query_name, key = FIND[kind]
    n = len(gql.data(f"{{ {query_name}(filter: {{per_page: -1}}) {{ {key} {{ id }} }} }}")[query_name][key])
    for sort in sorted(SORTS[kind]):
        for direction in ("ASC", "DESC"):
            ids, count = ids_of(gql, kind, f'{{sort: "{sort}", direction: {direction}, per_page: -1}}')
            assert len(set(ids)) == n == count, (kind, sort)
    errors = gql.errors(f'{{ {query_name}(filter: {{sort: "sneaky; DROP TABLE"}}) {{ count }} }}')
    assert errors == ["invalid sort: sneaky; DROP TABLE"]


def test_random_seed_is_deterministic(gql) -> None:
    first = ids_of(gql, "scene", '{sort: "random_42", per_page: -1}')[0]
    again = ids_of(gql, "scene", '{sort: "random_42", per_page: -1}')[0]
    other = ids_of(gql, "scene", '{sort: "random_43", per_page: -1}')[0]
    assert first == again
    assert first != other
    assert first != sorted(first)


def test_empty_sort_is_an_error_only_for_name_sorted_types(gql) -> None:
    for kind in ("scene", "image", "gallery"):
        query_name, _key = FIND[kind]
        assert gql.data(f'{{ {query_name}(filter: {{sort: ""}}) {{ count }} }}')[query_name]["count"] > 0
    for kind in ("performer", "studio", "tag", "group"):
        query_name, _key = FIND[kind]
        assert gql.errors(f'{{ {query_name}(filter: {{sort: ""}}) {{ count }} }}') == ["invalid sort: "]


def test_default_sort_by_name(gql, small_fake) -> None:
    for kind in ("performer", "studio", "group"):
        query_name, key = FIND[kind]
        names = [
            i["name"]
            for i in gql.data(f"{{ {query_name}(filter: {{per_page: -1}}) {{ {key} {{ name }} }} }}")[
                query_name
            ][key]
        ]
        assert names == sorted(names, key=str.casefold), kind
    # tags: COALESCE(sort_name, name); an empty sort_name is not NULL and sorts first
    tags = small_fake.store.tables["tag"]
    for tag in tags.values():
        small_fake.mutations.update("tag", tag["id"], sort_name=None)
    last_by_name = max(tags.values(), key=lambda t: t["name"].casefold())
    small_fake.mutations.update("tag", last_by_name["id"], sort_name="!!! first")
    first = gql.data("{ findTags(filter: {per_page: 1}) { tags { id } } }")["findTags"]["tags"][0]
    assert first["id"] == str(last_by_name["id"])
    small_fake.mutations.update("tag", 1, sort_name="")
    first = gql.data("{ findTags(filter: {per_page: 1}) { tags { id } } }")["findTags"]["tags"][0]
    assert first["id"] == "1"


def test_no_sort_means_no_stable_order(gql, small_fake) -> None:
    all_ids = set(small_fake.store.tables["scene"])
    orders = set()
    for _ in range(20):
        ids, _count = ids_of(gql, "scene", "{per_page: -1}")
        assert set(ids) == all_ids
        orders.add(tuple(ids))
        if len(orders) > 1:
            break
    assert len(orders) > 1
    # ... and pages without sort can overlap (or miss rows), unlike pages sorted by id
    seen_pages = {tuple(ids_of(gql, "scene", "{per_page: 10, page: 1}")[0]) for _ in range(10)}
    assert len(seen_pages) > 1


def test_ties_come_back_in_varying_order_but_id_is_stable(gql, small_fake) -> None:
    tied = sorted(small_fake.store.tables["scene"])[:60]
    small_fake.mutations.bulk_update("scene", tied, title="Same Title")  # one shared timestamp
    stamp = small_fake.store.tables["scene"][tied[0]]["updated_at"]
    assert all(small_fake.store.tables["scene"][i]["updated_at"] == stamp for i in tied)
    flt = f', scene_filter: {{updated_at: {{modifier: EQUALS, value: "{stamp}"}}}}'
    orders = set()
    for _ in range(20):
        ids, count = ids_of(gql, "scene", '{sort: "updated_at", per_page: -1}', flt)
        assert sorted(ids) == tied
        assert count == len(tied)
        orders.add(tuple(ids))
        if len(orders) > 1:
            break
    assert len(orders) > 1
    by_id = {tuple(ids_of(gql, "scene", '{sort: "id", per_page: -1}', flt)[0]) for _ in range(5)}
    assert by_id == {tuple(tied)}


def test_sort_orders_are_correct(gql, small_fake) -> None:
    rows = small_fake.store.tables["scene"].values()
    ids, _ = ids_of(gql, "scene", '{sort: "updated_at", direction: DESC, per_page: -1}')
    stamps = [small_fake.store.tables["scene"][i]["updated_at"] for i in ids]
    assert stamps == sorted((r["updated_at"] for r in rows), reverse=True)
    ids, _ = ids_of(gql, "scene", '{sort: "title", per_page: -1}')
    titles = [(small_fake.store.tables["scene"][i]["title"] or "").casefold() for i in ids]
    nulls = [i for i in ids if small_fake.store.tables["scene"][i]["title"] is None]
    assert ids[: len(nulls)] == nulls  # NULLs first, as SQLite sorts ascending
    assert titles[len(nulls) :] == sorted(titles[len(nulls) :])
