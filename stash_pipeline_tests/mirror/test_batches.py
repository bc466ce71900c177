"""How pages become batches (``mirror.sync.shaped_batches``): joined and cut into ``merge_rows`` rows
when they come fast, handed over alone when the next one is slow to come, and the reads told to stop the
moment the merger stops taking batches."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

from stash_pipeline.mirror.sync import shaped_batches
from stash_pipeline.stash.client import Page

WAIT = 30.0  # seconds a test waits for the other thread before it calls the behaviour broken


def _page(number: int, rows: int = 100) -> Page:
    return Page([{"id": str(number * 1000 + i)} for i in range(rows)], number)


def _batches(read: Callable[[Callable[[], bool]], Iterator[Page]], **options: Any) -> Iterator[Any]:
    settings = {"background": True, "join_rows": 300, "flush_seconds": WAIT, **options}
    return shaped_batches(read, lambda rows: rows, **settings)


def test_fast_pages_are_joined_up_to_merge_rows() -> None:
    batches = list(_batches(lambda _keep_going: iter([_page(n) for n in range(10)])))
    assert [batch.pages for batch in batches] == [3, 3, 3, 1]
    assert [batch.rows for batch in batches] == [300, 300, 300, 100]
    joined = [int(row["id"]) for batch in batches for row in batch.shaped]
    assert joined == [n * 1000 + i for n in range(10) for i in range(100)]


def test_pages_are_cut_into_batches_of_exactly_merge_rows() -> None:
    """Pages of 250 rows into batches of 300: every batch but the last holds exactly 300 rows (so
    six of them fill one DuckDB row group), no row is lost or repeated, and each page is counted
    once, in the batch its first row went to."""
    batches = list(_batches(lambda _keep_going: iter([_page(n, rows=250) for n in range(7)])))
    assert [batch.rows for batch in batches] == [300, 300, 300, 300, 300, 250]
    assert [len(batch.shaped) for batch in batches] == [batch.rows for batch in batches]
    assert [batch.pages for batch in batches] == [2, 1, 1, 1, 1, 1]
    joined = [int(row["id"]) for batch in batches for row in batch.shaped]
    assert joined == [n * 1000 + i for n in range(7) for i in range(250)]


def test_a_page_not_followed_soon_is_handed_over_alone() -> None:
    first_batch_seen = threading.Event()

    def read(_keep_going: Callable[[], bool]) -> Iterator[Page]:
        yield _page(1)
        first_batch_seen.wait(WAIT)  # a slow server: page 2 comes only after page 1 was merged
        yield _page(2)

    batches = _batches(read, flush_seconds=0.05)
    first = next(batches)
    first_batch_seen.set()
    assert first.pages == 1
    assert [batch.pages for batch in batches] == [1]


def test_closing_the_batches_stops_the_reads_at_once() -> None:
    asked: list[Callable[[], bool]] = []
    finished = threading.Event()

    def read(keep_going: Callable[[], bool]) -> Iterator[Page]:
        asked.append(keep_going)
        number = 0
        try:
            while keep_going():
                number += 1
                yield _page(number)
        finally:
            finished.set()

    batches = _batches(read)
    assert next(batches).pages == 3
    assert asked[0]() is True
    batches.close()  # what the sync does when it stops: the reads are told, not left running
    assert asked[0]() is False  # the client checks this before every request it sends
    assert finished.wait(WAIT)
