"""The ``ids`` argument: input order, filters and paging ignored, Stash's errors (docs/stash-behaviour.md §2)."""

import pytest

CASES = [
    ("findScenes", "scenes", "scene", "scene_filter"),
    ("findImages", "images", "image", "image_filter"),
    ("findGalleries", "galleries", "gallery", "gallery_filter"),
    ("findPerformers", "performers", "performer", "performer_filter"),
    ("findStudios", "studios", "studio", "studio_filter"),
    ("findTags", "tags", "tag", "tag_filter"),
    ("findGroups", "groups", "group", "group_filter"),
]


@pytest.mark.parametrize(("query", "key", "kind", "filter_arg"), CASES)
def test_ids_in_input_order_ignoring_filter_and_paging(gql, small_fake, query, key, kind, filter_arg) -> None:
    existing = sorted(small_fake.store.tables[kind])
    wanted = [existing[2], existing[0], existing[-1]]
    data = gql.data(
        f"""query($ids: [ID!]) {{ {query}(ids: $ids, filter: {{per_page: 1, page: 3, sort: "id", direction: DESC}},
              {filter_arg}: {{updated_at: {{modifier: LESS_THAN, value: "1900"}}}}) {{ count {key} {{ id }} }} }}""",
        {"ids": [str(i) for i in wanted]},
    )[query]
    assert data["count"] == 3
    assert [int(item["id"]) for item in data[key]] == wanted


@pytest.mark.parametrize(("query", "key", "kind", "filter_arg"), CASES)
def test_duplicate_and_missing_ids_fail_the_whole_query(
    gql, small_fake, query, key, kind, filter_arg
) -> None:
    existing = sorted(small_fake.store.tables[kind])
    errors = gql.errors(
        f'{{ {query}(ids: ["{existing[0]}", "{existing[1]}", "{existing[0]}"]) {{ count }} }}'
    )
    assert errors == [f"validating ids: duplicate id found: {existing[0]}"]
    missing = existing[-1] + 1000
    errors = gql.errors(f'{{ {query}(ids: ["{existing[0]}", "{missing}"]) {{ count {key} {{ id }} }} }}')
    assert errors == [f"{kind} with id {missing} not found"]


def test_empty_ids_means_no_ids(gql, small_fake) -> None:
    data = gql.data("{ findScenes(ids: [], filter: {per_page: 0}) { count } }")["findScenes"]
    assert data["count"] == len(small_fake.store.tables["scene"])


def test_deprecated_int_id_arguments(gql) -> None:
    assert gql.data("{ findScenes(scene_ids: [3, 1]) { scenes { id } } }")["findScenes"]["scenes"] == [
        {"id": "3"},
        {"id": "1"},
    ]
    assert gql.data("{ findImages(image_ids: [2]) { count } }")["findImages"]["count"] == 1
    assert gql.data("{ findPerformers(performer_ids: [1]) { count } }")["findPerformers"]["count"] == 1


def test_ids_aggregates_over_the_given_rows(gql, small_fake) -> None:
    scenes = [s for s in small_fake.store.tables["scene"].values() if s["files"]][:3]
    data = gql.data(
        "query($ids: [ID!]) { findScenes(ids: $ids) { count filesize } }",
        {"ids": [str(s["id"]) for s in scenes]},
    )["findScenes"]
    assert data["filesize"] == pytest.approx(sum(s["files"][0]["size"] for s in scenes))


def test_non_numeric_id_is_an_error(gql) -> None:
    errors = gql.errors('{ findScenes(ids: ["abc"]) { count } }')
    assert errors == ['strconv.Atoi: parsing "abc": invalid syntax']
