"""The fake server's clock and local time zone.

Stash writes timestamps with Go's ``time.RFC3339`` in the *process's local offset*, whole seconds
(docs/stash-behaviour.md §4).  The fake reproduces that: every timestamp it writes is formatted in the offset
in force at that instant, so a DST switch produces rows whose text order disagrees with their
instant order, exactly as a real server does.

A time zone is written as a fixed offset (``Z``, ``+11:00``, ``-05:00``) optionally followed by
switches ``,<offset>@<utc instant>``; for example ``+11:00,+10:00@2026-04-04T16:00:00Z`` is Sydney's
fall-back (03:00 local becomes 02:00).  No tz database is needed, and tests say exactly when a switch
happens.
"""

import threading
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


def parse_offset(text: str) -> int:
    """``Z`` / ``+11:00`` / ``-0500`` → offset in seconds east of UTC."""
    text = text.strip()
    if text in ("Z", "z", "UTC", "utc", "+00:00", "-00:00"):
        return 0
    sign = 1 if text[0] == "+" else -1 if text[0] == "-" else None
    if sign is None:
        raise ValueError(f"bad UTC offset {text!r}: expected Z, +HH:MM or -HH:MM")
    digits = text[1:].replace(":", "")
    if len(digits) != 4 or not digits.isdigit():
        raise ValueError(f"bad UTC offset {text!r}: expected Z, +HH:MM or -HH:MM")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def format_offset(seconds: int) -> str:
    """Offset in seconds → Go's RFC3339 suffix (``Z`` for zero)."""
    if seconds == 0:
        return "Z"
    sign = "+" if seconds > 0 else "-"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@dataclass(frozen=True)
class ServerZone:
    """A fixed offset with optional switches at given UTC instants (a DST rule, spelled out)."""

    base_offset: int = 0
    switches: tuple[tuple[float, int], ...] = ()  # (utc epoch seconds, new offset), sorted

    @classmethod
    def parse(cls, spec: str) -> "ServerZone":
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not parts:
            return cls()
        base = parse_offset(parts[0])
        switches = []
        for part in parts[1:]:
            offset_text, _, instant_text = part.partition("@")
            if not instant_text:
                raise ValueError(f"bad zone switch {part!r}: expected <offset>@<UTC instant>")
            instant = datetime.fromisoformat(instant_text.replace("Z", "+00:00"))
            if instant.tzinfo is None:
                raise ValueError(f"zone switch instant {instant_text!r} needs an offset (use Z)")
            switches.append((instant.timestamp(), parse_offset(offset_text)))
        return cls(base, tuple(sorted(switches)))

    def offset_at(self, epoch: float) -> int:
        if not self.switches:
            return self.base_offset
        i = bisect_right([s[0] for s in self.switches], epoch)
        return self.base_offset if i == 0 else self.switches[i - 1][1]

    def format(self, epoch: float) -> str:
        """Epoch seconds → the string Stash would store: local wall time + offset, whole seconds."""
        whole = int(epoch // 1)
        offset = self.offset_at(whole)
        local = datetime.fromtimestamp(whole + offset, UTC).replace(tzinfo=None)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + format_offset(offset)

    def describe(self) -> str:
        text = format_offset(self.base_offset)
        for epoch, offset in self.switches:
            instant = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            text += f",{format_offset(offset)}@{instant}"
        return text


@dataclass
class ServerClock:
    """Wall clock of the fake server: real time by default, or frozen/advanced by tests."""

    zone: ServerZone = field(default_factory=ServerZone)
    frozen_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        with self._lock:
            return self.frozen_at if self.frozen_at is not None else time.time()

    def freeze(self, epoch: float | None = None) -> None:
        with self._lock:
            self.frozen_at = time.time() if epoch is None else float(epoch)

    def unfreeze(self) -> None:
        with self._lock:
            self.frozen_at = None

    def set_zone(self, zone: "ServerZone | str") -> None:
        """The server now writes in another zone: a Stash restarted with another ``TZ`` (Go reads
        the local zone once, at start), or a container given one."""
        with self._lock:
            self.zone = ServerZone.parse(zone) if isinstance(zone, str) else zone

    def advance(self, seconds: float) -> None:
        """Move a frozen clock forward (a running clock is frozen at now + seconds)."""
        with self._lock:
            base = self.frozen_at if self.frozen_at is not None else time.time()
            self.frozen_at = base + seconds

    def stamp(self, epoch: float | None = None) -> str:
        """The timestamp string Stash would write now (or at ``epoch``)."""
        moment = self.now() if epoch is None else epoch
        with self._lock:
            zone = self.zone
        return zone.format(moment)

    def stamp_tomorrow(self) -> str:
        """Default upper bound of a BETWEEN without value2: local now + 1 day (docs/stash-behaviour.md §3)."""
        return self.zone.format(self.now() + timedelta(days=1).total_seconds())
