"""The text bounds the mirror sends: exact under Stash's byte-wise comparison, whatever the offsets."""

from datetime import UTC, datetime, timedelta

from stash_pipeline.fakestash.clock import ServerZone
from stash_pipeline.mirror.windows import any_offset_bound, overlap_bound, stamp_bound

MOMENT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_any_offset_bound_is_below_every_later_write_in_every_offset() -> None:
    bound = any_offset_bound(MOMENT)
    assert bound == "2026-03-01T00:00:00"
    for hours in range(-12, 15):
        zone = ServerZone.parse("Z" if hours == 0 else f"{hours:+03d}:00")
        for later in (0, 1, 3600, 86400):
            assert zone.format(MOMENT.timestamp() + later) >= bound, (hours, later)
    # ... and it is the largest such bound: the westmost offset's write at that very second.
    assert ServerZone.parse("-12:00").format(MOMENT.timestamp())[:19] == bound


def test_stamp_bound_takes_the_lower_of_window_and_server_time() -> None:
    cursor = "2026-03-01T23:00:00+11:00"  # 12:00Z
    window = overlap_bound(cursor, 3600)
    assert window == "2026-03-01T22:00:00+11:00"
    # Synced just now: every write since (less the overlap) in any offset is above 2026-03-01T00:00.
    assert stamp_bound(MOMENT, cursor, 3600) == "2026-02-28T23:00:00"
    # A week of quiet since the cursor: the server time, not the cursor, bounds the check.
    week_later = MOMENT + timedelta(days=7)
    assert stamp_bound(week_later, cursor, 3600) == window
    # No server time recorded (a mirror from before it was): the cursor's instant stands in.
    assert stamp_bound(None, cursor, 3600) == any_offset_bound(MOMENT - timedelta(hours=1))
    assert stamp_bound(MOMENT, None, 0) == any_offset_bound(MOMENT)
    assert stamp_bound(None, None, 3600) is None
