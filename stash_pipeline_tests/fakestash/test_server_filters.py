"""Filter criteria as Stash evaluates them (docs/stash-behaviour.md §2-§3): timestamps compared as raw TEXT,
the id criterion, the galleries multi criterion, AND/OR/NOT, and the keyset paging fast paths."""

from datetime import UTC, datetime

import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import blank_entity


def fake_with_scenes(stamps: list[str], zone: str = "Z") -> FakeStash:
    """A FakeStash whose scenes 1..n have exactly these updated_at/created_at strings."""
    fake = FakeStash(zone=zone)
    for entity_id, stamp in enumerate(stamps, start=1):
        fake.store.insert("scene", blank_entity("scene", entity_id, stamp))
    return fake


def scene_ids(session, scene_filter: str, variables: dict | None = None) -> list[int]:
    data = session.data(
        f'{{ findScenes(scene_filter: {scene_filter}, filter: {{per_page: -1, sort: "id"}}) {{ count scenes {{ id }} }} }}',
        variables,
    )["findScenes"]
    ids = [int(s["id"]) for s in data["scenes"]]
    assert data["count"] == len(ids)
    return ids


@pytest.fixture
def offsets(make_fake_server, gql_session):
    """Scenes stored in three different offsets."""
    fake = fake_with_scenes(
        [
            "2024-01-05T10:11:12+11:00",  # 1: instant 2024-01-04T23:11:12Z
            "2024-01-05T10:11:12-05:00",  # 2: instant 2024-01-05T15:11:12Z
            "2024-01-05T12:00:00Z",  # 3
            "2024-03-01T00:00:00Z",  # 4
        ]
    )
    return gql_session(make_fake_server(fake))


def test_offsets_are_not_normalised(offsets) -> None:
    # An instant-LATER Z string compares BELOW the +11:00 string: the row still matches GREATER_THAN.
    assert 1 in scene_ids(offsets, '{updated_at: {modifier: GREATER_THAN, value: "2024-01-04T23:11:13Z"}}')
    # ... and an instant-later Z bound is not LESS_THAN-matched by it either.
    assert 1 not in scene_ids(offsets, '{updated_at: {modifier: LESS_THAN, value: "2024-01-05T00:00:00Z"}}')
    # -05:00: the row's instant (15:11Z) is after the bound (12:00Z) but its text is below it.
    assert scene_ids(offsets, '{updated_at: {modifier: GREATER_THAN, value: "2024-01-05T12:00:00Z"}}') == [4]
    # EQUALS is byte equality: the same instant written differently does not match.
    assert scene_ids(offsets, '{updated_at: {modifier: EQUALS, value: "2024-01-04T23:11:12Z"}}') == []
    assert scene_ids(offsets, '{updated_at: {modifier: EQUALS, value: "2024-01-05T12:00:00Z"}}') == [3]
    assert scene_ids(offsets, '{updated_at: {modifier: NOT_EQUALS, value: "2024-01-05T12:00:00Z"}}') == [
        1,
        2,
        4,
    ]


def test_prefixes_and_date_only_bounds(offsets) -> None:
    assert scene_ids(offsets, '{updated_at: {modifier: GREATER_THAN, value: "2024-01-05"}}') == [1, 2, 3, 4]
    assert scene_ids(offsets, '{updated_at: {modifier: LESS_THAN, value: "2024-01-05T11"}}') == [1, 2]
    assert scene_ids(offsets, '{created_at: {modifier: LESS_THAN, value: "2024-02"}}') == [1, 2, 3]


def test_between_is_inclusive_and_not_between_is_its_complement(offsets) -> None:
    between = '{updated_at: {modifier: BETWEEN, value: "2024-01-05T10:11:12-05:00", value2: "2024-01-05T12:00:00Z"}}'
    # both ends inclusive; row 1 ("...10:11:12+11:00") is below the lower bound because "+" < "-"
    assert scene_ids(offsets, between) == [2, 3]
    assert scene_ids(offsets, between.replace("BETWEEN", "NOT_BETWEEN")) == [1, 4]


