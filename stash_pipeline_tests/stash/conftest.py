"""Fixtures of the client tests: clients with tiny, recorded backoff (no real sleeping)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline.stash.client import StashClient

MakeClient = Callable[..., StashClient]


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the client asked for (tenacity's ``sleep`` hook records instead of sleeping)."""
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[MakeClient]:
    """``make_client(server, **overrides)``: a client whose backoff is 0.01 s doubling, no jitter."""
    clients: list[StashClient] = []

    def make(server: FakeStashServer, **overrides: Any) -> StashClient:
        options: dict[str, Any] = {
            "timeout": 5.0,
            "retries": 5,
            "backoff_initial": 0.01,
            "backoff_max": 1.0,
            "backoff_jitter": 0.0,
            "sleep": sleeps.append,
        }
        options.update(overrides)
        client = StashClient(server.url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(small_server: FakeStashServer, make_client: MakeClient) -> StashClient:
    return make_client(small_server)
