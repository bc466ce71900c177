"""Filters on ``updated_at`` that are exact under Stash's text comparison (docs/stash-behaviour.md §3).

Stash binds the criterion value as raw text and compares it byte-wise with strings stored in the
server's local offset.  Two kinds of bound are therefore exact:
- a date-only string: ``"2024-03-01" <= "2024-03-01T…"`` and ``"2024-04-01" > "2024-03-31T…"``, so
  ``BETWEEN "2024-03-01" AND "2024-04-01"`` is the half-open local-date window [March, April);
- a timestamp written in the *same offset format* as the stored values (the cursor's own offset).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

UPPER_SENTINEL = "9999-12-31T23:59:59Z"


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


def max_text(*values: str | None) -> str | None:
    """The largest string (Stash compares cursors as text), ignoring ``None``."""
    present = [v for v in values if v]
    return max(present) if present else None