def test_between_without_value2_ends_tomorrow(make_fake_server, gql_session) -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC).timestamp()
    fake = fake_with_scenes(
        ["2025-06-01T12:00:00Z", "2025-06-02T11:59:59Z", "2025-06-02T12:00:01Z", "2031-01-01T00:00:00Z"]
    )
    fake.clock.freeze(now)
    assert fake.clock.stamp_tomorrow() == "2025-06-02T12:00:00Z"
    session = gql_session(make_fake_server(fake))
    assert scene_ids(session, '{updated_at: {modifier: BETWEEN, value: "2025"}}') == [
        1,
        2,
    ]  # numeric lower bound
    assert scene_ids(session, '{updated_at: {modifier: BETWEEN, value: "2025-06-01"}}') == [1, 2]
    assert scene_ids(session, '{updated_at: {modifier: NOT_BETWEEN, value: "2025-06-01", value2: null}}') == [
        3,
        4,
    ]


def test_bare_number_is_coerced_below_all_text(offsets) -> None:
    assert scene_ids(offsets, '{updated_at: {modifier: GREATER_THAN, value: "2030"}}') == [1, 2, 3, 4]
    assert scene_ids(offsets, '{updated_at: {modifier: GREATER_THAN, value: " 2030.5 "}}') == [1, 2, 3, 4]
    assert scene_ids(offsets, '{updated_at: {modifier: LESS_THAN, value: "2030"}}') == []
    assert scene_ids(offsets, '{updated_at: {modifier: EQUALS, value: "2024"}}') == []
    assert scene_ids(offsets, '{updated_at: {modifier: NOT_EQUALS, value: "2024"}}') == [1, 2, 3, 4]
    # "2024-01" is not a number: plain text comparison
    assert scene_ids(offsets, '{updated_at: {modifier: LESS_THAN, value: "2024-02"}}') == [1, 2, 3]


def test_null_modifiers(make_fake_server, gql_session) -> None:
    fake = fake_with_scenes(["2024-01-01T00:00:00Z"] * 3)
    fake.store.tables["scene"][2]["last_played_at"] = "2024-05-05T05:05:05Z"
    session = gql_session(make_fake_server(fake))
    assert scene_ids(session, '{last_played_at: {modifier: IS_NULL, value: ""}}') == [1, 3]
    assert scene_ids(session, '{last_played_at: {modifier: NOT_NULL, value: ""}}') == [2]
    # NULL never satisfies a comparison
    assert scene_ids(session, '{last_played_at: {modifier: NOT_EQUALS, value: "x"}}') == [2]


@pytest.mark.parametrize(
    "modifier", ["INCLUDES", "EXCLUDES", "INCLUDES_ALL", "MATCHES_REGEX", "NOT_MATCHES_REGEX"]
)
def test_unsupported_timestamp_modifier_is_an_internal_error(offsets, modifier) -> None:
    errors = offsets.errors(
        f'{{ findScenes(scene_filter: {{updated_at: {{modifier: {modifier}, value: "2024"}}}}) {{ count }} }}'
    )
    assert len(errors) == 1
    assert errors[0].startswith("Internal system error")


