"""The generic sync of one entity type: fetch → shape → merge, then deletions and repairs.

One code path serves every type and every mode; the entity spec says what differs.

Modes
- ``full``: every entity (no filter); the read, verified at its end like an id sweep, is the listing:
  local ids it did not receive are deleted (mark and sweep: nothing is deleted unless the read is
  complete and passes the guards), and a count afterwards catches deletes behind the read.
- ``window``: the entities whose ``updated_at`` falls in a partition window (date-only text bounds).
- ``incremental``: from the stored cursor minus the overlap window (or an explicit ``since``), after
  a stamp check (``mirror.stamps``) that finds the rows the text order hides when the server's
  offset moved; it also decides that nothing changed, and the run is skipped.
- ``specific``: the given ids (targeted resync); ids Stash no longer has are deleted locally.

Deletes and merges bump nothing in Stash, so after the upserts a count mismatch triggers an id
sweep; entities that referenced a vanished id are re-fetched (tag/performer merges), and a bumped
entity whose membership is listed by the other side has it re-read (``EntitySpec.members_from``:
``addGalleryImages`` bumps only the gallery).
"""

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from stash_pipeline.mirror.activity import changed_activity
from stash_pipeline.mirror.changes import mark_changed
from stash_pipeline.mirror.db import GroupCommit, failed_commit, fetch_scalar, unregister
from stash_pipeline.mirror.evolution import refill_message
from stash_pipeline.mirror.frames import PageShaper, ShapedPage
from stash_pipeline.mirror.gc_pauses import fewer_gc_pauses
from stash_pipeline.mirror.links import changed_owners, mirror_links, server_links
from stash_pipeline.mirror.merge import (
    EntityMerger,
    LogContext,
    PageOutcome,
    delete_entities,
    find_referrers,
    prune_embedded,
)
from stash_pipeline.mirror.report import SyncReport
from stash_pipeline.mirror.schema import ensure_schema
from stash_pipeline.mirror.stamps import (
    StampCheck,
    changed_linked,
    compare_stamps,
    owned_files_filter,
    owners_of,
)
from stash_pipeline.mirror.state import finish_run_row, read_state, start_run_row, update_state
from stash_pipeline.mirror.windows import (
    TextWindow,
    max_text,
    overlap_bound,
    since_criterion,
    stamp_bound,
)
from stash_pipeline.model import SPECS_BY_NAME, EntitySpec
from stash_pipeline.settings import Settings
from stash_pipeline.stash.client import Page

log = logging.getLogger("stash_pipeline.sync")

SYNC_TYPES = ("full", "incremental", "window", "specific")


class SyncAborted(RuntimeError):
    """A guard refused to apply a suspicious answer; nothing was deleted."""


class SyncCancelled(RuntimeError):
    """The run was asked to stop; every committed page is kept and the next run resumes."""


@dataclass(frozen=True)
class SyncOptions:
    page_size: int = Settings.page_size
    overlap_seconds: float = Settings.overlap_seconds
    max_delete_fraction: float = Settings.max_delete_fraction
    delete_guard_min_rows: int = 10  # below this many deletes the fraction guard does not apply
    allow_mass_delete: bool = False
    # > 0: fetch and shape on a background thread while merging (see ``shaped_batches``).
    prefetch: int = 1
    # Pages are shaped and merged together in batches of this many rows, or fewer after
    # ``flush_seconds`` (see ``shaped_batches``): a sixth of a DuckDB row group.
    merge_rows: int = Settings.merge_rows
    flush_seconds: float = 0.5
    # Batches share one transaction until it holds this many rows, or has been open
    # ``commit_seconds`` (a read too short to fill one commits batch by batch).  A whole row group
    # per commit is written compressed, straight to the file; 20,000 rows a commit went through the
    # write-ahead log and were compressed again at each checkpoint: DuckDB's part of a full sync of
    # 1M images took 4.0 s instead of 2.8 s.
    commit_rows: int = Settings.commit_rows
    commit_seconds: float = 2.0


@dataclass
class SyncRequest:
    entity_type: str
    mode: str
    run_id: str
    window: TextWindow = field(default_factory=lambda: TextWindow(None, None))
    since: str | None = None
    ids: list[int] = field(default_factory=list)


ProgressFn = Callable[[SyncReport, int | None], None]


@dataclass
class Batch:
    """Pages shaped together, ready to merge in one transaction."""

    shaped: ShapedPage
    rows: int  # rows received (duplicates included)
    pages: int
    read: int  # which of ``shaped_batches``' reads it came from


@dataclass(frozen=True)
class _Merged:
    """A merged batch's counts, added to the report when its transaction commits."""

    rows: int
    pages: int
    duplicates: int
    outcome: PageOutcome


