"""The shaper's three paths agree: from the client's Arrow pages, from JSON objects in bulk, and row
by row (lenient coercions) shape every page of a generated library into identical frames; and the
values Arrow would take silently but wrongly send the page to the row-by-row path.

Pages come from the fake Stash over real HTTP, as the sync reads them.
"""

import copy
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from stash_pipeline.mirror.frames import PageShaper, relation_key
from stash_pipeline.model import ENTITY_SPECS, SPECS_BY_NAME
from stash_pipeline.stash.arrow_pages import entity_type as arrow_type
from stash_pipeline.stash.client import StashClient

SYNCED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def pages(small_server) -> dict[str, list[dict]]:
    """Every entity of the small library, by type, as the client hands them to the sync."""
    with StashClient(small_server.url, page_size=500) as client:
        return {
            spec.name: [item for page in client.iter_pages(spec, None) for item in page.items]
            for spec in ENTITY_SPECS
        }


ARROW_SPECS = [s for s in ENTITY_SPECS if not any(c.kind.is_map for c in s.columns)]
"""Types whose pages Arrow decodes (a free-form map, performers' custom fields, it cannot type)."""


@pytest.fixture
def arrow_pages(small_server) -> dict[str, pa.StructArray]:
    """The same entities as Arrow decoded them in the client (every page must have been, but those
    of types with a map, which go to the JSON path whole)."""
    with StashClient(small_server.url, page_size=500) as client:
        decoded = {spec.name: [page.arrow for page in client.iter_pages(spec, None)] for spec in ENTITY_SPECS}
    for spec in ENTITY_SPECS:
        assert all((array is not None) == (spec in ARROW_SPECS) for array in decoded[spec.name]), spec.name
    return {name: pa.concat_arrays(arrays) for name, arrays in decoded.items() if arrays[0] is not None}


def _assert_same(fast, slow, spec) -> None:
    assert slow.failures == []
    assert fast.failures == []
    assert_frame_equal(fast.entities, slow.entities)
    assert fast.max_updated_at == slow.max_updated_at
    for rel in spec.relations:
        key = relation_key(rel)
        assert_frame_equal(fast.links[key], slow.links[key], check_row_order=False)
    # The links are not all empty: the comparison above compared something.
    assert sum(len(frame) for frame in fast.links.values()) > 0 or not spec.relations
    assert fast.embedded.keys() == slow.embedded.keys() == {r.embedded.name for r in spec.embedded_relations}
    for name, rows in fast.embedded.items():
        assert rows.failures == slow.embedded[name].failures == []
        assert_frame_equal(rows.entities, slow.embedded[name].entities, check_row_order=False)
        assert len(rows.entities) > 0


@pytest.mark.parametrize("spec", ENTITY_SPECS, ids=lambda s: s.name)
def test_fast_path_equals_row_by_row_path(pages, spec):
    shaper = PageShaper(spec)
    rows = pages[spec.name]
    assert rows, f"the small library has no {spec.name}"
    _assert_same(shaper._build_columnar(rows, SYNCED_AT), shaper._shape_row_by_row(rows, SYNCED_AT), spec)


@pytest.mark.parametrize("spec", ARROW_SPECS, ids=lambda s: s.name)
def test_arrow_path_equals_row_by_row_path(pages, arrow_pages, spec):
    shaper = PageShaper(spec)
    rows = arrow_pages[spec.name]
    assert len(rows) == len(pages[spec.name])
    _assert_same(
        shaper._shape_arrow(rows, SYNCED_AT), shaper._shape_row_by_row(pages[spec.name], SYNCED_AT), spec
    )


def test_arrow_path_hands_duplicate_ids_to_the_json_path(arrow_pages):
    """Arrow pages never hold a duplicate id (the decoder refuses them), but joined pages could:
    the last occurrence wins, as on the JSON paths."""
    spec = SPECS_BY_NAME["scenes"]
    rows = arrow_pages["scenes"].slice(0, 20)
    twice = pa.concat_arrays([rows, rows.slice(5, 1)])
    page = PageShaper(spec).shape(twice, SYNCED_AT)
    assert page.duplicates == 1
    assert sorted(page.ids) == sorted(int(i) for i in rows.field("id").to_pylist())


