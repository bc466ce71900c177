"""Paging strategies that cannot silently lose rows (docs/stash-behaviour.md §2).

Every query sorts by id and sets ``per_page``.  Three strategies, chosen by the model:
- **keyset** (types with an ``id`` criterion: scenes, images, galleries): pages of ``id > last``,
  the next one asked for while the last is decoded, the end verified by a tail probe;
- **offset, verified** (the other four): pages by offset in id order, the unique ids received
  checked against the count, and rows that shifted between pages re-read from an id snapshot;
- **ids**: ``fetch_by_ids`` for targeted reads (a missing id fails Stash's whole query: dropped and
  asked again), and id sweeps (``sweep_ids``, ``iter_id_pages``) that list every id for deletes.
Anything that cannot be verified raises ``StashConsistencyError``.
"""

import logging
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from typing import Any

import pyarrow as pa

from stash_pipeline.model import EntitySpec
from stash_pipeline.stash import queries
from stash_pipeline.stash.arrow_pages import decode_page, last_entity_id
from stash_pipeline.stash.errors import (
    StashConsistencyError,
    StashNotFoundError,
    StashProtocolError,
)
from stash_pipeline.stash.queries import Selection
from stash_pipeline.stash.transport import JSON, Items, Reply, Transport, _payload

logger = logging.getLogger("stash_pipeline.stash")

Filter = Mapping[str, Any] | None


@dataclass(frozen=True)
class Page:
    """One page of raw entities, as Stash sent them (ids are strings).

    ``rows`` holds them as decoded: an Arrow struct array with every field of its declared type
    (``arrow_pages``), or JSON objects when Arrow refused the answer (a value off its type: the
    shaper's row-by-row path deals with it).  ``items`` gives JSON objects either way.
    ``count`` is the server's total for the filter when this page's request selected it (the first
    page of a keyset read, every page of an offset read), else ``None``.
    """

    rows: Items
    number: int
    count: int | None = None

    @property
    def arrow(self) -> pa.StructArray | None:
        return self.rows if isinstance(self.rows, pa.StructArray) else None

    @cached_property
    def items(self) -> list[JSON]:
        return self.rows.to_pylist() if isinstance(self.rows, pa.StructArray) else self.rows

    def __len__(self) -> int:
        return len(self.rows)


class ReadStopped(Exception):
    """The consumer of a paged read asked it to stop (``keep_going`` answered no): no request is
    sent after that."""


def _and_id(filter: Filter, modifier: str, value: int) -> dict[str, Any]:
    """The caller's filter AND an ``id`` criterion (criteria on one level are ANDed; if the filter
    already has its own ``id`` criterion, nest it under ``AND`` instead of overwriting it)."""
    criterion = {"modifier": modifier, "value": value}
    if not filter:
        return {"id": criterion}
    if "id" not in filter:
        return {**filter, "id": criterion}
    return {"id": criterion, "AND": dict(filter)}


def _keep(items: Items, keep: list[bool]) -> Items:
    """The items whose flag is set."""
    if isinstance(items, pa.StructArray):
        return items.filter(pa.array(keep))
    return [item for item, flag in zip(items, keep, strict=True) if flag]


def _drop(ahead: "tuple[int, Future[Reply]] | None") -> None:
    """Forget a request sent early: not sent yet, it never will be; in flight, it is let finish
    (so requests stay one at a time) and its reply or error ignored."""
    if ahead is not None and not ahead[1].cancel():
        ahead[1].exception()


def _accept_ids(ids: list[int], last: int, read: array, strict: bool, op: str) -> tuple[int, int]:
    """Check one keyset page's ids and append them to ``read``; return (its last id, its unique ids).

    They must be strictly ascending after ``last``.  The same row twice in one answer (a bad JOIN)
    makes a sweep or a stamp check (``strict``) untrustworthy, but a page of entities is kept: the
    shaper keeps one copy
    (docs/architecture.md §2 rules 5 and 7).
    """
    if ids and ids[0] > last and all(a < b for a, b in pairwise(ids)):
        read.extend(ids)  # the usual page: one pass, no set
        return ids[-1], len(ids)
    previous = last
    seen: set[int] = set()
    for entity_id in ids:  # otherwise id by id, to say exactly what is wrong
        if entity_id in seen:
            if strict:
                raise StashConsistencyError(
                    f"{op}: id {entity_id} appears twice in one answer; refusing to trust the sweep"
                )
            logger.warning("%s: id %d appears twice in one page; keeping one copy", op, entity_id)
            continue
        if entity_id <= previous:
            raise StashConsistencyError(
                f"{op}: ids not strictly ascending after id {last} ({entity_id} after "
                f"{previous}): the server ignored the id criterion or the sort"
            )
        previous = entity_id
        seen.add(entity_id)
        read.append(entity_id)
    return previous, len(seen)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _contains(sorted_ids: array, value: int) -> bool:
    i = bisect_left(sorted_ids, value)
    return i < len(sorted_ids) and sorted_ids[i] == value


