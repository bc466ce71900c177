"""Filters on ``updated_at`` that are exact under Stash's text comparison (docs/stash-behaviour.md §3).

Stash binds the criterion value as raw text and compares it byte-wise with strings stored in the
server's local offset.  Two kinds of bound are therefore exact:
- a date-only string: ``"2024-03-01" <= "2024-03-01T…"`` and ``"2024-04-01" > "2024-03-31T…"``, so
  ``BETWEEN "2024-03-01" AND "2024-04-01"`` is the half-open local-date window [March, April);
- a timestamp written in the *same offset format* as the stored values (the cursor's own offset);
- a bare local date-time with no offset (``"2024-03-01T10:00:00"``): below every stored string whose
  wall-clock digits are at or after it, whatever their offset (a prefix sorts first).

The last one is what makes a sync exact when the server's offset moves (docs/stash-behaviour.md §4):
a row written at instant ``t`` in any offset on Earth (``-12:00`` to ``+14:00``) has wall-clock digits
at or after ``t - 12h``, so ``any_offset_bound(t)`` is below the text of every row written since ``t``.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

UPPER_SENTINEL = "9999-12-31T23:59:59Z"
WESTMOST_OFFSET = timedelta(hours=-12)
"""The lowest UTC offset in use anywhere (Etc/GMT+12): no local wall clock is further behind UTC."""


@dataclass(frozen=True)
class TextWindow:
    """``lower``/``upper`` are date-only strings; ``None`` means open on that side."""

    lower: str | None
    upper: str | None

    @property
    def is_open(self) -> bool:
        return self.lower is None and self.upper is None

    def criterion(self) -> dict | None:
        """The ``updated_at`` TimestampCriterionInput for this window (None when fully open)."""
        if self.lower is None and self.upper is None:
            return None
        if self.lower is None:
            return {"modifier": "LESS_THAN", "value": self.upper}
        if self.upper is None:
            # There is no >=; a date-only lower bound is below every stored string of that date.
            return {"modifier": "GREATER_THAN", "value": self.lower}
        return {"modifier": "BETWEEN", "value": self.lower, "value2": self.upper}

    def describe(self) -> str:
        return f"[{self.lower or '-∞'}, {self.upper or '+∞'})"


def since_criterion(bound: str) -> dict:
    """Everything updated at or after ``bound`` (inclusive: BETWEEN bound AND the far future)."""
    return {"modifier": "BETWEEN", "value": bound, "value2": UPPER_SENTINEL}


def parse_stash_time(text: str) -> datetime:
    """Stash's RFC3339 string (``Z`` or ``±HH:MM``) → an aware datetime in that same offset."""
    return datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)


def format_like(moment: datetime, template: str) -> str:
    """Format ``moment`` as Stash would, in the offset of ``template`` (which it came from)."""
    reference = parse_stash_time(template)
    local = moment.astimezone(reference.tzinfo)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if template.endswith("Z"):
        return text + "Z"
    offset = reference.utcoffset() or timedelta(0)
    total = int(offset.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{text}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def overlap_bound(cursor: str, overlap_seconds: float) -> str:
    """The incremental lower bound: the cursor minus the overlap window, in the cursor's offset.

    The overlap covers whole-second ties, bulk edits whose timestamp was taken before their
    transaction, and a DST fall-back (the repeated local hour sorts below the cursor as text).
    """
    moment = parse_stash_time(cursor) - timedelta(seconds=overlap_seconds)
    return format_like(moment, cursor)


def any_offset_bound(instant: datetime) -> str:
    """The largest text below the ``updated_at`` of every row written at or after ``instant``,
    whatever offset the server writes in: the wall-clock digits of ``instant`` in the westmost
    offset, without an offset suffix."""
    return (instant.astimezone(UTC) + WESTMOST_OFFSET).strftime("%Y-%m-%dT%H:%M:%S")


def stamp_bound(server_time: datetime | None, cursor: str | None, overlap_seconds: float) -> str | None:
    """Lower bound of an incremental run's stamp check (docs/architecture.md §6).

    Every row written since the previous run began (``server_time``, the server's own clock, less
    the overlap) has text at or above ``any_offset_bound``; the overlap window before the cursor is
    included too (the lower of the two).  Without a server time (a mirror synced before it was
    recorded, or a server that sends no ``Date``), the cursor's instant stands in for it.
    """
    overlap = timedelta(seconds=overlap_seconds)
    bounds: list[str] = []
    if cursor:
        bounds.append(overlap_bound(cursor, overlap_seconds))
        if server_time is None:
            server_time = parse_stash_time(cursor)
    if server_time is not None:
        bounds.append(any_offset_bound(server_time - overlap))
    return min(bounds) if bounds else None


def max_text(*values: str | None) -> str | None:
    """The largest string (Stash compares cursors as text), ignoring ``None``."""
    present = [v for v in values if v]
    return max(present) if present else None
