"""The /control endpoint and scheduled mutations."""

from datetime import UTC, datetime

import httpx
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import blank_entity

TITLE = '{ findScene(id: "1") { title updated_at } }'


@pytest.fixture
def control(small_server):
    with httpx.Client(base_url=small_server.url) as client:

        def call(body: dict, status: int = 200) -> dict:
            response = client.post("/control", json=body)
            assert response.status_code == status, response.text
            return response.json()

        yield call


def test_mutate_changes_what_graphql_returns(control, gql) -> None:
    before = gql.data(TITLE)["findScene"]
    result = control(
        {"action": "mutate", "method": "update", "args": {"kind": "scene", "id": 1, "title": "New"}}
    )
    assert result == {"result": None}
    after = gql.data(TITLE)["findScene"]
    assert after["title"] == "New"
    assert before["title"] != "New"
    created = control({"action": "mutate", "method": "create", "args": {"kind": "tag", "name": "Brand New"}})
    assert gql.data(f'{{ findTag(id: "{created["result"]}") {{ name }} }}') == {
        "findTag": {"name": "Brand New"}
    }


def test_unknown_method_or_action_is_400(control) -> None:
    error = control({"action": "mutate", "method": "drop_database", "args": {}}, status=400)["error"]
    assert "drop_database" in error
    assert "update" in error
    assert "unknown action" in control({"action": "explode"}, status=400)["error"]
    assert control({"action": "mutate", "method": "update", "args": {"kind": "scene"}}, status=400)["error"]
    assert "unknown fault kind" in control({"action": "fault", "kind": "nope"}, status=400)["error"]


def test_schedule_fires_before_the_nth_request(control, gql, small_fake) -> None:
    start = small_fake.request_count
    answer = control(
        {
            "action": "schedule",
            "after": 3,
            "method": "update",
            "args": {"kind": "scene", "id": 1, "title": "Later"},
        }
    )
    assert answer == {"scheduled_for": start + 3}
    titles = [gql.data(TITLE)["findScene"]["title"] for _ in range(4)]
    assert titles[0] != "Later"
    assert titles[1] != "Later"
    assert titles[2] == "Later"
    assert titles[3] == "Later"


def test_schedule_through_python_api(gql, small_fake) -> None:
    def edit(fake: FakeStash) -> None:
        fake.store.tables["scene"][1]["title"] = "Direct"
        fake.store.touch()

    small_fake.after_requests(2, edit)
    assert gql.data(TITLE)["findScene"]["title"] != "Direct"
    assert gql.data(TITLE)["findScene"]["title"] == "Direct"


def test_fault_and_clear_faults(control, gql) -> None:
    armed = control({"action": "fault", "kind": "http_503", "times": 2, "match": "findScene", "params": {}})
    assert armed["armed"]["kind"] == "http_503"
    assert gql.post(TITLE).status_code == 503
    assert control({"action": "stats"})["faults_pending"][0]["times"] == 1
    assert control({"action": "clear_faults"}) == {"cleared": True}
    assert gql.post(TITLE).status_code == 200
    control({"action": "fault", "kind": "truncate_list", "params": {"keep": 1}})
    data = gql.data('{ findScenes(filter: {per_page: 3, sort: "id"}) { count scenes { id } } }')
    assert len(data["findScenes"]["scenes"]) == 1


def test_truth_and_stats(control, gql, small_fake) -> None:
    truth = control({"action": "truth"})
    assert truth["counts"]["scenes"] == len(small_fake.store.tables["scene"])
    assert [s["id"] for s in truth["scenes"]] == sorted(small_fake.store.tables["scene"])
    gql.data(TITLE)
    gql.data(TITLE)
    stats = control({"action": "stats"})
    assert stats["request_count"] == small_fake.request_count >= 2
    assert stats["counts"]["scene"] == len(small_fake.store.tables["scene"])


