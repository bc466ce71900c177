"""The stamp digest: the sensor (Python, from Stash's answer) and the sync (DuckDB, from the mirror)
must agree on equal sets and disagree on any difference."""

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa

from stash_pipeline.mirror.stamps import compare_stamps, mirror_digest, stamp_digest
from stash_pipeline.model import SPECS_BY_NAME

TAGS = SPECS_BY_NAME["tags"]
ROWS = [(2, "2026-01-01T00:00:00Z"), (1, "2026-01-02T00:00:00+11:00"), (3, "2000-01-01T00:00:00Z")]


def mirror() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE tags (id BIGINT, updated_at_text VARCHAR)")
    con.executemany("INSERT INTO tags VALUES (?, ?)", ROWS)
    return con


def test_mirror_and_server_digests_agree_exactly_when_the_sets_do() -> None:
    con = mirror()
    above = sorted(r for r in ROWS if r[1] >= "2025")
    assert mirror_digest(con, TAGS, "2025") == (2, stamp_digest(above))
    assert mirror_digest(con, TAGS, "2099") == (0, stamp_digest([]))
    assert stamp_digest([(1, above[0][1]), (2, "2026-01-01T00:00:01Z")]) != stamp_digest(above)
    assert stamp_digest(above[:1]) != stamp_digest(above)
    assert stamp_digest([(1, None), above[1]]) != stamp_digest(above)


def test_compare_finds_new_edited_and_unknown_stamps_and_which_are_below_the_window() -> None:
    con = mirror()
    server = pa.table(
        {
            "id": pa.array([1, 2, 4, 5], pa.int64()),
            "updated_at": [
                "2026-01-02T00:00:00+11:00",
                "2026-01-01T05:00:00-05:00",
                "2026-01-03T00:00:00Z",
                None,
            ],
        }
    )
    check = compare_stamps(con, TAGS, "2025", server, window="2026-01-02T00:00:00Z")
    assert check.listed == 4
    assert check.changed == (2, 4, 5)  # 1 is unchanged; 2 re-edited, 4 new, 5 unknown
    assert check.below == (2, 5)  # 4 is inside the window an ordinary read covers


def test_equal_stamps_at_or_after_the_last_runs_start_are_not_trusted() -> None:
    """Stamps have whole seconds: a row stamped in the second the previous run began (or later)
    may have been edited again after that run read it, keeping its stamp."""
    con = mirror()
    server = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "updated_at": [r[1] for r in sorted(ROWS)]})
    started = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)  # 1 is at 2026-01-01T13:00Z, 2 at 00:00Z
    check = compare_stamps(con, TAGS, "1999", server, window="1999", read_since=started)
    assert (check.changed, check.unsure, check.differing) == ((1, 2), (1, 2), 0)
    later = compare_stamps(con, TAGS, "1999", server, window="1999", read_since=started + timedelta(days=1))
    assert (later.changed, later.unsure) == ((), ())
    assert compare_stamps(con, TAGS, "1999", server, window="1999").changed == ()  # no run before
