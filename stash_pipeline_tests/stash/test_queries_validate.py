"""Every document the client can send validates against the REAL Stash schema and our fake's SDL, and
obeys the paging rules (per_page and sort "id" on every find query)."""

from importlib import resources

import pytest
from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    ObjectValueNode,
    OperationDefinitionNode,
    StringValueNode,
    build_schema,
    parse,
    validate,
    visit,
)
from graphql.language import Visitor

from stash_pipeline.model import ENTITY_SPECS, SCENES, TAGS
from stash_pipeline.stash import queries
from stash_pipeline_tests.shared_reference import REAL_SCHEMA, shared_file


@pytest.fixture(scope="module")
def real_schema() -> GraphQLSchema:
    return build_schema(shared_file(REAL_SCHEMA).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fake_schema() -> GraphQLSchema:
    text = resources.files("stash_pipeline.fakestash").joinpath("schema.graphql").read_text(encoding="utf-8")
    return build_schema(text)


DOCUMENTS = list(queries.all_documents())


def _errors(schema: GraphQLSchema) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for document in DOCUMENTS:
        errors = validate(schema, parse(document))
        if errors:
            bad[document] = [e.message for e in errors]
    return bad


def test_all_documents_covers_every_type_and_kind() -> None:
    assert len(DOCUMENTS) == len(set(DOCUMENTS)), "all_documents() yields duplicates"
    names = {queries.operation_name(d) for d in DOCUMENTS}
    for spec in ENTITY_SPECS:
        title = "".join(part.capitalize() for part in spec.name.split("_"))
        for suffix in (
            "Page",
            "PageNoCount",
            "Ids",
            "IdsNoCount",
            "Count",
            "TailProbe",
            "LatestUpdatedAt",
        ):
            assert f"{title}{suffix}" in names
        assert f"{title}ByIds" in names or not spec.by_ids
    assert {"CountMany", "ImagesOfGallery", "ImagesOfGalleries", "Health", "Stats"} <= names


def test_documents_validate_against_real_stash_schema(real_schema: GraphQLSchema) -> None:
    assert _errors(real_schema) == {}


def test_documents_validate_against_fake_sdl(fake_schema: GraphQLSchema) -> None:
    assert _errors(fake_schema) == {}


def test_validation_catches_a_bad_document(real_schema: GraphQLSchema) -> None:
    # Guard against a vacuous test: a wrong field name must fail against the same schema.
    bad = queries.page_query(SCENES).replace("updated_at", "updatedAt")
    assert validate(real_schema, parse(bad))


class _FindCalls(Visitor):
    """Collects every find* field of a document with its ``filter`` argument."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, ArgumentNode | None]] = []

    def enter_field(self, node: FieldNode, *_args: object) -> None:
        if node.name.value.startswith("find"):
            arg = next((a for a in node.arguments if a.name.value == "filter"), None)
            self.calls.append((node.name.value, arg))


def _find_calls(document: DocumentNode) -> list[tuple[str, ArgumentNode | None]]:
    visitor = _FindCalls()
    visit(document, visitor)
    return visitor.calls


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: queries.operation_name(d) or "?")
def test_every_find_sets_per_page_and_sort_id(document: str) -> None:
    calls = _find_calls(parse(document))
    op = parse(document).definitions[0]
    assert isinstance(op, OperationDefinitionNode)
    if op.name and op.name.value in ("Health", "Stats", "Features"):
        assert calls == []
        return
    assert calls, "a document without any find query"
    for field, arg in calls:
        assert arg is not None, f"{field} without a filter argument"
        assert isinstance(arg.value, ObjectValueNode)
        values = {f.name.value: f.value for f in arg.value.fields}
        assert "per_page" in values, f"{field} without per_page"
        sort = values.get("sort")
        assert isinstance(sort, StringValueNode)
        if op.name and op.name.value.endswith("LatestUpdatedAt"):
            # The one exception: a single value (per_page 1), not a page.
            assert (sort.value, values["per_page"].value) == ("updated_at", "1")  # type: ignore[attr-defined]
            continue
        assert sort.value == "id", f"{field} not sorted by id"


def test_count_probes_use_per_page_zero_and_select_only_count() -> None:
    for document in (queries.count_query(TAGS), queries.count_many_query(["scenes"], ["scenes", "tags"])):
        assert "per_page: 0" in document
        for field, _arg in _find_calls(parse(document)):
            assert field.startswith("find")
        assert "{ count }" in document
        assert " id " not in document


def test_count_many_is_one_document_with_aliases_and_is_cached() -> None:
    document = queries.count_many_query(["tags", "scenes"], ["scenes", "tags", "images"])
    assert document == queries.count_many_query(["scenes", "tags"], ["images", "tags", "scenes"])
    assert document is queries.count_many_query(["scenes", "tags"], ["images", "tags", "scenes"])
    for alias in ("scenes_changed", "scenes_total", "tags_changed", "tags_total", "images_total"):
        assert f"{alias}: find" in document
    assert "images_changed" not in document
    assert "$scenes_f: SceneFilterType" in document
    assert queries.page_query(SCENES) is queries.page_query(SCENES)


def _top_fields(document: str) -> set[str]:
    op = parse(document).definitions[0]
    assert isinstance(op, OperationDefinitionNode)
    find = op.selection_set.selections[0]
    assert isinstance(find, FieldNode)
    assert find.selection_set is not None
    return {f.name.value for f in find.selection_set.selections if isinstance(f, FieldNode)}


def test_keyset_later_pages_do_not_select_count() -> None:
    # For scenes and images selecting count costs Stash a count query (docs/stash-behaviour.md §2).
    assert _top_fields(queries.page_query(SCENES, True)) == {"count", "scenes"}
    assert _top_fields(queries.page_query(SCENES, False)) == {"scenes"}
    assert _top_fields(queries.ids_query(SCENES, False)) == {"scenes"}
    assert _top_fields(queries.by_ids_query(SCENES)) == {"scenes"}
