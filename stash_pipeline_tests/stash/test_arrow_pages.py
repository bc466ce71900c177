"""Pages decoded straight into Arrow (``stash.arrow_pages``) and the keyset read that asks for the
next page while decoding the last: against the fake over real HTTP.

Arrow must take exactly the answers whose every value has its declared type and refuse the rest
(the JSON path then normalises or fails each bad row); the early request must never change what a
read yields, nor cost a request that is not used.
"""

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.model import ENTITY_SPECS, SCENES, EntitySpec
from stash_pipeline.stash import queries
from stash_pipeline.stash.arrow_pages import decode_page, last_entity_id
from stash_pipeline.stash.client import ReadStopped, StashClient


def _answer(client: StashClient, spec: EntitySpec, per_page: int = 40) -> bytes:
    """The raw body of one page answer, as the server sent it."""
    variables = {"filter": None, "page": 1, "per_page": per_page}
    payload = orjson.dumps({"query": queries.page_query(spec, True), "variables": variables})
    reply = client._post(payload)
    assert reply.status_code == 200
    return reply.content


def _without_nulls(value: Any) -> Any:
    """JSON as Arrow gives it back, minus the keys a union's other members have (NULL in Arrow,
    absent in the answer: an image file has no video codec)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("spec", ENTITY_SPECS, ids=lambda s: s.name)
def test_arrow_decodes_every_type_as_json_does(client: StashClient, spec: EntitySpec) -> None:
    body = _answer(client, spec)
    parsed = orjson.loads(body)["data"][spec.query]
    decoded = decode_page(body, spec)
    if any(c.kind.is_map for c in spec.columns):  # a free-form map: the JSON path takes the page
        assert decoded is None
        return
    assert decoded is not None, f"Arrow refused a clean {spec.name} answer"
    count, rows = decoded
    assert count == parsed["count"]
    assert _without_nulls(rows.to_pylist()) == _without_nulls(parsed[spec.result_key])


@pytest.mark.parametrize("spec", ENTITY_SPECS, ids=lambda s: s.name)
def test_last_entity_id_is_read_off_the_raw_answer(client: StashClient, spec: EntitySpec) -> None:
    body = _answer(client, spec)
    items = orjson.loads(body)["data"][spec.query][spec.result_key]
    assert last_entity_id(body) == int(items[-1]["id"])


def test_last_entity_id_is_not_fooled_by_nested_ids_or_text() -> None:
    body = (
        b'{"data":{"findScenes":{"scenes":[{"id":"7","created_at":"x","details":"{\\"id\\":\\"9\\",'
        b'\\"created_at\\":","tags":[{"id":"3"}]}]}}}'
    )
    assert last_entity_id(body) == 7
    assert last_entity_id(b'{"data":{"findScenes":{"scenes":[]}}}') is None


def _edited(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    answer = orjson.loads(body)
    change(answer)
    return json.dumps(answer).encode()  # orjson refuses integers out of range: json writes them


def _row(index: int, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda answer: answer["data"]["findScenes"]["scenes"][index].update(values)


LOOSE_ANSWERS = {
    "integer as text": _row(3, rating100="85"),
    "fraction for an integer": _row(3, rating100=5.5),
    "whole float for an integer": _row(3, rating100=70.0),
    "boolean for an integer": _row(3, rating100=True),
    "integer out of range": _row(3, o_counter=2**70),
    "number for a boolean": _row(3, organized=1),
    "number for a string": _row(3, title=5),
    "object for a string": _row(3, title={"a": 1}),
    "bare string for a list": _row(3, urls="https://x.example/a"),
    "number in a list of strings": _row(3, urls=[1]),
    "numeric id": _row(3, id=12),
    "numeric id in a relation": _row(3, tags=[{"id": 4}]),
    "fraction in a link extra": _row(3, groups=[{"group": {"id": "1"}, "scene_index": 2.5}]),
    "duplicate id": lambda a: a["data"]["findScenes"]["scenes"].append(a["data"]["findScenes"]["scenes"][0]),
    "null entity": lambda a: a["data"]["findScenes"]["scenes"].append(None),
    "GraphQL errors": lambda a: a.update(errors=[{"message": "boom"}]),
    "no data": lambda a: a.update(data=None),
}


def test_a_pretty_printed_answer_decodes_as_a_compact_one(client: StashClient) -> None:
    """The whole answer is one block for Arrow: line breaks between values do not matter."""
    body = _answer(client, SCENES)
    pretty = json.dumps(orjson.loads(body), indent=2).encode()
    compact, spread = decode_page(body, SCENES), decode_page(pretty, SCENES)
    assert compact is not None
    assert spread is not None
    assert spread[0] == compact[0]
    assert spread[1].equals(compact[1])


@pytest.mark.parametrize("change", LOOSE_ANSWERS.values(), ids=LOOSE_ANSWERS.keys())
def test_arrow_refuses_any_value_off_its_type(client: StashClient, change) -> None:
    body = _answer(client, SCENES)
    assert decode_page(_edited(body, lambda _a: None), SCENES) is not None
    assert decode_page(_edited(body, change), SCENES) is None


def test_a_read_asks_for_the_next_page_early_and_wastes_no_request(
    small_fake: FakeStash, client: StashClient
) -> None:
    early: list[str] = []
    send_early = client._send_early

    def spy(document: str, variables: dict[str, Any]):  # the real method, counted
        early.append(variables["filter"]["id"]["value"])
        return send_early(document, variables)

    client._send_early = spy  # type: ignore[method-assign]
    before = small_fake.request_count
    pages = list(client.iter_pages(SCENES, page_size=30))
    ids = [int(i["id"]) for page in pages for i in page.items]
    assert ids == list(small_fake.store.sorted_ids("scene"))
    # Pages 3..7 were asked for while the page before was decoded, each after that page's last id.
    assert early == [int(page.items[-1]["id"]) for page in pages[1:6]]
    assert small_fake.request_count - before == len(pages) + 1  # + the end-of-read probe; none wasted


def test_a_read_stops_asking_once_its_consumer_says_so(small_fake: FakeStash, client: StashClient) -> None:
    going = True
    before = small_fake.request_count
    pages = client.iter_pages(SCENES, page_size=30, keep_going=lambda: going)
    next(pages)
    next(pages)
    going = False
    with pytest.raises(ReadStopped):
        for _page in pages:
            pass
    # At most the request already sent early for page 3 went out after the consumer said stop.
    assert small_fake.request_count - before <= 3
