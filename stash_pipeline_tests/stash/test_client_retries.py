"""Retries, backoff, fail-fast errors and API-key handling of ``StashClient``, over real HTTP."""

import logging
from collections.abc import Callable

import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline.model import SCENES, TAGS
from stash_pipeline.stash.client import StashClient
from stash_pipeline.stash.errors import (
    StashAuthError,
    StashGraphQLError,
    StashProtocolError,
    StashUnavailableError,
)
from stash_pipeline_tests.stash.conftest import MakeClient

MakeServer = Callable[[FakeStash], FakeStashServer]
TINY = LibrarySize(scenes=20, images=40)
SECRET = "k3y-that-must-never-leak-0123456789"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("http_500", "HTTP 500"),
        ("http_502", "HTTP 502"),
        ("http_503", "HTTP 503"),
        ("http_429", "HTTP 429"),
        ("drop", "connection error"),
        ("db_locked", "database is locked"),
        ("malformed_json", "malformed JSON"),
    ],
)
def test_transient_failures_are_retried_until_success(
    kind: str,
    reason: str,
    small_fake: FakeStash,
    client: StashClient,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    small_fake.faults.add(kind, times=3)
    before = small_fake.request_count
    with caplog.at_level(logging.WARNING, logger="stash_pipeline.stash"):
        assert client.count(SCENES) == len(small_fake.store.table("scene"))
    assert small_fake.request_count - before == 4  # three failures, then success
    # Exponential backoff, observed through the sleep hook: 0.01, 0.02, 0.04 (jitter 0 here).
    assert sleeps == pytest.approx([0.01, 0.02, 0.04])
    retries = [r for r in caplog.records if r.name == "stash_pipeline.stash"]
    assert len(retries) == 3
    assert all(reason in r.getMessage() for r in retries)


def test_timeout_is_retried(
    small_fake: FakeStash, small_server: FakeStashServer, make_client: MakeClient, sleeps: list[float]
) -> None:
    client = make_client(small_server, timeout=0.2)
    small_fake.faults.add("slow", times=1, seconds=1.5)
    before = small_fake.request_count
    assert client.count(TAGS) == len(small_fake.store.table("tag"))
    assert small_fake.request_count - before == 2
    assert len(sleeps) == 1


def test_jitter_stays_within_bounds(
    small_fake: FakeStash, small_server: FakeStashServer, make_client: MakeClient, sleeps: list[float]
) -> None:
    client = make_client(small_server, backoff_initial=0.01, backoff_jitter=0.005, backoff_max=0.03)
    small_fake.faults.add("http_503", times=4)
    client.count(TAGS)
    assert len(sleeps) == 4
    for n, wait in enumerate(sleeps):
        base = 0.01 * 2**n
        assert min(base, 0.03) <= wait <= min(base + 0.005, 0.03)
    assert sleeps[-1] == pytest.approx(0.03)  # capped at backoff_max


def test_retry_after_is_honoured(
    small_fake: FakeStash, small_server: FakeStashServer, make_client: MakeClient, sleeps: list[float]
) -> None:
    client = make_client(small_server, backoff_max=5.0)
    small_fake.faults.add("http_429", times=1, retry_after=3)
    client.count(TAGS)
    assert sleeps == [3.0]


def test_exhausted_retries_raise_unavailable(
    small_fake: FakeStash, small_server: FakeStashServer, make_client: MakeClient, sleeps: list[float]
) -> None:
    client = make_client(small_server, retries=3)
    small_fake.faults.add("http_503", times=10)
    before = small_fake.request_count
    with pytest.raises(StashUnavailableError, match="HTTP 503") as info:
        client.count(SCENES)
    assert info.value.attempts == 4
    assert small_fake.request_count - before == 4
    assert len(sleeps) == 3


def test_exhausted_malformed_json_is_a_protocol_error(
    small_fake: FakeStash, small_server: FakeStashServer, make_client: MakeClient
) -> None:
    client = make_client(small_server, retries=2)
    small_fake.faults.add("malformed_json", times=5)
    with pytest.raises(StashProtocolError, match="malformed JSON"):
        client.count(SCENES)


def test_connection_refused_is_retried_then_unavailable(
    make_client: MakeClient, small_fake: FakeStash, make_fake_server: MakeServer, sleeps: list[float]
) -> None:
    server = make_fake_server(small_fake)
    client = make_client(server, retries=2)
    server.close()
    with pytest.raises(StashUnavailableError, match="connection error"):
        client.count(TAGS)
    assert client.requests_sent == 3
    assert len(sleeps) == 2


def test_graphql_errors_are_not_retried(
    small_fake: FakeStash, client: StashClient, sleeps: list[float]
) -> None:
    small_fake.faults.add("graphql_error", times=3, message="something broke")
    before = small_fake.request_count
    with pytest.raises(StashGraphQLError) as info:
        client.count(SCENES)
    assert info.value.messages == ["something broke"]
    assert info.value.operation_name == "ScenesCount"
    assert small_fake.request_count - before == 1
    assert sleeps == []


def test_invalid_document_is_a_graphql_error_not_retried(
    small_fake: FakeStash, client: StashClient, sleeps: list[float]
) -> None:
    # The fake, like gqlgen, answers validation errors with HTTP 422 and an errors list.
    with pytest.raises(StashGraphQLError, match="nope"):
        client.execute('query Bad { findScenes(filter: {per_page: 0, sort: "id"}) { nope } }')
    assert client.requests_sent == 1
    assert sleeps == []


def test_wrong_key_fails_at_once_and_never_shows_the_key(
    make_fake_server: MakeServer,
    make_client: MakeClient,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeStash(api_key="the-right-key")
    server = make_fake_server(fake)
    client = make_client(server, api_key=SECRET)
    with caplog.at_level(logging.DEBUG), pytest.raises(StashAuthError) as info:
        client.count(TAGS)
    assert client.requests_sent == 1  # no retry on 401
    assert sleeps == []
    assert fake.request_count == 0  # refused before the GraphQL layer
    assert "rejected the API key" in str(info.value)
    for text in (str(info.value), repr(info.value), repr(client), str(client), caplog.text):
        assert SECRET not in text


def test_missing_key_says_so(make_fake_server: MakeServer, make_client: MakeClient) -> None:
    server = make_fake_server(FakeStash(api_key="the-right-key"))
    with pytest.raises(StashAuthError, match="requires an API key"):
        make_client(server).count(TAGS)


def test_right_key_is_accepted(make_fake_server: MakeServer, make_client: MakeClient) -> None:
    fake = FakeStash.generated(TINY, api_key=SECRET)
    client = make_client(make_fake_server(fake), api_key=SECRET)
    assert client.count(TAGS) == len(fake.store.table("tag"))


def test_key_sent_to_a_server_without_one_is_the_401_gotcha(
    small_server: FakeStashServer, make_client: MakeClient
) -> None:
    # Stash refuses ANY key when it has none configured, so the header must only be sent when set.
    assert make_client(small_server).count(TAGS) > 0  # no key, no header: fine
    with pytest.raises(StashAuthError, match="unset STASH_API_KEY") as info:
        make_client(small_server, api_key=SECRET).count(TAGS)
    assert SECRET not in str(info.value)


def test_key_never_in_retry_logs(
    make_fake_server: MakeServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeStash.generated(TINY, api_key=SECRET)
    client = make_client(make_fake_server(fake), api_key=SECRET)
    fake.faults.add("drop", times=1)
    fake.faults.add("graphql_error", times=1, message=f"echo {SECRET}")
    with caplog.at_level(logging.DEBUG), pytest.raises(StashGraphQLError) as info:
        client.count(TAGS)
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)  # a server echoing the key is redacted
    assert SECRET not in caplog.text
    assert "waiting for it: retry 1 in" in caplog.text


def test_url_with_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key") as info:
        StashClient(f"http://127.0.0.1:1/?apikey={SECRET}")
    assert SECRET not in str(info.value)


def test_health_checks_healthz_then_status(small_fake: FakeStash, client: StashClient) -> None:
    before = small_fake.request_count
    health = client.health()
    assert health.status == "OK"
    assert health.app_schema == 75
    assert health.version
    assert client.requests_sent == 2  # GET /healthz + one GraphQL request
    assert small_fake.request_count - before == 1


def test_wrong_url_is_a_clear_protocol_error(small_server: FakeStashServer, sleeps: list[float]) -> None:
    client = StashClient(small_server.url + "/not-stash", sleep=sleeps.append)
    with client, pytest.raises(StashProtocolError, match="STASH_URL"):
        client.count(TAGS)
    assert sleeps == []