class InBackground:
    """An iterator run on its own thread, at most ``maxsize`` items ahead of its consumer.

    ``produce(stop)`` makes the iterator; ``stop`` is set when the consumer closes, so a producer
    that asks a server for more can stop asking at once rather than after its next item.  An error
    the iterator raises is raised to the consumer.  ``close()`` stops and waits for the thread.
    """

    _END = object()

    def __init__(
        self,
        produce: Callable[[threading.Event], Iterator[Any]],
        *,
        maxsize: int,
        name: str,
        stop: threading.Event | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self._ready: queue.Queue = queue.Queue(maxsize=maxsize)
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _run(self, produce: Callable[[threading.Event], Iterator[Any]]) -> None:
        items: Iterator[Any] | None = None
        try:
            items = produce(self.stop)
            for item in items:
                if self.stop.is_set():
                    break
                self._ready.put((item, None))
            self._ready.put((self._END, None))  # also when stopped: the consumer may be waiting
        except BaseException as exc:  # handed to the consumer, raised there
            self._ready.put((None, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def get(self, timeout: float | None = None) -> Any:
        """The next item; ``queue.Empty`` if none came within ``timeout``; ``StopIteration`` at
        the end."""
        if self._done:
            raise StopIteration
        item, error = self._ready.get(timeout=timeout)
        if error is not None:
            self._done = True
            raise error
        if item is self._END:
            self._done = True
            raise StopIteration
        return item

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    def close(self) -> None:
        self.stop.set()
        while self._thread.is_alive():
            try:
                self._ready.get_nowait()  # unblock a producer waiting on a full queue
            except queue.Empty:
                self._thread.join(timeout=0.05)


def joined_rows(pages: list[Any]) -> Any:
    """The rows of several pages as one: Arrow arrays concatenated when every page was decoded by
    Arrow (no copy of the values), else JSON objects."""
    if len(pages) == 1:
        return pages[0].rows
    if all(page.arrow is not None for page in pages):
        return pa.concat_arrays([page.arrow for page in pages])
    return [item for page in pages for item in page.items]


Read = Callable[[Callable[[], bool]], Iterator[Any]]


@dataclass(frozen=True)
class _ReadEnd:
    """Marks the end of one of ``shaped_batches``' reads in the page stream."""

    read: int


def shaped_batches(
    reads: Sequence[Read],
    shape: Callable[[Any], ShapedPage],
    *,
    background: bool,
    join_rows: int,
    flush_seconds: float,
) -> Iterator[Batch]:
    """Pages from each ``read(keep_going)`` in turn, shaped and handed over in batches of
    ``join_rows`` rows.  A batch never holds pages of two reads.

    A DuckDB statement, a commit and a Polars frame cost about the same for 1,000 rows as for
    20,000, and a full sync used to spend most of its time on these per-page costs: pages are
    joined, and cut, into batches of exactly ``join_rows`` rows (so that the merger's transactions
    can fill DuckDB row groups exactly, see ``SyncOptions.commit_rows``), or handed over short once
    their first page has waited ``flush_seconds`` (a slow server's pages are still committed, and
    the run can be stopped, page by page).

    ``background``: three stages overlap.  Pages are read on one thread (up to four ahead, the
    client asking for the next one while it decodes the last), shaped on a second, and merged by
    the caller in DuckDB, which releases the GIL.  The next read starts as soon as the last one
    ends, while the merger still works through its last batches (a full sync's catch-up read used
    to wait for them: 60 ms of 0.6 s at 100k images).  Without it, one page is one batch.
    """
    if not background:
        for number, read in enumerate(reads):
            for page in read(lambda: True):
                yield Batch(shape(page.rows), len(page), 1, number)
        return

    def pages(stop: threading.Event) -> Iterator[Any]:
        for number, read in enumerate(reads):
            yield from read(lambda: not stop.is_set())
            yield _ReadEnd(number)

    def shaping(stop: threading.Event) -> Iterator[Batch]:
        reader = InBackground(pages, maxsize=4, name="stash-read-ahead", stop=stop)
        with contextlib.closing(reader):
            pending: list[Any] = []  # pages, the first of them perhaps the rest of a cut one
            rows = pages_in = 0
            deadline = 0.0
            number = 0  # the read the pending pages came from
            while True:
                try:
                    page = reader.get(max(0.0, deadline - time.monotonic()) if pending else None)
                except queue.Empty:  # the batch waited long enough
                    page = None
                except StopIteration:
                    break
                ended = isinstance(page, _ReadEnd)
                if page is not None and not ended:
                    if not pending:
                        deadline = time.monotonic() + flush_seconds
                    pending.append(page)
                    rows += len(page)
                    pages_in += 1
                elif pending:  # the batch waited long enough, or its read ended
                    yield Batch(shape(joined_rows(pending)), rows, pages_in, number)
                    pending, rows, pages_in = [], 0, 0
                if ended:
                    number = page.read + 1
                while rows >= join_rows:
                    joined = joined_rows(pending)
                    rest = rows - join_rows
                    yield Batch(shape(joined[:join_rows] if rest else joined), join_rows, pages_in, number)
                    pending = [Page(joined[join_rows:], 0)] if rest else []
                    rows, pages_in = rest, 0
                    deadline = time.monotonic() + flush_seconds

    stop = threading.Event()  # one for both threads: closing stops the reads at once
    with contextlib.closing(InBackground(shaping, maxsize=1, name="stash-shape", stop=stop)) as batches:
        yield from batches


class ListedIds:
    """The ids a full read received (stored, or logged as failed), 8 bytes each.

    ``complete`` is False once a row came without a usable id: the listing then proves nothing.
    """

    def __init__(self) -> None:
        self._chunks: list[pa.Array] = []
        self.complete = True

    def add(self, shaped: ShapedPage) -> None:
        ids = shaped.entities["id"].to_arrow()
        self._chunks.extend(ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids])
        failed = [i for i, _why in shaped.failures]
        if None in failed:
            self.complete = False
        elif failed:
            self._chunks.append(pa.array(failed, pa.int64()))

    def ids(self) -> pa.ChunkedArray:
        return pa.chunked_array(self._chunks, pa.int64())


class EntitySync:
    """Syncs one entity type between a Stash client and an open DuckDB connection."""

    def __init__(
        self,
        spec: EntitySpec,
        client: Any,
        con: duckdb.DuckDBPyConnection,
        options: SyncOptions | None = None,
        *,
        progress: ProgressFn | None = None,
        should_stop: Callable[..., bool] | None = None,
    ) -> None:
        self.client = client
        self.con = con
        self.options = options or SyncOptions()
        ensure_schema(con)  # first: the mirror is current even when Stash then refuses the run
        # The type as this server can be asked for it: what it lacks is left NULL (``stash.features``).
        adapted = client.adapt(spec)
        self.spec = adapted.spec
        self.unoffered = [u.describe() for u in adapted.unoffered]
        self.stash_version = client.features().version
        self.shaper = PageShaper(self.spec)
        self.merger = EntityMerger(self.spec)
        self.progress = progress
        # should_stop() is asked between batches (it may answer from a cache); should_stop(force=True)
        # when the sync failed, so that an interrupt that surfaced as a plain error from inside a
        # library call is still recorded as the cancellation it was.
        self.should_stop = should_stop or (lambda force=False: False)

    # ------------------------------------------------------------------ entry point
    def run(self, request: SyncRequest) -> SyncReport:
        with fewer_gc_pauses():
            return self._run(request)

    def _run(self, request: SyncRequest) -> SyncReport:
        started = time.perf_counter()
        state = read_state(self.con, self.spec.name)
        mode = request.mode
        if mode not in SYNC_TYPES:
            raise ValueError(f"unknown sync type {mode!r}; expected one of {SYNC_TYPES}")
        if mode == "incremental" and not (request.since or state.cursor):
            mode = "full"  # nothing synced yet: an incremental run has no cursor to start from
        if mode == "window" and request.window.is_open:
            mode = "full"
        refill = list(state.refill_columns or [])
        if refill and mode in ("incremental", "window"):
            # An upgrade added columns (or link tables) to this type: only a read of every row fills
            # them, so this run reads every row, whatever it was asked for.
            mode = "full"
        if refill and mode == "full":
            log.info("%s", refill_message(self.spec.name, refill))
        report = SyncReport(self.spec.name, mode, request.run_id, cursor_before=state.cursor)
        report.stash_version = self.stash_version
        report.lists_files = bool(self.spec.embedded_relations) and self.client.features().lists_files
        report.not_offered = self.unoffered
        if self.unoffered:
            log.info(
                "%s: not offered by Stash %s: %s",
                self.spec.name,
                self.stash_version,
                ", ".join(self.unoffered),
            )
        if mode == "full":
            report.filled_columns = refill
        criterion = self._criterion(mode, request, state.cursor)
        report.window = _describe(mode, request, criterion)
        now = datetime.now(UTC)
        with self._txn():
            start_run_row(
                self.con,
                run_id=request.run_id,
                entity_type=self.spec.name,
                sync_type=mode,
                started_at=now,
                window=(request.window.lower, request.window.upper) if mode == "window" else (None, None),
                cursor_before=state.cursor,
            )
        logctx = LogContext(request.run_id, mode, now)
        try:
            if mode == "specific":
                self._sync_ids(request.ids, report, logctx)
            else:
                check_stamps = mode == "incremental" and not request.since
                self._sync_filtered(mode, criterion, state, report, logctx, check_stamps)
            report.status = "partial" if report.failed else "success"
        except BaseException as exc:
            # A termination (Dagster raises a BaseException into the step, like Ctrl-C) is a
            # cancellation, not a failure: the committed pages stand and the next run resumes.
            # DuckDB turns an interrupt that lands inside a statement into its InterruptException.
            stopped = (
                isinstance(exc, SyncCancelled | duckdb.InterruptException)
                or not isinstance(exc, Exception)
                or self._stop_requested()
            )
            report.status = "cancelled" if stopped else "failed"
            report.error = str(exc)[:1000] or ("run terminated" if stopped else type(exc).__name__)
            report.seconds = time.perf_counter() - started
            if failed_commit(exc):  # write nothing more: the next run finds this one unfinished
                log.error("%s: the mirror could not store a transaction: %s", self.spec.name, exc)
                raise
            self._finish(report, state, final=False)
            raise
        if self.spec.embedded_relations and mode == "full":
            # Each merge prunes the files it unlinked (``prune_unlinked``); a full sync also sweeps
            # every file no row links, whatever left it.
            with self._txn():
                prune_embedded(self.con, self.spec, logctx)
        report.seconds = time.perf_counter() - started
        self._finish(report, state, final=True)
        return report

    # ------------------------------------------------------------------ filtered modes
    def _criterion(self, mode: str, request: SyncRequest, cursor: str | None) -> dict | None:
        if mode == "window":
            return request.window.criterion()
        if mode == "incremental":
            bound = request.since or overlap_bound(cursor or "", self.options.overlap_seconds)
            return since_criterion(bound)
        return None

    def _filter(self, criterion: dict | None) -> dict | None:
        return {"updated_at": criterion} if criterion else None

    def _sync_filtered(
        self,
        mode: str,
        criterion: dict | None,
        state: Any,
        report: SyncReport,
        logctx: LogContext,
        check_stamps: bool = False,
    ) -> None:
        type_filter = self._filter(criterion)
        counts = self.client.count_many({self.spec.name: type_filter})
        # Where the next stamp check may start: only after a read that saw everything written
        # before it (a run from an explicit ``since`` did not).
        report.server_time = self.client.server_time if mode == "full" or check_stamps else None
        changed_count = counts[self.spec.name]
        report.stash_count = counts.get(f"{self.spec.name}_total", changed_count)
        nothing_since = mode == "incremental" and not check_stamps and not changed_count
        if nothing_since and report.stash_count == self._local_count():  # and none deleted
            report.skipped = True
            report.local_count = report.stash_count
            return
        if self.spec.activity_totals and (mode == "full" or check_stamps):
            # Before the rows are read: an event after this moves the totals the sensor compares.
            report.activity_totals = self.client.activity_totals()
        hidden: tuple[int, ...] = ()  # changed rows the read of the window cannot see
        only_ids: tuple[int, ...] | None = None  # the stamps name every changed row: read just them
        if check_stamps and criterion is not None:
            check = self._stamp_check(state, criterion["value"])
            report.stamps_listed, report.stamps_changed = check.listed, check.differing
            activity = self._activity_check()
            report.activity_changed = len(activity) if self.spec.unbumped_columns else None
            relinked = self._links_check()
            report.links_changed = len(relinked) if self.spec.unbumped_relations else None
            activity = tuple(sorted(set(activity) | set(relinked)))
            report.files_changed, refiled = self._files_check(check.bound, state.server_time)
            activity = tuple(sorted(set(activity) | set(refiled)))
            if not check.changed and not activity and report.stash_count == self._local_count():
                report.skipped = True
                report.local_count = report.stash_count
                return
            in_window = set(check.changed) - set(check.below)
            hidden = tuple(sorted(set(check.below) | (set(activity) - in_window)))
            wanted = tuple(sorted(set(check.changed) | set(activity)))
            if self._stamps_cover_window(check, criterion["value"], len(wanted), changed_count):
                only_ids, hidden = wanted, ()
            if activity:
                log.info(
                    "%s: %d rows with new plays, O counts, activity or links (no bump in Stash); "
                    "reading them by id",
                    self.spec.name,
                    len(activity),
                )
            if check.unsure:
                log.info(
                    "%s: %d rows written in the second the last run began, or since: their stamps "
                    "cannot tell a later edit in that second; reading them again",
                    self.spec.name,
                    len(check.unsure),
                )
            if check.below:
                log.info(
                    "%s: %d rows changed with updated_at below the cursor's window (the server's UTC "
                    "offset moved west?); reading them by id",
                    self.spec.name,
                    len(check.below),
                )
        # A paged read is no snapshot: a row edited after its page was read would be missed.
        # Note the newest updated_at now; after the pages, re-read whatever changed since.  The
        # newest row is among the read's own rows, so the server sorts only those (an incremental
        # read's few, not the whole table); if they all vanished since the count, re-read them all.
        catch_up_from = None
        if only_ids is None and mode in ("full", "incremental") and changed_count > self.options.page_size:
            catch_up_from = self.client.latest_updated_at(self.spec, type_filter) or (
                criterion["value"] if criterion else None
            )
        # A read by ids saves no position a later window read could resume from.
        resume_key = f"{mode}|{criterion}" + ("|ids" if only_ids is not None else "")
        after_id = None
        if only_ids is None and self.spec.keyset and state.resume_key == resume_key and state.resume_after_id:
            after_id = state.resume_after_id
            # The position is committed with the pages it ends: rows up to it must be here.  If
            # they are not (a failed write left the position without its pages), start over.
            stored = fetch_scalar(self.con, f"SELECT max(id) FROM {self.spec.name}")
            if stored is None or stored < after_id:
                log.warning(
                    "%s: the saved position (after id %s) is ahead of the stored rows (up to id %s): "
                    "reading from the start",
                    self.spec.name,
                    after_id,
                    stored,
                )
                after_id = None
        if after_id is not None:
            log.info("%s: resuming %s sync after id %s", self.spec.name, mode, after_id)
            if mode in ("full", "incremental") and state.resume_cursor:
                # The rows up to after_id were read by the interrupted run and are not read again;
                # any of them edited since carries an updated_at at or after the newest string that
                # run received.  Re-read from there (minus the overlap) after the resumed pages.
                since_resume = overlap_bound(state.resume_cursor, self.options.overlap_seconds)
                catch_up_from = since_resume if catch_up_from is None else min(catch_up_from, since_resume)
        pending_cursor = state.resume_cursor if after_id else None
        last_id = after_id
        # A full read from the first id lists every id Stash has: it is the sweep (mark and sweep).
        listed = ListedIds() if mode == "full" and after_id is None else None
        touched_members: set[int] = set()
        resume = {"after_id": after_id} if after_id else {}
        merged: list[_Merged] = []  # in the open transaction

        def save_position() -> None:
            update_state(
                self.con,
                self.spec.name,
                resume_key=resume_key,
                resume_after_id=last_id,
                resume_cursor=pending_cursor,
            )

        def count_committed() -> None:
            for done in merged:
                report.pages += done.pages
                report.fetched += done.rows
                report.duplicates += done.duplicates
                report.add(done.outcome)
            merged.clear()
            if self.progress:
                self.progress(report, changed_count)

        def read(read_filter: dict | None, **resume: int) -> Read:
            return lambda keep_going: self.client.iter_pages(
                self.spec, read_filter, page_size=self.options.page_size, keep_going=keep_going, **resume
            )

        # The main read, then (once its last page is in, while its last batches merge) a catch-up
        # read of the rows changed since it began.
        if only_ids is not None:
            changed_count = len(only_ids)
            reads = [lambda keep_going: self._pages_by_ids(list(only_ids))]
        else:
            reads = [read(type_filter, **resume)]
        if hidden:
            reads.append(lambda keep_going: self._pages_by_ids(list(hidden)))
        if catch_up_from is not None:
            log.info("%s: re-reading rows updated since %s after the read", self.spec.name, catch_up_from)
            reads.append(read(self._filter(since_criterion(catch_up_from))))
        batches = shaped_batches(
            reads,
            lambda items: self.shaper.shape(items, logctx.now),
            background=self.options.prefetch > 0,
            join_rows=self.options.merge_rows,
            flush_seconds=self.options.flush_seconds,
        )
        txn = GroupCommit(
            self.con,
            rows=self.options.commit_rows,
            seconds=self.options.commit_seconds,
            before_commit=save_position,
            after_commit=count_committed,
        )
        expected = changed_count  # rows the main read still expects (a catch-up read expects few)
        with contextlib.closing(batches), txn:
            for batch in batches:
                expected = expected - batch.rows if batch.read == 0 else 0
                if self.should_stop():
                    txn.commit()
                    raise SyncCancelled(
                        f"{self.spec.name}: stopped after {report.pages} pages; the next run resumes"
                    )
                with txn.writing(batch.rows, max(0, expected)):
                    outcome = self.merger.merge(self.con, batch.shaped, logctx)
                    merged.append(self._note_merged(batch, outcome, listed, touched_members))
                    pending_cursor = max_text(pending_cursor, batch.shaped.max_updated_at)
                    last_id = _last_id(batch.shaped, last_id)
        report.cursor_after = (
            max_text(state.cursor, pending_cursor) if mode in ("full", "incremental") else state.cursor
        )
        if touched_members and mode != "full":
            self._refresh_members(sorted(touched_members), logctx)
        self._reconcile_deletes(mode, report, logctx, listed)

    def _note_merged(
        self, batch: Batch, outcome: PageOutcome, listed: "ListedIds | None", touched_members: set[int]
    ) -> "_Merged":
        """What a merged batch leaves for the rest of the run: its ids in the listing of a full read
        and its galleries to refresh (both read only once the read is complete), and the counts the
        report takes once its transaction is committed."""
        if listed is not None:
            listed.add(batch.shaped)
        if self.spec.members_from is not None:
            touched_members.update(outcome.created)
            touched_members.update(outcome.updated)
        return _Merged(batch.rows, batch.pages, batch.shaped.duplicates, outcome)

    def _stamp_check(self, state: Any, window: str) -> StampCheck:
        """The stamps of every row written since the previous run began (and of the overlap
        window), compared with the mirror's (``mirror.stamps``)."""
        bound = stamp_bound(state.server_time, state.cursor, self.options.overlap_seconds) or window
        stamps = self.client.stamps(self.spec, self._filter(since_criterion(bound)))
        return compare_stamps(self.con, self.spec, bound, stamps, window, read_since=state.server_time)

    def _stamps_cover_window(self, check: StampCheck, window: str, wanted: int, window_rows: int) -> bool:
        """Whether reading only the rows the checks found changed (by id) replaces the read of the
        overlap window: the stamp listing reached at least as low as the window (so every row in
        it was compared), the type can be read by ids, and they are fewer than the window holds
        (a big library's window re-reads rows it already has: 1,080 unchanged scenes at 200k).
        A row edited after the listing is above the next run's stamp bound, as with a paged read."""
        return self.spec.by_ids and check.bound <= window and 2 * wanted <= window_rows

    def _activity_check(self) -> tuple[int, ...]:
        """Rows whose plays, O counts or activity changed (``mirror.activity``); none when the type
        has no such columns."""
        if not self.spec.unbumped_columns:
            return ()
        return changed_activity(self.con, self.spec, self.client.activity(self.spec))

    def _links_check(self) -> tuple[int, ...]:
        """Rows whose unbumped links changed (``mirror.links``); none when the type has none."""
        if not self.spec.unbumped_relations:
            return ()
        server = server_links(self.spec, self.client.links(self.spec))
        return changed_owners(server, mirror_links(self.con, self.spec))

    def _files_check(self, bound: str, read_since: datetime | None) -> tuple[int | None, tuple[int, ...]]:
        """Files of this type's rows changed without a bump of the row (a rename, a rescan: only
        the file's own updated_at moves): their stamps since ``bound``, compared with the mirror's.
        Returns how many differ and the rows holding them, which the run re-reads by id (the row's
        own columns from its primary file, ``scenes.path``, move with it).  None where the server
        cannot list files (before v0.29.3): there its full syncs carry such changes."""
        if not self.spec.embedded_relations or not self.client.features().lists_files:
            return None, ()
        changed: set[int] = set()
        unsure: set[int] = set()
        owners: set[int] = set()
        for rel in self.spec.embedded_relations:
            stamps = self.client.stamps(rel.embedded, owned_files_filter(self.spec, since_criterion(bound)))
            check = changed_linked(self.con, rel, stamps, read_since)
            changed.update(check.changed)
            unsure.update(check.unsure)
            owners.update(owners_of(self.con, rel, list(check.changed)))
        changed -= unsure
        if changed:
            log.info(
                "%s: %d files renamed or rescanned (no bump of their owner); reading their %d rows",
                self.spec.name,
                len(changed),
                len(owners),
            )
        return len(changed), tuple(sorted(owners))

    def _pages_by_ids(self, ids: list[int]) -> Iterator[Page]:
        """The given rows in full, as one page (rows gone since are left to the delete check)."""
        found, _missing = self.client.fetch_by_ids(self.spec, ids)
        if found:
            yield Page(found, 1)

    # ------------------------------------------------------------------ specific ids
    def _sync_ids(self, ids: Iterable[int], report: SyncReport, logctx: LogContext) -> None:
        wanted = sorted(set(ids))
        found, missing = self.client.fetch_by_ids(self.spec, wanted)
        report.fetched = len(found)
        if found:
            shaped = self.shaper.shape(found, logctx.now)
            with self._txn():
                outcome = self.merger.merge(self.con, shaped, logctx)
            report.add(outcome)
            report.pages = 1
            if self.spec.members_from is not None:
                self._refresh_members(sorted(outcome.created + outcome.updated + list(shaped.ids)), logctx)
        if missing:
            report.deleted += self._delete_and_repair(sorted(missing), report, logctx)
        report.stash_count = None

    # ------------------------------------------------------------------ deletions
    def _reconcile_deletes(
        self, mode: str, report: SyncReport, logctx: LogContext, listed: ListedIds | None
    ) -> None:
        """Delete what Stash no longer has.

        A full read from the first id is itself a complete, verified listing (its end is checked
        like a sweep's, see ``StashClient.iter_pages``): local ids it did not list are gone.  Rows
        deleted in Stash while the read went on were listed before they went, so a count follows;
        only when the counts then disagree (or without such a listing) is an id sweep needed.
        """
        local = self._local_count()
        listing = listed if listed is not None and listed.complete else None
        if listing is not None:
            vanished = self._local_ids_not_in(listing.ids(), above=None, upto=None)
            if vanished:
                self._guard_deletes(len(vanished), local)
                report.deleted += self._delete_and_repair(vanished, report, logctx)
                local = self._local_count()
        if mode != "full" or listing is not None:
            total = self.client.count(self.spec, None)
            report.stash_count = total
            if local == total:
                report.local_count = local
                return
        vanished, report.stash_count = self._sweep_vanished()
        if vanished:
            self._guard_deletes(len(vanished), local)
            report.deleted += self._delete_and_repair(vanished, report, logctx)
        report.local_count = self._local_count()

    def _guard_deletes(self, n_deletes: int, local: int) -> None:
        opts = self.options
        if opts.allow_mass_delete or n_deletes <= opts.delete_guard_min_rows:
            return
        if local and n_deletes / local > opts.max_delete_fraction:
            raise SyncAborted(
                f"{self.spec.name}: refusing to delete {n_deletes} of {local} local rows "
                f"({n_deletes / local:.1%} > the {opts.max_delete_fraction:.0%} limit). Nothing was deleted. "
                "If Stash really lost them, rerun with allow_mass_delete (CLI: --allow-mass-delete)."
            )

    def _delete_and_repair(self, vanished: list[int], report: SyncReport, logctx: LogContext) -> int:
        referrers = find_referrers(self.con, self.spec.name, vanished)
        with self._txn():
            deleted = delete_entities(self.con, self.spec, vanished, logctx)
        log.info("%s: deleted %d vanished ids; re-fetching their referrers", self.spec.name, deleted)
        for owner_type, owner_ids in referrers.items():
            owner_ids.difference_update(vanished if owner_type == self.spec.name else ())
            if owner_ids:
                report.repaired += self._refetch(SPECS_BY_NAME[owner_type], sorted(owner_ids), logctx)
        if self.spec.reread_all_after_delete:
            report.repaired += self._refetch_all(logctx)
        return deleted

    def _refetch(self, spec: EntitySpec, ids: list[int], logctx: LogContext) -> int:
        spec = self.spec if spec.name == self.spec.name else self.client.adapt(spec).spec
        found, missing = self.client.fetch_by_ids(spec, ids)
        merger = self.merger if spec is self.spec else EntityMerger(spec)
        shaper = self.shaper if spec is self.spec else PageShaper(spec)
        changed = 0
        with self._txn():
            if found:
                outcome = merger.merge(self.con, shaper.shape(found, logctx.now), logctx)
                changed = len(outcome.updated) + len(outcome.created)
            if missing:
                delete_entities(self.con, spec, sorted(missing), logctx)
        return changed

    def _refetch_all(self, logctx: LogContext) -> int:
        changed = 0
        for page in self.client.iter_pages(self.spec, None, page_size=self.options.page_size):
            with self._txn():
                outcome = self.merger.merge(self.con, self.shaper.shape(page.rows, logctx.now), logctx)
            changed += len(outcome.updated) + len(outcome.created)
        return changed

    # ------------------------------------------------------------------ membership from the other side
    def _refresh_members(self, ids: list[int], logctx: LogContext) -> None:
        """Re-read the membership of these bumped entities from the side that lists it
        (``EntitySpec.members_from``: a gallery's images; membership edits bump only the gallery)."""
        members = self.spec.members_from
        assert members is not None
        owner = SPECS_BY_NAME[members.owner]
        rel = owner.relation(members.relation)
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            pairs = self.client.member_pairs(owner, rel, chunk)
            frame = pl.DataFrame(
                {rel.owner_column: [p[0] for p in pairs], rel.target_column: [p[1] for p in pairs]},
                schema={rel.owner_column: pl.Int64, rel.target_column: pl.Int64},
            )
            chunk_frame = pl.DataFrame({"id": chunk}, schema={"id": pl.Int64})
            with self._txn():
                self.con.register("membership", frame)
                self.con.register("membership_targets", chunk_frame)
                try:
                    self.con.execute(
                        f"DELETE FROM {rel.table} WHERE {rel.target_column} IN (SELECT id FROM membership_targets)"
                    )
                    self.con.execute(
                        f"INSERT INTO {rel.table} ({rel.owner_column}, {rel.target_column}) "
                        f"SELECT DISTINCT {rel.owner_column}, {rel.target_column} FROM membership"
                    )
                    # The table is the owner's (image_galleries), the edit this type's: mark both.
                    mark_changed(self.con, self.spec.name, logctx.now)
                    mark_changed(self.con, owner.name, logctx.now)
                finally:
                    unregister(self.con, "membership", "membership_targets")

    # ------------------------------------------------------------------ helpers
    def _stop_requested(self) -> bool:
        try:
            return bool(self.should_stop(force=True))
        except Exception:  # the check itself failing must not hide the sync's own error
            return False

    def _local_count(self) -> int:
        return fetch_scalar(self.con, f"SELECT count(*) FROM {self.spec.name}")

    def _sweep_vanished(self) -> tuple[list[int], int]:
        """(local ids Stash no longer has, number of ids Stash has), compared page by page with the
        id sweep, so that memory holds one sweep page, not every id of the type.

        A sweep page covers the ids above the previous page's last one, up to its own last one;
        local ids there that are not on the page are candidates.  A final re-listed page (ids that
        were on no page, see ``StashClient.iter_id_pages``) clears candidates.  Local ids above the
        last swept id are candidates too.  Nothing is returned before the sweep is complete.
        """
        candidates: set[int] = set()
        covered: int | None = None  # every local id <= covered was compared
        total = 0
        for ids in self.client.iter_id_pages(self.spec):
            total += len(ids)
            if not ids:
                continue
            if covered is None or ids[0] > covered:
                candidates.update(self._local_ids_not_in(ids, above=covered, upto=ids[-1]))
                covered = ids[-1]
            else:
                candidates.difference_update(ids)
        candidates.update(self._local_ids_not_in([], above=covered, upto=None))
        return sorted(candidates), total

    def _local_ids_not_in(
        self, ids: list[int] | pa.ChunkedArray, *, above: int | None, upto: int | None
    ) -> list[int]:
        """Local ids in (above, upto] (open ends when None) that are not in ``ids``."""
        import polars as pl

        bounds = [f"id > {int(above)}"] if above is not None else []
        bounds += [f"id <= {int(upto)}"] if upto is not None else []
        where = " AND ".join([*bounds, "id NOT IN (SELECT id FROM swept_ids)"])
        frame = pl.DataFrame({"id": ids}, schema={"id": pl.Int64})
        self.con.register("swept_ids", frame)
        try:
            rows = self.con.execute(f"SELECT id FROM {self.spec.name} WHERE {where} ORDER BY id").fetchall()
        finally:
            unregister(self.con, "swept_ids")
        return [r[0] for r in rows]

    def _txn(self) -> "_Transaction":
        return _Transaction(self.con)

    def _finish(self, report: SyncReport, state: Any, *, final: bool) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "stash_version": report.stash_version,
            "not_offered": report.not_offered,
            "last_run_id": report.run_id,
            "last_status": report.status,
            "last_error": report.error,
        }
        if final and not report.skipped:
            values["local_count"] = (
                report.local_count if report.local_count is not None else self._local_count()
            )
            if report.stash_count is not None:  # a targeted resync does not count Stash
                values["stash_count"] = report.stash_count
            values["resume_key"] = None
            values["resume_after_id"] = None
            values["resume_cursor"] = None
            if report.sync_type in ("full", "incremental"):
                values["cursor"] = report.cursor_after
        if final and report.sync_type in ("full", "incremental") and report.server_time is not None:
            # Every row written before it is in the mirror now (a skipped run checked their stamps).
            values["server_time"] = report.server_time
        if final and report.sync_type == "full":
            values["last_full_sync_at"] = now
            values["refill_columns"] = None
        if final and report.sync_type == "incremental":
            values["last_incremental_sync_at"] = now
        if report.skipped:
            report.cursor_after = report.cursor_before
        with self._txn():
            update_state(self.con, self.spec.name, **values)
            finish_run_row(
                self.con,
                report.run_id,
                self.spec.name,
                status="skipped" if report.skipped else report.status,
                finished_at=now,
                fetched=report.fetched,
                created=report.created,
                updated=report.updated,
                unchanged=report.unchanged,
                deleted=report.deleted,
                failed=report.failed,
                repaired=report.repaired,
                pages=report.pages,
                stash_count=report.stash_count,
                local_count=report.local_count,
                cursor_after=report.cursor_after,
                error=report.error,
            )


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.begin()
        return self.con

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.con.commit()
        else:
            self.con.rollback()


def _last_id(shaped: ShapedPage, previous: int | None) -> int | None:
    """The highest id of a shaped batch, stored or failed: where a resumed read continues."""
    ids = [i for i, _reason in shaped.failures if i is not None]
    if len(shaped.entities):
        ids.append(shaped.entities["id"].max())
    return max(ids, default=previous)


def _describe(mode: str, request: SyncRequest, criterion: dict | None) -> str:
    if mode == "specific":
        return f"ids {request.ids[:10]}{'…' if len(request.ids) > 10 else ''}"
    if mode == "window":
        return request.window.describe()
    if criterion is None:
        return "all"
    return f"updated_at ≥ {criterion['value']}"
