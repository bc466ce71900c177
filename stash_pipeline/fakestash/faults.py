"""Injected failures for the fake server, so clients can be tested against a misbehaving Stash.

A ``FaultPlan`` is a queue of armed faults.  The HTTP server calls ``take(query)`` once per /graphql
request (after scheduled mutations, before execution); the first armed fault whose ``match``
substring occurs in the request's query text is consumed (``times`` counts down) and returned.
Thread-safe: the server answers requests on several threads.

Kinds (``params`` in brackets):
- ``http_500`` / ``http_502`` / ``http_503``: that status with a short text body.
- ``http_429`` [retry_after=0]: 429 with a ``Retry-After`` header (seconds; small so tests are fast).
- ``drop``: the connection is closed without any answer.
- ``outage`` [seconds=60]: like ``drop``, then the server stops listening (connections refused)
  for that long and comes back on the same port with the same data (a Stash restart).
- ``slow`` [seconds=1.0]: the answer is delayed (the request is then executed normally).
- ``malformed_json``: 200 with the real answer cut in the middle (invalid JSON).
- ``graphql_error`` [message="fake error"]: 200 with ``{"errors": [...], "data": null}``.
- ``db_locked``: like ``graphql_error`` with Stash's SQLite message ``database is locked``.
- ``truncate_list`` [keep=1]: executed normally, then each find* item list keeps its first ``keep``
  items; ``count`` is left unchanged (a short page).
- ``empty_list``: like ``truncate_list`` with ``keep=0``.
- ``duplicate_items``: executed normally, then in each find* item list the first item is repeated
  right after itself (same id twice in one page, as a bad JOIN would); ``count`` is left unchanged.

Every kind also takes ``after`` [0]: the fault lets that many matching requests through untouched
before it fires (e.g. "the 11th images page"), so a test can pick a point deep inside a paged read.
"""

import threading
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS: frozenset[str] = frozenset(
    {
        "http_500",
        "http_502",
        "http_503",
        "http_429",
        "drop",
        "outage",
        "slow",
        "malformed_json",
        "graphql_error",
        "db_locked",
        "truncate_list",
        "empty_list",
        "duplicate_items",
    }
)


@dataclass
class Fault:
    """One armed fault; ``times`` is how many more requests it will hit."""

    kind: str
    times: int = 1
    match: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def applies_to(self, query: str) -> bool:
        return self.match is None or self.match in query

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.times, "match": self.match, "params": dict(self.params)}


class FaultPlan:
    """The armed faults of one fake server, consumed first-come first-served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.fired: list[Fault] = []  # history, for tests and the control endpoint

    def add(self, kind: str, times: int = 1, match: str | None = None, **params: Any) -> Fault:
        """Arm a fault for the next ``times`` matching requests."""
        if kind not in FAULT_KINDS:
            known = ", ".join(sorted(FAULT_KINDS))
            raise ValueError(f"unknown fault kind {kind!r}; expected one of: {known}")
        if times < 1:
            raise ValueError(f"fault times must be >= 1, got {times}")
        if not isinstance(params.get("after", 0), int) or params.get("after", 0) < 0:
            raise ValueError(f"fault after must be an integer >= 0, got {params.get('after')!r}")
        fault = Fault(kind, int(times), match, dict(params))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def take(self, query: str) -> Fault | None:
        """Consume and return the fault for a request with this query text (None: answer normally)."""
        with self._lock:
            if not self._faults:
                return None
            for i, fault in enumerate(self._faults):
                if fault.applies_to(query):
                    if fault.params.get("after", 0) > 0:  # not yet: let this one through
                        fault.params["after"] -= 1
                        continue
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[i]
                    taken = Fault(fault.kind, 1, fault.match, dict(fault.params))
                    self.fired.append(taken)
                    return taken
            return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