class PagedReads(Transport):
    """The paging strategies, on top of the transport."""

    def _read_page(
        self,
        spec: EntitySpec,
        document: str,
        variables: JSON,
        *,
        selection: Selection = Selection.FULL,
        sent: "Future[Reply] | None" = None,
        on_reply: Callable[[Reply], None] | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> tuple[Items, Any]:
        """One page of entities (full, ids or stamps) and its answer's ``count`` (``None`` if not
        selected).

        The answer is decoded straight into Arrow when every value has its declared type, else
        parsed as JSON objects (see ``arrow_pages``); both checked as every answer is.  ``sent``:
        this very request, already sent early (``_send_early``); its reply is the first attempt.
        ``on_reply`` sees each reply before it is decoded.  ``keep_going``: asked before sending."""
        op = queries.operation_name(document)
        body = _payload(document, variables, op)

        def attempt() -> Any:
            nonlocal sent
            if sent is not None:
                early, sent = sent, None
                reply = early.result()  # a transport error raised here is retried as usual
            else:
                if keep_going is not None and not keep_going():
                    raise ReadStopped(f"{op}: stopped by its consumer")
                reply = self._post(body)
            if on_reply is not None:
                on_reply(reply)
            return self._answer(reply, op, lambda content: decode_page(content, spec, selection))

        answer = self._with_retries(attempt, op or "query")
        if isinstance(answer, tuple):
            count, rows = answer
            return rows, count
        result = self._result(answer, spec.query, document)
        return self._items(result, spec, document), result.get("count")

    def _send_early(self, document: str, variables: JSON) -> "Future[Reply]":
        """Send a request on a worker thread; its reply is collected by ``_read_page(sent=...)``."""
        if self._early is None:
            self._early = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stash-early")
        return self._early.submit(self._post, _payload(document, variables, queries.operation_name(document)))

    def _tail_probe(self, spec: EntitySpec, filter: Filter, last_id: int) -> tuple[int, int]:
        """(rows matching ``filter``, those of them with id > ``last_id``), one read transaction."""
        document = queries.tail_probe_query(spec)
        data = self.execute(document, {"filter": filter, "tail": _and_id(filter, "GREATER_THAN", last_id)})
        total = self._int(self._result(data, "total", document).get("count"), "total.count")
        tail = self._int(self._result(data, "tail", document).get("count"), "tail.count")
        return total, tail

    # ------------------------------------------------------------------ paged reads
    def iter_pages(
        self,
        spec: EntitySpec,
        filter: Filter = None,
        page_size: int | None = None,
        after_id: int | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> Iterator[Page]:
        """Every entity matching ``filter``, in pages of ``page_size``, each entity exactly once.

        Keyset types (scenes, images, galleries): ``id > last`` ANDed into the filter, page 1, sorted
        by id; only the first page selects ``count``.  A short page is checked to really be the end
        (see ``_keyset_read``).  Rows created during the read appear (higher ids); rows deleted
        before they were reached do not; nothing present throughout is skipped.

        Offset types (performers, studios, tags, groups: Stash offers no id criterion): pages 1..n
        sorted by id.  One page is one read transaction, so a single page with ``len == count`` is a
        consistent snapshot.  With more pages, a delete between two requests shifts later rows
        back and one would be skipped; so at the end one id-only request (same filter, all rows)
        lists what exists now, and ids not yet yielded are fetched with ``ids:`` and yielded in a
        final page.  If that sweep is itself inconsistent, ``StashConsistencyError``.

        An empty first page while its count is > 0 raises ``StashConsistencyError`` either way.

        ``after_id`` (keyset types only) resumes an interrupted read: only ids above it are read,
        and the first page's count covers only those.  ``keep_going`` is asked before every page
        request; once it answers no, ``ReadStopped`` is raised instead of sending one.
        """
        size = page_size or self.page_size
        if size < 1:
            raise ValueError("page_size must be >= 1")
        if after_id is not None and not spec.keyset:
            raise ValueError(f"{spec.name} has no id criterion in Stash: a read cannot resume after an id")
        if spec.keyset:
            pages = self._keyset_read(
                spec,
                filter,
                size,
                selection=Selection.FULL,
                recover=True,
                after_id=after_id or 0,
                keep_going=keep_going,
            )
            for number, (items, count) in enumerate(pages, start=1):
                yield Page(items, number, count)
        else:
            yield from self._offset_pages(spec, filter, size, keep_going)

    def _keyset_read(
        self,
        spec: EntitySpec,
        filter: Filter,
        size: int,
        *,
        selection: Selection,
        recover: bool,
        after_id: int = 0,
        keep_going: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[Items, int | None]]:
        """Keyset paging with a verified end.  Yields (items, count of the first page or None).

        The rule, for reads spanning more than one page (a single page whose length equals the count
        from the same request is exact):
        1. After a short page, one request counts, in one read transaction, the rows matching the
           filter (``total``) and those with ``id > last`` (``tail``).
        2. ``tail > 0``: the short page was not the end (rows created since, or a truncated answer):
           keep paging from ``last``.  An empty page right after a positive tail, twice in a row,
           means the server will not hand those rows over: ``StashConsistencyError``.
        3. ``tail == 0``: rows with id <= last that match now number ``total``.  Every row present
           throughout was read, so ``total`` <= rows read unless rows were skipped, or rows came to
           match the filter during the read (an ``updated_at`` window).  Either way the remedy is the
           same: one consistent request lists the ids <= last that match now; the unread ones are
           fetched (``recover``) or added (sweeps).  If that request is inconsistent itself:
           ``StashConsistencyError``.
        Deletes during the read can hide a skip in step 3 (a row read and then deleted offsets a
        row skipped); that needs a skip *and* a delete in the same read, and the next sweep sees it.
        """
        op = f"{spec.name} keyset read"
        # What this read covers: the filter, above ``after_id`` when resuming.
        scope = _and_id(filter, "GREATER_THAN", after_id) if after_id else filter
        first_doc = queries.paged_query(spec, selection, True)
        next_doc = queries.paged_query(spec, selection, False)
        full = selection is Selection.FULL
        read = array("q")  # ids read, ascending by construction (8 bytes each)
        last = after_id
        first = True
        empty_streak = 0
        total_count: int | None = None
        # The next page's request, sent while this one is decoded: (its ``after`` id, its reply).
        ahead: tuple[int, Future[Reply]] | None = None

        def send_next(reply: Reply) -> None:
            """While the page just received is decoded, ask for the one after it, when there is
            surely one (more rows left than a page holds).  Its ``after`` id is read off the raw
            answer; the decoded page must end with that very id for the reply to be used."""
            nonlocal ahead
            if ahead is not None or reply.status_code != 200 or total_count is None:
                return
            if keep_going is not None and not keep_going():
                return
            if total_count - len(read) <= size:
                return
            guess = last_entity_id(reply.content)
            if guess is not None:
                variables = {"filter": _and_id(filter, "GREATER_THAN", guess), "page": 1, "per_page": size}
                ahead = (guess, self._send_early(next_doc, variables))

        try:
            while True:
                document = first_doc if first else next_doc
                variables = {"filter": _and_id(filter, "GREATER_THAN", last), "page": 1, "per_page": size}
                sent = None
                if ahead is not None:
                    after, early = ahead
                    ahead = None
                    if after == last and not first:
                        sent = early
                    else:
                        _drop((after, early))
                items, raw_count = self._read_page(
                    spec,
                    document,
                    variables,
                    selection=selection,
                    sent=sent,
                    on_reply=send_next if full else None,
                    keep_going=keep_going,
                )
                count = self._int(raw_count, f"{spec.query}.count") if first else None
                if first:
                    total_count = count
                if first and not len(items) and count:
                    raise StashConsistencyError(
                        f"{op}: the first page is empty but Stash reports {count} matching rows"
                    )
                previous, unique = _accept_ids(self._ids_of(items, document), last, read, not full, op)
                if len(items):
                    empty_streak = 0
                    yield items, count
                    last = previous
                else:
                    empty_streak += 1
                if first and unique == count:
                    return  # one request, one read transaction: everything, exactly
                first = False
                if len(items) >= size:
                    continue
                ahead = _drop(ahead)  # a short page after all: what comes next is decided anew
                total, tail = self._tail_probe(spec, scope, last)
                if tail > 0:
                    if empty_streak >= 2:
                        raise StashConsistencyError(
                            f"{op}: Stash reports {tail} rows with id > {last} but returns none of them"
                        )
                    logger.info("%s: %d more rows after id %d; continuing", op, tail, last)
                    continue
                if total > len(read):
                    logger.warning(
                        "%s: %d rows with id <= %d match now but %d were read; re-listing them",
                        op,
                        total,
                        last,
                        len(read),
                    )
                    extra = self._unread_ids(spec, scope, last, read)
                    if extra:
                        if recover:
                            entities, _missing = self.fetch_by_ids(spec, extra)
                            if entities:
                                yield entities, None
                        else:
                            yield [{"id": str(i)} for i in extra], None
                return
        finally:
            _drop(ahead)

    def _unread_ids(self, spec: EntitySpec, filter: Filter, last: int, read: array) -> list[int]:
        """Ids <= ``last`` matching ``filter`` now that are not in ``read`` (sorted ascending)."""
        ids = self._snapshot_ids(spec, _and_id(filter, "LESS_THAN", last + 1))
        return [i for i in ids if not _contains(read, i)]

    def _snapshot_ids(self, spec: EntitySpec, filter: Filter) -> list[int]:
        """All matching ids in ONE request (``per_page: -1``: one read transaction), verified:
        unique and as many as the count from the same answer, else ``StashConsistencyError``."""
        return sorted(self._ids_of(self._snapshot(spec, filter, Selection.IDS), spec.name))

    def _snapshot(self, spec: EntitySpec, filter: Filter, selection: Selection) -> Items:
        """Every matching row (ids or stamps) in ONE request, verified like ``_snapshot_ids``."""
        document = queries.light_query(spec, selection, True)
        items, raw_count = self._read_page(
            spec, document, {"filter": filter, "page": 1, "per_page": -1}, selection=selection
        )
        count = self._int(raw_count, f"{spec.query}.count")
        ids = self._ids_of(items, document)
        unique = set(ids)
        if len(unique) != len(ids) or len(unique) != count:
            what = "id sweep" if selection is Selection.IDS else "stamp check"
            raise StashConsistencyError(
                f"{spec.name} {what}: {len(ids)} ids ({len(unique)} unique) but Stash reports "
                f"count {count} in the same answer; refusing to trust it"
            )
        return items

    def stamps(self, spec: EntitySpec, filter: Filter, page_size: int = 50000) -> pa.Table:
        """``(id, updated_at)`` of every row matching ``filter``, verified like a sweep: a table of
        ``id`` (int64) and ``updated_at`` (the server's text, verbatim; NULL for a row re-listed at
        the end of a keyset read, whose stamp is unknown: callers treat it as changed).

        Keyset types page by id (``_keyset_read``); the others take one ``per_page: -1`` request.
        """
        if spec.keyset:
            pages = [
                items
                for items, _count in self._keyset_read(
                    spec, filter, page_size, selection=Selection.STAMPS, recover=False
                )
            ]
        else:
            pages = [self._snapshot(spec, filter, Selection.STAMPS)]
        ids: list[int] = []
        texts: list[str | None] = []
        for items in pages:
            ids.extend(self._ids_of(items, spec.name))
            if isinstance(items, pa.StructArray):
                texts.extend(items.field("updated_at").to_pylist())
            else:
                texts.extend(
                    value if isinstance(value := item.get("updated_at"), str) else None for item in items
                )
        return pa.table({"id": pa.array(ids, pa.int64()), "updated_at": pa.array(texts, pa.string())})

    def _offset_pages(
        self, spec: EntitySpec, filter: Filter, size: int, keep_going: Callable[[], bool] | None = None
    ) -> Iterator[Page]:
        op = f"{spec.name} offset read"
        document = queries.page_query(spec, True)
        seen: set[int] = set()
        number = 0
        page = 1
        while True:
            items, raw_count = self._read_page(
                spec, document, {"filter": filter, "page": page, "per_page": size}, keep_going=keep_going
            )
            count = self._int(raw_count, f"{spec.query}.count")
            if page == 1 and not len(items) and count:
                raise StashConsistencyError(
                    f"{op}: the first page is empty but Stash reports {count} matching rows"
                )
            keep: list[bool] = []
            for entity_id in self._ids_of(items, document):
                keep.append(entity_id not in seen)
                seen.add(entity_id)
            fresh = items if all(keep) else _keep(items, keep)
            if len(fresh):
                number += 1
                yield Page(fresh, number, count)
            if page == 1 and len(items) == count and len(seen) == count:
                return  # a single request: a consistent snapshot
            if len(items) < size or page * size >= count:
                break
            page += 1
        # More than one page (or an inconsistent single page): verify against one id sweep.
        missing = [i for i in self._snapshot_ids(spec, filter) if i not in seen]
        if missing:
            logger.warning(
                "%s: %d rows were not on any page (shifted by deletes?); fetching", op, len(missing)
            )
            entities, _gone = self.fetch_by_ids(spec, missing)
            if entities:
                yield Page(entities, number + 1, None)

    def sweep_ids(self, spec: EntitySpec, filter: Filter = None, page_size: int = 50000) -> list[int]:
        """All ids matching ``filter``, sorted ascending, verified (the basis of delete detection).

        Offset types: one ``per_page: -1`` request (one read transaction); unique ids must equal the
        count in the same answer.  Keyset types: keyset pages of ``page_size`` ids with the verified
        end of ``_keyset_read`` (a single page must match its own count; a multi-page sweep must
        reach a point where no row beyond the last id exists and every row <= the last id that
        exists now was read or is re-listed).  A short or unverifiable sweep raises
        ``StashConsistencyError``: callers must never mass-delete on it.
        """
        ids: list[int] = []
        for page in self.iter_id_pages(spec, filter, page_size):
            ids.extend(page)
        unique = sorted(set(ids))
        if len(unique) != len(ids):
            raise StashConsistencyError(f"{spec.name} id sweep returned duplicate ids")
        return unique

    def iter_id_pages(
        self, spec: EntitySpec, filter: Filter = None, page_size: int = 50000
    ) -> Iterator[list[int]]:
        """The verified sweep of ``sweep_ids``, one page of ids at a time (memory: one page).

        Each page is strictly ascending and above every id of the pages before it, except a final
        re-listed page (ids below the last one that were not on any page: see ``_keyset_read``).
        Offset types: one page, sorted.  The sweep is verified only once the iterator is exhausted:
        callers must not delete anything before that.
        """
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if not spec.keyset:
            yield self._snapshot_ids(spec, filter)
            return
        for items, _count in self._keyset_read(
            spec, filter, page_size, selection=Selection.IDS, recover=False
        ):
            yield self._ids_of(items, spec.name)

    def _pick_by_ids(self, spec: EntitySpec, wanted: list[int]) -> tuple[list[JSON], list[int]]:
        """For a query without ``ids`` (findSceneMarkers before v0.28): every row read, the wanted
        kept.  Such types are small, and rows are asked for by id only after a check found some."""
        if not wanted:
            return [], []
        chosen = set(wanted)
        found: dict[int, JSON] = {}
        for page in self.iter_pages(spec, None):
            for item in page.items:
                if (entity_id := self._id(item, spec.query)) in chosen:
                    found[entity_id] = item
        return [found[i] for i in wanted if i in found], sorted(chosen - set(found))

    def fetch_by_ids(self, spec: EntitySpec, ids: Iterable[int | str]) -> tuple[list[JSON], list[int]]:
        """Full entities for ``ids`` (deduplicated; Stash rejects duplicates), in chunks.

        One missing id fails a whole ``ids:`` query ("<type> with id N not found"), so N is dropped
        and the rest asked again.  Returns (entities in input order, missing ids sorted).
        """
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not spec.by_ids:
            return self._pick_by_ids(spec, wanted)
        document = queries.by_ids_query(spec)
        found: list[JSON] = []
        missing: list[int] = []
        for chunk in _chunks(wanted, self.ids_chunk_size):
            pending = list(chunk)
            while pending:
                try:
                    data = self.execute(document, {"ids": [str(i) for i in pending]})
                except StashNotFoundError as exc:
                    if exc.entity_id not in pending:
                        raise StashProtocolError(
                            f"{spec.name} by ids: Stash says id {exc.entity_id} is missing, "
                            "but it was not asked for"
                        ) from exc
                    pending.remove(exc.entity_id)
                    missing.append(exc.entity_id)
                    continue
                items = self._items(self._result(data, spec.query, document), spec, document)
                got = [self._id(item, document) for item in items]
                if len(set(got)) != len(got) or not set(got) <= set(pending):
                    raise StashProtocolError(f"{spec.name} by ids: the answer does not match the ids asked")
                found.extend(items)
                # Not an error Stash would make, but never let an id vanish silently.
                missing.extend(sorted(set(pending) - set(got)))
                break
        return found, sorted(missing)
