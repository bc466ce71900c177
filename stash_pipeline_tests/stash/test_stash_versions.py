"""Every Stash release users run: what the client learns from the server, and that every document
it then sends is one the release accepts (validated against the release's real schema, and served
by the fake pretending to be that release)."""

import pytest
from graphql import GraphQLSchema, build_schema, parse, validate

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.executor import load_schema
from stash_pipeline.fakestash.versions import CURRENT, RELEASES
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline.stash import features, queries
from stash_pipeline.stash.client import StashClient
from stash_pipeline.stash.errors import StashGraphQLError
from stash_pipeline.stash.features import NO_FIND_FILES
from stash_pipeline_tests.mirror.conftest import SCENARIO_SIZE
from stash_pipeline_tests.shared_reference import REAL_SCHEMA, shared_file

VERSIONS = list(RELEASES)
# What each release does not offer of what the mirror reads (the rest of the model is everywhere).
_FILES_V28 = ["files.parent_folder", "files.zip_file", "files.format (on ImageFile)", NO_FIND_FILES]
NOT_OFFERED = {
    "v0.27.2": {
        "studios": ["studios.urls, read from studios.url", "studio_stash_ids.updated_at"],
        "tags": ["tags.sort_name", "tags.stash_ids"],
        "performers": ["performers.custom_fields", "performer_stash_ids.updated_at"],
        "galleries": _FILES_V28,
        "scenes": [*_FILES_V28[:3], "scene_stash_ids.updated_at", NO_FIND_FILES],
        "images": _FILES_V28,
        "scene_markers": ["scene_markers.end_seconds"],
    },
    "v0.28.1": {
        "studios": ["studios.urls, read from studios.url"],
        "tags": ["tags.stash_ids"],
        "galleries": _FILES_V28,
        "scenes": _FILES_V28,
        "images": _FILES_V28,
    },
    "v0.29.3": {"studios": ["studios.urls, read from studios.url"], "tags": ["tags.stash_ids"]},
    "v0.30.1": {},
    CURRENT: {},
}


def real_schema(version: str) -> GraphQLSchema:
    path = REAL_SCHEMA if version == CURRENT else f"stash-schema/releases/{version}.graphql"
    return build_schema(shared_file(path).read_text(encoding="utf-8"))


@pytest.fixture(params=VERSIONS)
def versioned(request, make_fake_server):
    fake = FakeStash.generated(SCENARIO_SIZE, seed=3, version=request.param)
    server = make_fake_server(fake)
    features.forget(server.url)
    with StashClient(server.url, retries=0) as client:
        yield request.param, fake, client
    features.forget(server.url)


def _invalid(schema: GraphQLSchema, documents: list[str]) -> dict[str, list[str]]:
    bad = {}
    for document in documents:
        errors = validate(schema, parse(document))
        if errors:
            bad[queries.operation_name(document)] = [e.message for e in errors]
    return bad


def test_the_client_learns_the_version_and_sends_only_what_it_accepts(versioned) -> None:
    version, fake, client = versioned
    learnt = client.features()
    assert learnt.version == fake.release.version
    adapted = {spec.name: client.adapt(spec) for spec in ENTITY_SPECS}
    offered_not = {name: [u.describe() for u in a.unoffered] for name, a in adapted.items() if a.unoffered}
    assert offered_not == NOT_OFFERED[version]
    documents = list(queries.all_documents([a.spec for a in adapted.values()], learnt.lists_files))
    # The by-ids read of a type whose query takes no ids is never sent (markers before v0.28).
    assert all(
        a.spec.by_ids == (version != "v0.27.2" or a.spec.name != "scene_markers") for a in adapted.values()
    )
    assert _invalid(load_schema(version), documents) == {}  # the fake as that release
    assert _invalid(real_schema(version), documents) == {}  # Stash's own schema of that release
    before = fake.request_count
    assert client.features() is learnt
    assert fake.request_count == before


@pytest.mark.parametrize("version", ["v0.27.2", "v0.29.3"])
def test_unadapted_documents_are_refused_by_older_releases(version, make_fake_server) -> None:
    """The check above has teeth: the model as the current schema has it is invalid there, and
    the fake refuses it as Stash does (HTTP 422, a validation error naming the field)."""
    documents = list(queries.all_documents())
    assert "StudiosPage" in _invalid(real_schema(version), documents)
    fake = FakeStash.generated(SCENARIO_SIZE, seed=3, version=version)
    with StashClient(make_fake_server(fake).url, retries=0) as client:
        studios = next(s for s in ENTITY_SPECS if s.name == "studios")
        with pytest.raises(StashGraphQLError, match="urls"):
            list(client.iter_pages(studios, None))
