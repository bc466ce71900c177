"""How pages become batches (``mirror.sync.shaped_batches``): joined and cut into ``merge_rows`` rows
when they come fast, handed over alone when the next one is slow to come, never mixed across reads, the
next read started while the last one's batches are still merging, and the reads told to stop the moment
the merger stops taking batches."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

from stash_pipeline.mirror.sync import shaped_batches
from stash_pipeline.stash.client import Page

WAIT = 30.0  # seconds a test waits for the other thread before it calls the behaviour broken


def _page(number: int, rows: int = 100) -> Page:
    return Page([{"id": str(number * 1000 + i)} for i in range(rows)], number)


Read = Callable[[Callable[[], bool]], Iterator[Page]]


def _batches(*reads: Read, **options: Any) -> Iterator[Any]:
    settings = {"background": True, "join_rows": 300, "flush_seconds": WAIT, **options}
    return shaped_batches(reads, lambda rows: rows, **settings)


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


def test_batches_never_mix_reads_and_say_which_read_they_come_from() -> None:
    main = [_page(n) for n in range(4)]  # 400 rows: one batch of 300, then the last 100 alone
    catch_up = [_page(n) for n in range(10, 12)]
    for background in (True, False):
        batches = list(_batches(lambda _k: iter(main), lambda _k: iter(catch_up), background=background))
        by_read = [(batch.read, [int(row["id"]) for row in batch.shaped]) for batch in batches]
        main_ids = [int(row["id"]) for page in main for row in page.rows]
        catch_up_ids = [int(row["id"]) for page in catch_up for row in page.rows]
        assert [ids for read, ids in by_read if read == 0] == (
            [main_ids[:300], main_ids[300:]]
            if background
            else [main_ids[i : i + 100] for i in range(0, 400, 100)]
        )
        assert [ids for read, ids in by_read if read == 1] == (
            [catch_up_ids] if background else [catch_up_ids[:100], catch_up_ids[100:]]
        )


def test_the_next_read_starts_while_the_last_batches_of_the_previous_one_are_merging() -> None:
    """The catch-up read of a full sync is asked for as soon as the main read's last page is in, not
    once the merger has worked through the main read's batches."""
    catch_up_asked = threading.Event()

    def catch_up(_keep_going: Callable[[], bool]) -> Iterator[Page]:
        catch_up_asked.set()
        yield _page(99)

    batches = _batches(lambda _k: iter([_page(1)]), catch_up)
    first = next(batches)  # the merger holds the main read's only batch and asks for nothing more
    assert (first.read, first.pages) == (0, 1)
    assert catch_up_asked.wait(WAIT)
    assert [(batch.read, batch.pages) for batch in batches] == [(1, 1)]
