"""Batches share one DuckDB transaction (``mirror.db.GroupCommit``): committed every
``commit_rows`` rows, and when the read ends, also by an error, with every batch merged whole; a
batch cut off in the middle of its merge takes its whole transaction back, and the resume position
is always that of the last commit.

A real fake Stash over HTTP and a real DuckDB file; the read is failed by the fake (a GraphQL error
on a chosen page), the merge by a wrapper that raises after the real merge ran (as an interrupt
landing at that moment would).
"""

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.mirror.db import fetch_row
from stash_pipeline.mirror.sync import EntitySync, SyncOptions, SyncRequest
from stash_pipeline.model import SPECS_BY_NAME
from stash_pipeline.stash.client import StashClient
from stash_pipeline.stash.errors import StashGraphQLError
from stash_pipeline.stash.queries import page_query

IMAGES = SPECS_BY_NAME["images"]
PAGE = 100
# One page per batch, three batches per transaction; no commit by age (the test decides).
OPTIONS = SyncOptions(page_size=PAGE, merge_rows=PAGE, commit_rows=3 * PAGE, commit_seconds=3600)


@pytest.fixture
def fake() -> FakeStash:
    return FakeStash.generated(LibrarySize(scenes=30, images=1500), seed=5)


@pytest.fixture
def client(fake, make_fake_server) -> Iterator[StashClient]:
    with StashClient(make_fake_server(fake).url, page_size=PAGE, retries=0) as stash:
        yield stash


def _image_ids(fake: FakeStash) -> list[int]:
    return sorted(int(image["id"]) for image in fake.truth()["images"])


def _mirror(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int | None, str | None]:
    """(rows, distinct ids, resume position, status of the last run) of the images mirror."""
    rows, distinct = fetch_row(con, "SELECT count(*), count(DISTINCT id) FROM images")
    state = fetch_row(con, "SELECT resume_after_id, last_status FROM sync_state WHERE entity_type = 'images'")
    return rows, distinct, state[0], state[1]


def test_a_failed_read_keeps_every_batch_merged_whole(fake, client, tmp_path: Path) -> None:
    # The 8th page fails (page 1 selects the count; pages 2.. are the no-count query).
    fake.faults.add("graphql_error", match=page_query(IMAGES, False), after=6)
    ids = _image_ids(fake)
    with duckdb.connect(str(tmp_path / "mirror.duckdb")) as con:
        with pytest.raises(StashGraphQLError):
            EntitySync(IMAGES, client, con, OPTIONS).run(SyncRequest("images", "full", "run-1"))
        # Pages 1-6 were committed as two transactions; page 7 was merged whole into a third,
        # which the error committed rather than dropped.
        assert _mirror(con) == (7 * PAGE, 7 * PAGE, ids[7 * PAGE - 1], "failed")
        created = fetch_row(con, "SELECT created FROM sync_runs WHERE run_id = 'run-1'")
        assert created == (7 * PAGE,)  # the report counts what was committed

        report = EntitySync(IMAGES, client, con, OPTIONS).run(SyncRequest("images", "full", "run-2"))
        assert report.created == len(ids) - 7 * PAGE  # resumed after the last commit
        assert _mirror(con) == (len(ids), len(ids), None, "success")


def test_a_batch_cut_off_mid_merge_takes_its_transaction_back(fake, client, tmp_path: Path) -> None:
    ids = _image_ids(fake)
    with duckdb.connect(str(tmp_path / "mirror.duckdb")) as con:
        sync = EntitySync(IMAGES, client, con, OPTIONS)
        merge = sync.merger.merge
        merged: list[int] = []

        def merge_then_fail_the_fifth(*args, **kwargs):
            outcome = merge(*args, **kwargs)  # the batch's rows are written ...
            merged.append(len(outcome.created))
            if len(merged) == 5:
                raise KeyboardInterrupt  # ... and the merge is cut off before it returns
            return outcome

        sync.merger.merge = merge_then_fail_the_fifth
        with pytest.raises(KeyboardInterrupt):
            sync.run(SyncRequest("images", "full", "run-1"))
        # Batches 1-3 were committed; 4 (merged whole) and 5 (cut off) shared a transaction, and
        # neither is kept: the resume position is where the last commit left it.
        assert merged == [PAGE] * 5
        assert _mirror(con) == (3 * PAGE, 3 * PAGE, ids[3 * PAGE - 1], "cancelled")
        assert fetch_row(con, "SELECT created FROM sync_runs WHERE run_id = 'run-1'") == (3 * PAGE,)

        report = EntitySync(IMAGES, client, con, OPTIONS).run(SyncRequest("images", "full", "run-2"))
        assert report.created == len(ids) - 3 * PAGE
        assert _mirror(con) == (len(ids), len(ids), None, "success")


def test_transactions_hold_commit_rows(fake, client, tmp_path: Path) -> None:
    """A commit every ``commit_rows`` rows, and one at the end of the read: the resume position
    moves only then (read from a second connection, which sees committed data only)."""
    path = str(tmp_path / "mirror.duckdb")
    seen: list[int | None] = []
    with duckdb.connect(path) as con:
        sync = EntitySync(IMAGES, client, con, OPTIONS)
        reader = con.cursor()  # its own transactions: what another process would see

        def after_each_batch(report, _total) -> None:
            seen.append(
                fetch_row(reader, "SELECT resume_after_id FROM sync_state WHERE entity_type = 'images'")[0]
            )

        sync.progress = after_each_batch  # called after each commit
        sync.run(SyncRequest("images", "full", "run-1"))
    ids = _image_ids(fake)
    commits = [ids[n - 1] for n in range(3 * PAGE, len(ids) + 1, 3 * PAGE)]
    assert seen[: len(commits)] == commits


def test_a_read_too_short_to_fill_a_transaction_commits_batch_by_batch(fake, client, tmp_path: Path) -> None:
    """1,500 images never fill a 10,000-row transaction: holding one open would only move its
    commit past the end of the read, so each batch is committed on its own, as when a batch was
    a transaction."""
    ids = _image_ids(fake)
    options = SyncOptions(page_size=PAGE, merge_rows=PAGE, commit_rows=10_000, commit_seconds=3600)
    with duckdb.connect(str(tmp_path / "mirror.duckdb")) as con:
        sync = EntitySync(IMAGES, client, con, options)
        merge = sync.merger.merge
        merged: list[int] = []

        def merge_then_fail_the_fifth(*args, **kwargs):
            outcome = merge(*args, **kwargs)
            merged.append(len(outcome.created))
            if len(merged) == 5:
                raise KeyboardInterrupt
            return outcome

        sync.merger.merge = merge_then_fail_the_fifth
        with pytest.raises(KeyboardInterrupt):
            sync.run(SyncRequest("images", "full", "run-1"))
        assert _mirror(con) == (4 * PAGE, 4 * PAGE, ids[4 * PAGE - 1], "cancelled")
