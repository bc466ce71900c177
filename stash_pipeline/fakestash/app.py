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
from stash_pipeline.fakestash.versions import CURRENT, release


class FakeStash:
    def __init__(
        self, *, zone: str = "Z", api_key: str | None = None, seed: int = 0, version: str = CURRENT
    ) -> None:
        self.release = release(version)  # the Stash release it serves (``versions.py``)
        self.version = self.release.name
        self.store = Store()
        self.clock = ServerClock(ServerZone.parse(zone))
        self.api_key = api_key or None
        self.seed = seed
        self.mutations = Mutations(self.store, self.clock, self.release.lacks)
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
        version: str = CURRENT,
    ) -> "FakeStash":
        fake = cls(zone=zone, api_key=api_key, seed=seed, version=version)
        generate(fake.store, fake.clock, size or LibrarySize(), seed=seed)
        fake._hold_only_what_the_release_has()
        return fake

    def _hold_only_what_the_release_has(self) -> None:
        """A release without a field holds no data for it (before v0.30 a studio has one URL)."""
        lacks = self.release.lacks
        for entity in self.store.iter_entities("studio") if "Studio.urls" in lacks else ():
            entity["urls"] = entity.get("urls", [])[:1]
        for entity in self.store.iter_entities("tag"):
            if "Tag.sort_name" in lacks:
                entity["sort_name"] = None
            if "Tag.stash_ids" in lacks:
                entity["stash_ids"] = []
        for entity in self.store.iter_entities("performer") if "Performer.custom_fields" in lacks else ():
            entity["custom_fields"] = None
        if "StashID.updated_at" in lacks:
            for kind in ("scene", "performer", "studio", "tag"):
                for entity in self.store.iter_entities(kind):
                    entity["stash_ids"] = [{**sid, "updated_at": None} for sid in entity["stash_ids"]]
        for file in self.store.tables["file"].values():
            if "BaseFile.parent_folder" in lacks:
                file["parent_folder"] = None
            if "BaseFile.zip_file" in lacks:
                file["zip_file"] = None
            if "ImageFile.format" in lacks and file.get("__typename") == "ImageFile":
                file["format"] = None
        for marker in self.store.iter_entities("scene_marker") if "SceneMarker.end_seconds" in lacks else ():
            marker["end_seconds"] = None

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
