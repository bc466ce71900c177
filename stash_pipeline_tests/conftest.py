"""Shared fixtures: fake Stash servers on 127.0.0.1 (real HTTP, no mocks).

- ``make_fake_server(fake)`` starts a server for a ``FakeStash`` and closes it at teardown.
- ``small_fake``: a small generated library (fresh per test, so tests may mutate it freely).
- ``small_server``: ``small_fake`` served.
- ``gql_session(server, api_key=None)`` / ``gql``: a keep-alive httpx session posting GraphQL
  (``GraphQLSession``), closed at teardown.
"""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.fakestash.server import FakeStashServer, serve
from stash_pipeline.stash import features

SMALL_SIZE = LibrarySize(scenes=200, images=600)


@pytest.fixture
def make_fake_server() -> Iterator[Callable[[FakeStash], FakeStashServer]]:
    """Factory: ``make_fake_server(fake)`` → a running ``FakeStashServer`` (closed at teardown)."""
    servers: list[FakeStashServer] = []

    def make(fake: FakeStash, host: str = "127.0.0.1", port: int = 0) -> FakeStashServer:
        server = serve(fake, host=host, port=port)
        # A port is reused by later servers (perhaps of another release): what an earlier server
        # at this URL offered is not this one's.
        features.forget(server.url)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
        features.forget(server.url)


@pytest.fixture
def small_fake() -> FakeStash:
    """A small generated library (200 scenes, 600 images, the other types in proportion)."""
    return FakeStash.generated(SMALL_SIZE, seed=0)


@pytest.fixture
def small_server(
    small_fake: FakeStash, make_fake_server: Callable[[FakeStash], FakeStashServer]
) -> FakeStashServer:
    return make_fake_server(small_fake)


class GraphQLSession:
    """A small httpx wrapper for tests: post a query, get data or error messages."""

    def __init__(self, server: FakeStashServer, api_key: str | None = None) -> None:
        headers = {"ApiKey": api_key} if api_key else {}
        self.server = server
        self.client = httpx.Client(base_url=server.url, headers=headers, timeout=30)

    def post(self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.client.post("/graphql", json=body, **kwargs)

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of a successful answer (fails the test on HTTP or GraphQL errors)."""
        response = self.post(query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def errors(self, query: str, variables: dict[str, Any] | None = None, status: int = 200) -> list[str]:
        """The error messages of a failing answer (asserting its HTTP status and null data)."""
        response = self.post(query, variables)
        assert response.status_code == status, response.text
        body = response.json()
        assert body.get("data") is None, body
        return [e["message"] for e in body["errors"]]

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def gql_session() -> Iterator[Callable[..., GraphQLSession]]:
    """Factory: ``gql_session(server, api_key=None)`` → a ``GraphQLSession`` (closed at teardown)."""
    sessions: list[GraphQLSession] = []

    def make(server: FakeStashServer, api_key: str | None = None) -> GraphQLSession:
        session = GraphQLSession(server, api_key)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def gql(small_server: FakeStashServer, gql_session: Callable[..., GraphQLSession]) -> GraphQLSession:
    """A GraphQL session on ``small_server``."""
    return gql_session(small_server)