def test_clock_control(control, small_fake) -> None:
    epoch = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    answer = control({"action": "clock", "freeze": epoch})
    assert answer == {"now": epoch, "stamp": "2030-01-02T03:04:05Z", "frozen": True}
    answer = control({"action": "clock", "advance": 60})
    assert answer["stamp"] == "2030-01-02T03:05:05Z"
    new_id = control({"action": "mutate", "method": "create", "args": {"kind": "scene", "title": "t"}})[
        "result"
    ]
    assert small_fake.store.tables["scene"][new_id]["updated_at"] == "2030-01-02T03:05:05Z"
    assert control({"action": "clock", "unfreeze": True})["frozen"] is False


def test_dst_fall_back_repeats_a_local_hour(make_fake_server, gql_session) -> None:
    """Sydney-like fall-back: 03:00 +11:00 becomes 02:00 +10:00, so local text 02:30 happens twice."""
    fake = FakeStash(zone="+11:00,+10:00@2026-04-04T16:00:00Z")
    fake.store.insert("scene", blank_entity("scene", 1, "2026-04-01T00:00:00+11:00"))
    server = make_fake_server(fake)
    session = gql_session(server)
    with httpx.Client(base_url=server.url) as client:
        client.post(
            "/control",
            json={"action": "clock", "freeze": datetime(2026, 4, 4, 15, 30, tzinfo=UTC).timestamp()},
        )
        first = client.post(
            "/control", json={"action": "mutate", "method": "create", "args": {"kind": "scene"}}
        )
        client.post("/control", json={"action": "clock", "advance": 3600})
        second = client.post(
            "/control", json={"action": "mutate", "method": "create", "args": {"kind": "scene"}}
        )
    first_id, second_id = first.json()["result"], second.json()["result"]
    scenes = session.data('{ findScenes(filter: {per_page: -1, sort: "id"}) { scenes { id updated_at } } }')
    stamps = {int(s["id"]): s["updated_at"] for s in scenes["findScenes"]["scenes"]}
    assert stamps[first_id] == "2026-04-05T02:30:00+11:00"
    assert stamps[second_id] == "2026-04-05T02:30:00+10:00"  # one hour LATER, same local text
    # Text order disagrees with time order: a cursor at the first stamp misses the later row.
    later = session.data(
        f'{{ findScenes(scene_filter: {{updated_at: {{modifier: GREATER_THAN, value: "{stamps[first_id]}"}}}}, '
        'filter: {per_page: -1, sort: "id"}) { scenes { id } } }'
    )
    assert later["findScenes"]["scenes"] == []
    # Sorting by updated_at puts the later write first.
    ordered = session.data(
        '{ findScenes(filter: {per_page: -1, sort: "updated_at", direction: DESC}) { scenes { id } } }'
    )
    assert [int(s["id"]) for s in ordered["findScenes"]["scenes"]][:2] == [first_id, second_id]


def test_date_header_follows_the_fake_clock_in_utc(small_server, control) -> None:
    """Like Go's net/http: every answer carries ``Date`` in UTC, whatever zone the server writes."""
    epoch = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    control({"action": "clock", "freeze": epoch, "zone": "+11:00"})
    with httpx.Client(base_url=small_server.url) as client:
        response = client.post("/graphql", json={"query": TITLE})
    assert response.headers["date"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert response.json()["data"]["findScene"] is not None


def test_zone_control_moves_the_offset_of_later_writes(control, small_fake) -> None:
    epoch = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert (
        control({"action": "clock", "freeze": epoch, "zone": "+11:00"})["stamp"]
        == "2030-01-02T14:04:05+11:00"
    )
    assert control({"action": "clock", "zone": "-05:00"})["stamp"] == "2030-01-01T22:04:05-05:00"
    new_id = control({"action": "mutate", "method": "create", "args": {"kind": "scene"}})["result"]
    assert small_fake.store.tables["scene"][new_id]["updated_at"] == "2030-01-01T22:04:05-05:00"
    control({"action": "clock", "zone": "bad"}, status=400)
