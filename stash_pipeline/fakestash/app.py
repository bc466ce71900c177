"""``FakeStash``: the whole fake server state behind one object (store, clock, mutations, faults).

The HTTP server (``server.py``) wraps one ``FakeStash``; tests and the demo build it with
``FakeStash.generated(...)`` and drive it through its Python API or the HTTP control endpoint.
"""

import threading
from collections.abc import Callable
from typing import Any

from stash_pipeline.fakestash.clock import ServerClock, ServerZone
from stash_pipeline.fakestash.faults import FaultPlan
from stash_pipeline.fakestash.generator import LibrarySize, generate
from stash_pipeline.fakestash.mutations import Mutations
from stash_pipeline.fakestash.store import Store
from stash_pipeline.fakestash.truth import export_truth


class FakeStash:
    def __init__(self, *, zone: str = "Z", api_key: str | None = None, seed: int = 0) -> None:
        self.store = Store()
        self.clock = ServerClock(ServerZone.parse(zone))
        self.api_key = api_key or None
        self.seed = seed
        self.mutations = Mutations(self.store, self.clock)
        self.faults = FaultPlan()
        self.request_count = 0
        self._scheduled: list[tuple[int, Callable[[FakeStash], Any]]] = []
        self._counter_lock = threading.Lock()

    @classmethod
    def generated(
        cls,
        size: LibrarySize | None = None,
        *,
        zone: str = "Z",
        seed: int = 0,
        api_key: str | None = None,
    ) -> "FakeStash":
        fake = cls(zone=zone, api_key=api_key, seed=seed)
        generate(fake.store, fake.clock, size or LibrarySize(), seed=seed)
        return fake

    # ------------------------------------------------------------------ request hooks
    def on_graphql_request(self) -> int:
        """Count a /graphql request and fire the mutations scheduled for it (before it is answered).

        Returns the request's number (1-based).
        """
        with self._counter_lock:
            self.request_count += 1
            number = self.request_count
            due = [fn for n, fn in self._scheduled if n == number]
            self._scheduled = [(n, fn) for n, fn in self._scheduled if n != number]
        for fn in due:
            with self.store.lock:
                fn(self)
        return number

    def after_requests(self, n: int, action: Callable[["FakeStash"], Any]) -> None:
        """Run ``action(fake)`` just before the ``n``-th /graphql request from now is answered."""
        with self._counter_lock:
            self._scheduled.append((self.request_count + n, action))

    # ------------------------------------------------------------------ truth
    def truth(self) -> dict[str, Any]:
        with self.store.lock:
            return export_truth(self.store, self.clock.zone)