def test_null_list_elements_are_dropped_on_every_path(pages):
    """``urls: [null, "x"]`` stores ["x"] however the page was shaped."""
    spec = SPECS_BY_NAME["scenes"]
    rows = copy.deepcopy(pages["scenes"][:10])
    rows[2]["urls"] = [None, "https://x.example/a"]
    arrow = pa.array(rows, type=arrow_type(spec))
    for page in (
        PageShaper(spec)._shape_arrow(arrow, SYNCED_AT),
        PageShaper(spec)._build_columnar(rows, SYNCED_AT),
        PageShaper(spec)._shape_row_by_row(rows, SYNCED_AT),
    ):
        stored = page.entities.filter(page.entities["id"] == int(rows[2]["id"]))["urls"].to_list()
        assert stored == [["https://x.example/a"]]


def test_a_target_listed_twice_is_linked_once_on_every_path(pages):
    """``tags: [5, 5, 7]`` (a bad JOIN on the server) stores the links (scene, 5) and (scene, 7)."""
    spec = SPECS_BY_NAME["scenes"]
    rows = copy.deepcopy(pages["scenes"][:10])
    rows[4]["tags"] = [{"id": "5"}, {"id": "5"}, {"id": "7"}]
    owner = int(rows[4]["id"])
    arrow = pa.array(rows, type=arrow_type(spec))
    key = relation_key(next(rel for rel in spec.relations if rel.field == "tags"))
    for page in (
        PageShaper(spec)._shape_arrow(arrow, SYNCED_AT),
        PageShaper(spec)._build_columnar(rows, SYNCED_AT),
        PageShaper(spec)._shape_row_by_row(rows, SYNCED_AT),
    ):
        links = page.links[key]
        assert sorted(links.filter(links["scene_id"] == owner)["tag_id"].to_list()) == [5, 7]
        assert not links.is_duplicated().any()


def _shape_with(pages, type_name: str, change) -> tuple[PageShaper, list[dict], object]:
    shaper = PageShaper(SPECS_BY_NAME[type_name])
    rows = copy.deepcopy(pages[type_name][:50])
    change(rows[3])
    with pytest.raises((TypeError, ValueError)):
        shaper._build_columnar(rows, SYNCED_AT)  # the fast path refuses the page...
    return shaper, rows, shaper.shape(rows, SYNCED_AT)  # ...and shape() still stores it


def test_fraction_in_integer_field_fails_the_row_not_the_page(pages):
    _shaper, rows, page = _shape_with(pages, "scenes", lambda row: row.update(rating100=5.5))
    assert [(entity_id, "rating100" in reason) for entity_id, reason in page.failures] == [
        (int(rows[3]["id"]), True)
    ]
    assert len(page.entities) == len(rows) - 1


def test_whole_float_in_integer_field_is_normalised(pages):
    _shaper, rows, page = _shape_with(pages, "scenes", lambda row: row.update(rating100=70.0))
    assert page.failures == []
    stored = page.entities.filter(page.entities["id"] == int(rows[3]["id"]))["rating100"].to_list()
    assert stored == [70]


def test_bare_string_for_a_list_is_one_element_not_its_characters(pages):
    _shaper, rows, page = _shape_with(pages, "scenes", lambda row: row.update(urls="https://x.example/a"))
    stored = page.entities.filter(page.entities["id"] == int(rows[3]["id"]))["urls"].to_list()
    assert stored == [["https://x.example/a"]]


def test_fraction_in_a_nested_integer_fails_the_row(pages):
    def change(row: dict) -> None:
        row["files"] = [{**(row["files"] or [{}])[0], "size": 1.5}] if row["files"] else [{"size": 1.5}]

    _shaper, rows, page = _shape_with(pages, "scenes", change)
    assert [entity_id for entity_id, _reason in page.failures] == [int(rows[3]["id"])]


def test_fraction_in_a_link_extra_fails_the_row(pages):
    def change(row: dict) -> None:
        row["groups"] = [{"group": {"id": "1"}, "scene_index": 2.5}]

    _shaper, rows, page = _shape_with(pages, "scenes", change)
    assert [entity_id for entity_id, _reason in page.failures] == [int(rows[3]["id"])]
