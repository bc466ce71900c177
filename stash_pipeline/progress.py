"""Sync progress: throttled run-log lines, and listeners (the CLI draws progress bars from them).

A run log line is an event in Dagster's storage (milliseconds each), so lines are throttled to one
every few seconds plus the last page; listeners in this process get every page.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    entity_type: str
    fetched: int
    expected: int | None
    pages: int
    rows_per_second: float
    eta_seconds: float | None
    done: bool = False

    @property
    def percent(self) -> float | None:
        if not self.expected:
            return None
        return min(100.0, 100.0 * self.fetched / self.expected)

    def describe(self) -> str:
        pct = f" ({self.percent:.0f}%)" if self.percent is not None else ""
        total = f"/{self.expected}" if self.expected else ""
        eta = f", ETA {self.eta_seconds:.0f}s" if self.eta_seconds is not None and not self.done else ""
        return f"{self.entity_type}: page {self.pages}, {self.fetched}{total}{pct}, {self.rows_per_second:.0f} rows/s{eta}"


Listener = Callable[[ProgressEvent], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


class ProgressTracker:
    """Turns per-page counts into rate/ETA, publishes to listeners, and logs every ``interval`` s
    after the first (a sync shorter than that logs nothing here: its summary line says it all, and
    each line is an event-log write in Dagster)."""

    def __init__(self, entity_type: str, log: Callable[[str], None], interval: float = 3.0) -> None:
        self.entity_type = entity_type
        self.log = log
        self.interval = interval
        self.started = time.monotonic()
        self.last_logged = self.started

    def update(self, fetched: int, expected: int | None, pages: int, *, done: bool = False) -> ProgressEvent:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = fetched / elapsed
        eta = (expected - fetched) / rate if expected and rate > 0 and expected > fetched else None
        event = ProgressEvent(self.entity_type, fetched, expected, pages, rate, eta, done)
        for listener in list(_listeners):
            listener(event)
        now = time.monotonic()
        if not done and now - self.last_logged >= self.interval:
            self.last_logged = now
            self.log(event.describe())
        return event
