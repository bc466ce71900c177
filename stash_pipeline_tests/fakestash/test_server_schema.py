"""Our hand-written SDL: it serves what the mirror asks for, and it is a compatible subset of Stash's.

The real schema (``shared/stash-schema/schema.graphql``, reference data, never copied; see
``shared_reference``) is what the subset test compares every declared type, field, argument, enum
value and union member with.
"""

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLUnionType,
    build_schema,
    parse,
    validate,
)

from stash_pipeline.fakestash.executor import load_schema
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline_tests.shared_reference import EXAMPLE_QUERIES, REAL_SCHEMA, shared_file


def _spec_queries() -> list[str]:
    return [
        f'query {{ {spec.query}(filter: {{per_page: 1, sort: "id"}}) {{ count {spec.result_key} {{ {spec.selection} }} }} }}'
        for spec in ENTITY_SPECS
    ]


def test_entity_selections_validate_against_our_sdl() -> None:
    schema = load_schema()
    for query in _spec_queries():
        assert validate(schema, parse(query)) == [], query


def test_example_queries_validate_against_our_sdl() -> None:
    document = parse(shared_file(EXAMPLE_QUERIES).read_text())
    assert len(document.definitions) >= 14
    assert validate(load_schema(), document) == []


def test_example_queries_execute(gql) -> None:
    text = shared_file(EXAMPLE_QUERIES).read_text()
    variables = {"page": 1, "perPage": 3, "since": "2020-01-01", "gid": "1", "ids": ["2", "1"], "after": 5}
    for definition in parse(text).definitions:
        name = definition.name.value
        used = {v.variable.name.value for v in definition.variable_definitions}
        response = gql.client.post(
            "/graphql",
            json={
                "query": text,
                "operationName": name,
                "variables": {k: v for k, v in variables.items() if k in used},
            },
        )
        assert response.status_code == 200, (name, response.text)
        assert "errors" not in response.json(), (name, response.json())


def test_id_criterion_only_on_three_filters() -> None:
    schema = load_schema()
    with_id = {
        name
        for name in (
            "SceneFilterType",
            "ImageFilterType",
            "GalleryFilterType",
            "PerformerFilterType",
            "StudioFilterType",
            "TagFilterType",
            "GroupFilterType",
        )
        if "id" in schema.type_map[name].fields
    }
    assert with_id == {"SceneFilterType", "ImageFilterType", "GalleryFilterType"}


def test_our_sdl_is_a_compatible_subset_of_stash() -> None:
    ours = load_schema()
    real = build_schema(shared_file(REAL_SCHEMA).read_text())
    problems = []
    for name, ours_type in ours.type_map.items():
        if name.startswith("__"):
            continue
        real_type = real.type_map.get(name)
        if real_type is None:
            problems.append(f"type {name} not in Stash")
            continue
        if type(real_type) is not type(ours_type):
            problems.append(
                f"type {name} is a {type(ours_type).__name__}, Stash has {type(real_type).__name__}"
            )
            continue
        if isinstance(ours_type, (GraphQLObjectType, GraphQLInterfaceType, GraphQLInputObjectType)):
            for field_name, field in ours_type.fields.items():
                real_field = real_type.fields.get(field_name)
                if real_field is None:
                    problems.append(f"{name}.{field_name} not in Stash")
                    continue
                if str(real_field.type) != str(field.type):
                    problems.append(f"{name}.{field_name}: ours {field.type}, Stash {real_field.type}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    real_arg = real_field.args.get(arg_name)
                    if real_arg is None or str(real_arg.type) != str(arg.type):
                        problems.append(f"{name}.{field_name}({arg_name}) differs from Stash")
            if isinstance(ours_type, (GraphQLObjectType, GraphQLInterfaceType)):
                ours_ifaces = {i.name for i in ours_type.interfaces}
                if not ours_ifaces <= {i.name for i in real_type.interfaces}:
                    problems.append(f"{name} implements {ours_ifaces} not all in Stash")
        if isinstance(ours_type, GraphQLEnumType) and set(ours_type.values) - set(real_type.values):
            problems.append(f"enum {name} has values Stash lacks")
        if isinstance(ours_type, GraphQLUnionType) and {t.name for t in ours_type.types} != {
            t.name for t in real_type.types
        }:
            problems.append(f"union {name} members differ")
    for field_name, field in ours.query_type.fields.items():
        real_field = real.query_type.fields[field_name]
        assert str(real_field.type) == str(field.type)
        assert {a: str(t.type) for a, t in field.args.items()} == {
            a: str(t.type) for a, t in real_field.args.items()
        }, field_name
    assert problems == []


def test_entity_selections_validate_against_real_stash() -> None:
    real = build_schema(shared_file(REAL_SCHEMA).read_text())
    for query in _spec_queries():
        assert validate(real, parse(query)) == [], query
