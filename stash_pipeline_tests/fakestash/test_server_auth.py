"""API-key authentication as Stash does it (docs/stash-behaviour.md §1)."""

import httpx

from stash_pipeline.fakestash.app import FakeStash

QUERY = {"query": "{ stats { scene_count } }"}


def test_key_required_when_configured(make_fake_server) -> None:
    server = make_fake_server(FakeStash(api_key="s3cret"))
    with httpx.Client(base_url=server.url) as client:
        missing = client.post("/graphql", json=QUERY)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "FormBased"
        wrong = client.post("/graphql", json=QUERY, headers={"ApiKey": "nope"})
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"] == "FormBased"
        good = client.post("/graphql", json=QUERY, headers={"ApiKey": "s3cret"})
        assert good.status_code == 200
        assert good.json() == {"data": {"stats": {"scene_count": 0}}}
        by_param = client.post("/graphql?apikey=s3cret", json=QUERY)
        assert by_param.status_code == 200
        assert client.post("/graphql?apikey=nope", json=QUERY).status_code == 401
        assert client.get("/healthz").status_code == 200  # no auth on the heartbeat


def test_sending_a_key_to_a_server_without_one_is_refused(make_fake_server) -> None:
    server = make_fake_server(FakeStash())
    with httpx.Client(base_url=server.url) as client:
        refused = client.post("/graphql", json=QUERY, headers={"ApiKey": "anything"})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "FormBased"
        assert client.post("/graphql", json=QUERY).status_code == 200
        assert client.post("/graphql", json=QUERY, headers={"ApiKey": ""}).status_code == 200


def test_refused_requests_do_not_count_or_fire_schedules(make_fake_server) -> None:
    fake = FakeStash(api_key="k")
    fired = []
    fake.after_requests(1, lambda f: fired.append(f.request_count))
    server = make_fake_server(fake)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/graphql", json=QUERY).status_code == 401
        assert fake.request_count == 0
        assert fired == []
        assert client.post("/graphql", json=QUERY, headers={"ApiKey": "k"}).status_code == 200
    assert fired == [1]