def test_consistent_counts_and_rows_between_fast_and_scanning_paths(gql, small_fake) -> None:
    stamps = sorted(r["updated_at"] for r in small_fake.store.tables["image"].values())
    bounds = [stamps[0], stamps[len(stamps) // 3], stamps[-1], stamps[-1] + "Z", "2019", "2022-06", "0", "~"]
    for modifier in (
        "EQUALS",
        "NOT_EQUALS",
        "GREATER_THAN",
        "LESS_THAN",
        "BETWEEN",
        "NOT_BETWEEN",
        "IS_NULL",
        "NOT_NULL",
    ):
        for bound in bounds:
            crit = f'{{modifier: {modifier}, value: "{bound}", value2: "{stamps[len(stamps) // 2]}"}}'
            expected = sum(1 for s in stamps if _text_match(s, modifier, bound, stamps[len(stamps) // 2]))
            sorted_count = gql.data(
                f'{{ findImages(image_filter: {{updated_at: {crit}}}, filter: {{per_page: 0, sort: "id"}}) {{ count }} }}'
            )["findImages"]["count"]
            unsorted_count = gql.data(
                f"{{ findImages(image_filter: {{updated_at: {crit}}}, filter: {{per_page: 0}}) {{ count }} }}"
            )["findImages"]["count"]
            assert sorted_count == unsorted_count == expected, (modifier, bound)
            # The rows themselves, as a keyset read's first page asks for them, count included
            # (ids from the column's index, not a scan).
            expected_ids = sorted(
                i
                for i, r in small_fake.store.tables["image"].items()
                if _text_match(r["updated_at"], modifier, bound, stamps[len(stamps) // 2])
            )
            read = gql.data(
                f"{{ findImages(image_filter: {{updated_at: {crit}, id: {{modifier: GREATER_THAN, value: 0}}}}, "
                f'filter: {{per_page: -1, sort: "id"}}) {{ count images {{ id }} }} }}'
            )["findImages"]["images"]
            assert [int(i["id"]) for i in read] == expected_ids, (modifier, bound)


def _text_match(stored: str, modifier: str, value: str, value2: str) -> bool:
    """Reference semantics: SQLite TEXT vs bound, where a numeric-looking bound sorts below all text."""

    def num(v: str) -> bool:
        try:
            float(v)
        except ValueError:
            return False
        return True

    def gt(b: str) -> bool:
        return True if num(b) else stored > b

    def lt(b: str) -> bool:
        return False if num(b) else stored < b

    def eq(b: str) -> bool:
        return False if num(b) else stored == b

    between = (gt(value) or eq(value)) and (lt(value2) or eq(value2))
    return {
        "EQUALS": eq(value),
        "NOT_EQUALS": not eq(value),
        "GREATER_THAN": gt(value),
        "LESS_THAN": lt(value),
        "BETWEEN": between,
        "NOT_BETWEEN": not between,
        "IS_NULL": False,
        "NOT_NULL": True,
    }[modifier]


@pytest.mark.parametrize(
    ("modifier", "value2", "expected"),
    [
        ("EQUALS", None, [5]),
        ("NOT_EQUALS", None, [1, 2, 3, 4, 6, 7, 8]),
        ("GREATER_THAN", None, [6, 7, 8]),
        ("LESS_THAN", None, [1, 2, 3, 4]),
        ("BETWEEN", 7, [5, 6, 7]),
        ("NOT_BETWEEN", 7, [1, 2, 3, 4, 8]),
        ("BETWEEN", None, []),  # Stash's default upper bound is 0
        ("IS_NULL", None, []),
        ("NOT_NULL", None, [1, 2, 3, 4, 5, 6, 7, 8]),
    ],
)
def test_id_criterion(make_fake_server, gql_session, modifier, value2, expected) -> None:
    session = gql_session(make_fake_server(fake_with_scenes(["2024-01-01T00:00:00Z"] * 8)))
    value2_text = "null" if value2 is None else str(value2)
    assert (
        scene_ids(session, f"{{id: {{modifier: {modifier}, value: 5, value2: {value2_text}}}}}") == expected
    )
    # DESC walks the same set backwards, with and without count selected
    data = session.data(
        f"{{ findScenes(scene_filter: {{id: {{modifier: {modifier}, value: 5, value2: {value2_text}}}}}, "
        f'filter: {{per_page: 2, sort: "id", direction: DESC}}) {{ scenes {{ id }} }} }}'
    )["findScenes"]
    assert [int(s["id"]) for s in data["scenes"]] == expected[::-1][:2]


def test_id_criterion_exists_only_for_scenes_images_galleries(gql) -> None:
    for query, arg in (
        ("findScenes", "scene_filter"),
        ("findImages", "image_filter"),
        ("findGalleries", "gallery_filter"),
    ):
        data = gql.data(f"{{ {query}({arg}: {{id: {{modifier: LESS_THAN, value: 3}}}}) {{ count }} }}")[query]
        assert data["count"] == 2
    for query, arg in (
        ("findPerformers", "performer_filter"),
        ("findStudios", "studio_filter"),
        ("findTags", "tag_filter"),
        ("findGroups", "group_filter"),
    ):
        errors = gql.errors(
            f"{{ {query}({arg}: {{id: {{modifier: LESS_THAN, value: 3}}}}) {{ count }} }}", status=422
        )
        assert "id" in errors[0]


def test_unsupported_int_modifier_is_an_internal_error(gql) -> None:
    errors = gql.errors("{ findScenes(scene_filter: {id: {modifier: INCLUDES, value: 3}}) { count } }")
    assert errors[0].startswith("Internal system error")


def test_images_by_gallery(gql, small_fake) -> None:
    store = small_fake.store
    galleries = sorted(store.gallery_images, key=lambda g: -len(store.gallery_images[g]))[:2]
    a, b = (set(store.gallery_images[g]) for g in galleries)

    def image_ids(modifier: str) -> list[int]:
        query = (
            "query($g: [ID!]) { findImages(image_filter: {galleries: {value: $g, modifier: MOD}},"
            ' filter: {per_page: -1, sort: "id"}) { count images { id } } }'
        )
        data = gql.data(
            query.replace("MOD", modifier),
            {"g": [str(g) for g in galleries]},
        )["findImages"]
        assert data["count"] == len(data["images"])
        return [int(i["id"]) for i in data["images"]]

    assert image_ids("INCLUDES") == sorted(a | b)
    assert image_ids("INCLUDES_ALL") == sorted(a & b)
    assert image_ids("EXCLUDES") == sorted(set(store.tables["image"]) - a - b)
    single = gql.data(
        f'{{ findImages(image_filter: {{galleries: {{value: ["{galleries[0]}"], modifier: INCLUDES}}}}, filter: {{per_page: -1, sort: "id"}}) {{ count }} }}'
    )
    assert single["findImages"]["count"] == len(a)
    no_gallery = gql.data(
        "{ findImages(image_filter: {galleries: {modifier: IS_NULL}}, filter: {per_page: 0}) { count } }"
    )["findImages"]["count"]
    assert no_gallery == sum(1 for i in store.tables["image"].values() if not i["gallery_ids"])


def test_and_or_not(offsets) -> None:
    gt_feb = '{modifier: GREATER_THAN, value: "2024-02"}'
    eq_3 = '{modifier: EQUALS, value: "2024-01-05T12:00:00Z"}'
    assert scene_ids(offsets, f"{{updated_at: {gt_feb}, OR: {{updated_at: {eq_3}}}}}") == [3, 4]
    assert scene_ids(
        offsets, f"{{id: {{modifier: GREATER_THAN, value: 1}}, NOT: {{updated_at: {eq_3}}}}}"
    ) == [2, 4]
    assert scene_ids(
        offsets, f"{{id: {{modifier: GREATER_THAN, value: 1}}, AND: {{updated_at: {gt_feb}}}}}"
    ) == [4]
    assert scene_ids(
        offsets, "{id: {modifier: EQUALS, value: 1}, OR: {id: {modifier: EQUALS, value: 2}}}"
    ) == [1, 2]
    errors = offsets.errors(
        f"{{ findScenes(scene_filter: {{AND: {{updated_at: {gt_feb}}}, OR: {{updated_at: {eq_3}}}}}) {{ count }} }}"
    )
    assert errors[0].startswith("illegal filter combination")
    nested = offsets.errors(
        f"{{ findScenes(scene_filter: {{NOT: {{OR: {{updated_at: {eq_3}}}, NOT: {{updated_at: {eq_3}}}}}}}) {{ count }} }}"
    )
    assert nested[0].startswith("illegal filter combination")


def test_files_filter(gql, small_fake) -> None:
    scenes = small_fake.store.tables["scene"].values()
    stamps = sorted(f["updated_at"] for s in scenes for f in s["files"])
    cut = stamps[len(stamps) // 2]
    expected = sorted(s["id"] for s in scenes if any(f["updated_at"] > cut for f in s["files"]))
    got = scene_ids(gql, f'{{files_filter: {{updated_at: {{modifier: GREATER_THAN, value: "{cut}"}}}}}}')
    assert got == expected
    assert got


def test_keyset_paging_visits_every_row_once(gql, small_fake) -> None:
    rows = small_fake.store.tables["image"].values()
    cut = sorted(r["updated_at"] for r in rows)[len(rows) // 4]
    expected = sorted(r["id"] for r in rows if r["updated_at"] >= cut)
    for with_count in (True, False):
        after, seen = 0, []
        while True:
            data = gql.data(
                """query($since: String!, $after: Int!) { findImages(
                     image_filter: {updated_at: {modifier: BETWEEN, value: $since, value2: "9999-12-31T23:59:59Z"},
                                    id: {modifier: GREATER_THAN, value: $after}},
                     filter: {per_page: 37, page: 1, sort: "id", direction: ASC}) { %s images { id } } }"""
                % ("count" if with_count else ""),
                {"since": cut, "after": after},
            )["findImages"]
            page = [int(i["id"]) for i in data["images"]]
            if with_count:
                assert data["count"] == len([i for i in expected if i > after])
            if not page:
                break
            seen += page
            after = page[-1]
        assert seen == expected


def test_keyset_without_filter_and_offset_paging(gql, small_fake) -> None:
    all_ids = sorted(small_fake.store.tables["scene"])
    data = gql.data(
        f'{{ findScenes(scene_filter: {{id: {{modifier: GREATER_THAN, value: {all_ids[10]}}}}}, filter: {{per_page: 5, sort: "id"}}) {{ count scenes {{ id }} }} }}'
    )["findScenes"]
    assert [int(s["id"]) for s in data["scenes"]] == all_ids[11:16]
    assert data["count"] == len(all_ids) - 11
    pages = []
    for page in range(1, 100):
        data = gql.data(
            f'{{ findPerformers(filter: {{per_page: 7, page: {page}, sort: "id"}}) {{ count performers {{ id }} }} }}'
        )
        items = data["findPerformers"]["performers"]
        if not items:
            break
        pages += [int(p["id"]) for p in items]
    assert pages == sorted(small_fake.store.tables["performer"])


def test_filter_sees_mutations_between_requests(gql, small_fake) -> None:
    """The matching-id cache is keyed on the store version: a write is visible to the next request."""
    crit = '{updated_at: {modifier: GREATER_THAN, value: "2999-01"}, id: {modifier: GREATER_THAN, value: 3}}'
    query = f"{{ findScenes(scene_filter: {crit}, filter: {{per_page: -1}}) {{ count scenes {{ id }} }} }}"
    assert gql.data(query)["findScenes"] == {"count": 0, "scenes": []}
    assert scene_ids(gql, crit) == []
    small_fake.mutations.update("scene", 7, title="changed")
    small_fake.store.tables["scene"][7]["updated_at"] = "2999-01-01T00:00:00Z"
    small_fake.store.touch()
    assert gql.data(query)["findScenes"] == {"count": 1, "scenes": [{"id": "7"}]}
    assert scene_ids(gql, crit) == [7]
