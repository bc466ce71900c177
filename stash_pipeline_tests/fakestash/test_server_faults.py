"""Every injected fault kind, over real HTTP."""

import httpx
import orjson
import pytest

from stash_pipeline.fakestash.faults import FaultPlan

PAGE = '{ findScenes(filter: {per_page: 5, sort: "id"}) { count scenes { id } } }'


def post(gql, query: str = PAGE) -> httpx.Response:
    return gql.post(query)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_http_errors_once_then_normal(gql, small_fake, status) -> None:
    small_fake.faults.add(f"http_{status}")
    assert post(gql).status_code == status
    assert post(gql).status_code == 200


def test_http_429_has_small_retry_after(gql, small_fake) -> None:
    small_fake.faults.add("http_429", times=2)
    for _ in range(2):
        response = post(gql)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "0"
    assert post(gql).status_code == 200
    small_fake.faults.add("http_429", retry_after=2)
    assert post(gql).headers["Retry-After"] == "2"


def test_drop_closes_without_answer(gql, small_fake) -> None:
    small_fake.faults.add("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        post(gql)
    assert post(gql).status_code == 200  # a new connection works


def test_slow_delays_then_answers(gql, small_fake) -> None:
    small_fake.faults.add("slow", seconds=0.3)
    with pytest.raises(httpx.ReadTimeout):
        gql.client.post("/graphql", json={"query": PAGE}, timeout=0.05)
    small_fake.faults.add("slow", seconds=0.05)
    response = post(gql)
    assert response.status_code == 200
    assert len(response.json()["data"]["findScenes"]["scenes"]) == 5


def test_malformed_json(gql, small_fake) -> None:
    small_fake.faults.add("malformed_json")
    response = post(gql)
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    assert post(gql).json()["data"]["findScenes"]["count"] == 200


def test_graphql_error_and_db_locked(gql, small_fake) -> None:
    small_fake.faults.add("graphql_error", message="boom")
    assert gql.errors(PAGE) == ["boom"]
    small_fake.faults.add("db_locked")
    assert gql.errors(PAGE) == ["database is locked"]
    assert gql.data(PAGE)["findScenes"]["count"] == 200


def test_truncate_and_empty_lists_keep_count(gql, small_fake) -> None:
    small_fake.faults.add("truncate_list", keep=2)
    data = gql.data(PAGE)["findScenes"]
    assert data["count"] == 200
    assert [s["id"] for s in data["scenes"]] == ["1", "2"]
    small_fake.faults.add("empty_list")
    data = gql.data(PAGE)["findScenes"]
    assert data == {"count": 200, "scenes": []}
    assert len(gql.data(PAGE)["findScenes"]["scenes"]) == 5


def test_match_restricts_to_queries_containing_the_text(gql, small_fake) -> None:
    small_fake.faults.add("http_503", times=1, match="findImages")
    assert post(gql).status_code == 200  # findScenes: not matched, fault stays armed
    assert post(gql, "{ findImages(filter: {per_page: 1}) { count } }").status_code == 503
    assert post(gql, "{ findImages(filter: {per_page: 1}) { count } }").status_code == 200


def test_fault_plan_validation_and_clear() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError, match="unknown fault kind"):
        plan.add("explode")
    with pytest.raises(ValueError, match="times"):
        plan.add("http_500", times=0)
    plan.add("http_500", times=3)
    assert len(plan) == 1
    plan.clear()
    assert plan.take("anything") is None


def test_duplicate_items_repeats_the_first_item(gql, small_fake) -> None:
    small_fake.faults.add("duplicate_items")
    data = gql.data(PAGE)["findScenes"]
    assert data["count"] == 200
    assert [s["id"] for s in data["scenes"]] == ["1", "1", "2", "3", "4", "5"]
    assert len(gql.data(PAGE)["findScenes"]["scenes"]) == 5  # consumed: normal again


def test_after_lets_matching_requests_through_first(gql, small_fake) -> None:
    small_fake.faults.add("http_503", match="findScenes", after=2)
    images = "{ findImages(filter: {per_page: 1}) { count } }"
    assert post(gql, images).status_code == 200  # not matched: does not count
    assert post(gql).status_code == 200
    assert post(gql).status_code == 200
    assert small_fake.faults.fired == []
    assert post(gql).status_code == 503  # the third matching request
    assert small_fake.faults.fired[-1].kind == "http_503"
    assert post(gql).status_code == 200


def test_after_must_be_a_non_negative_integer() -> None:
    with pytest.raises(ValueError, match="after"):
        FaultPlan().add("http_500", after=-1)
