"""``StashClient``: everything the mirror asks Stash, built from the model (docs/architecture.md §2).

The transport (HTTP, auth, retries, answer checks) is ``stash.transport``; the paging strategies
(keyset, verified offset, ids and id sweeps) are ``stash.paging``.  This module adds the counts and
probes, health and the membership reads.
"""

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stash_pipeline.model import EntitySpec, Relation, spec_for
from stash_pipeline.model.entities import any_spec
from stash_pipeline.settings import Settings
from stash_pipeline.stash import features, queries
from stash_pipeline.stash.errors import (
    StashConsistencyError,
    StashNotReadyError,
    StashProtocolError,
)
from stash_pipeline.stash.features import Adapted, ServerFeatures
from stash_pipeline.stash.paging import Filter, Page, PagedReads, ReadStopped, _chunks
from stash_pipeline.stash.transport import JSON

logger = logging.getLogger("stash_pipeline.stash")


@dataclass(frozen=True)
class StashHealth:
    """What ``health()`` learned: record it per run (version drift explains odd data)."""

    version: str | None
    hash: str
    build_time: str
    status: str
    database_schema: int | None
    app_schema: int


class StashClient(PagedReads):
    """A synchronous client for one Stash server.  Use as a context manager, or call ``close()``.
    (Its arguments: ``Transport``.)"""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "StashClient":
        """Build a client from ``stash_pipeline.settings.Settings`` (keyword overrides win)."""
        kwargs: dict[str, Any] = {
            "url": settings.stash_url,
            "api_key": settings.api_key,
            "timeout": settings.timeout,
            "retry_seconds": settings.retry_seconds,
            "retries": settings.retries,
            "page_size": settings.page_size,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def features(self) -> ServerFeatures:
        """What the server offers (its version, its types' fields): one introspection request,
        then remembered for this server for the rest of the process (a run)."""
        known = features.cached(self.url)
        if known is None:
            known = ServerFeatures.from_answer(self.execute(features.FEATURES))
            features.remember(self.url, known)
        return known

    def adapt(self, spec: EntitySpec) -> Adapted:
        """``spec`` as this server can be asked for it (``stash.features``)."""
        return self.features().adapt(spec)

    def health(self) -> StashHealth:
        """``/healthz``, then ``version`` and ``systemStatus``; raises ``StashNotReadyError`` unless
        the status is OK (e.g. NEEDS_MIGRATION: reading a half-migrated database is pointless)."""
        self.healthz()
        data = self.execute(queries.HEALTH)
        try:
            version = data["version"]
            system = data["systemStatus"]
            health = StashHealth(
                version=version.get("version"),
                hash=version["hash"],
                build_time=version["build_time"],
                status=system["status"],
                database_schema=system.get("databaseSchema"),
                app_schema=system["appSchema"],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise StashProtocolError(f"Health: unexpected answer shape ({exc!r})") from None
        if health.status != "OK":
            hint = {
                "NEEDS_MIGRATION": (
                    f"its database schema {health.database_schema} is older than the app schema "
                    f"{health.app_schema}; run the migration in the Stash UI"
                ),
                "SETUP": "it has not been set up yet; finish the setup in the Stash UI",
            }.get(health.status, "it is not ready")
            raise StashNotReadyError(
                f"Stash at {self.url} reports systemStatus {health.status}: {hint}.", health.status
            )
        return health

    def stats(self) -> dict[str, int]:
        """Global counts of the seven types from ``stats`` (keyed by plural type name)."""
        data = self.execute(queries.STATS)
        stats = data.get("stats")
        if not isinstance(stats, dict):
            raise StashProtocolError("Stats: the answer has no stats object")
        return {name: self._int(stats.get(key), f"stats.{key}") for name, key in queries.STATS_KEYS.items()}

    def activity_totals(self) -> dict[str, float]:
        """Stash's ``stats`` totals of O counts, plays and play duration (``ACTIVITY_TOTALS``)."""
        data = self.execute(queries.STATS)
        stats = data.get("stats")
        if not isinstance(stats, dict):
            raise StashProtocolError("Stats: the answer has no stats object")
        return {key: _number(stats.get(key), f"stats.{key}") for key in queries.ACTIVITY_TOTALS}

    def activity(self, spec: EntitySpec) -> pa.Table:
        """``id`` and the unbumped columns (as text, for the mirror to cast) of every row with any
        activity, in one answer verified against its count (``queries.active_filter``)."""
        document = queries.activity_query(spec)
        data = self.execute(document, {"filter": queries.active_filter(spec)})
        result = self._result(data, spec.query, document)
        count = self._int(result.get("count"), f"{spec.query}.count")
        items = self._items(result, spec, document)
        ids = [self._id(item, document) for item in items]
        if len(set(ids)) != len(ids) or len(ids) != count:
            raise StashConsistencyError(
                f"{spec.name} activity: {len(ids)} rows but Stash reports count {count} in the same answer"
            )
        columns: dict[str, pa.Array] = {"id": pa.array(ids, pa.int64())}
        for column in spec.unbumped_columns:
            values = [item.get(column.name) for item in items]
            columns[column.name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        return pa.table(columns)

    def links(self, spec: EntitySpec) -> list[JSON]:
        """Every row of ``spec`` with its unbumped relations, one answer verified against its
        count (``queries.links_query``; ``mirror.links`` reads them)."""
        document = queries.links_query(spec)
        result = self._result(self.execute(document), spec.query, document)
        count = self._int(result.get("count"), f"{spec.query}.count")
        items = self._items(result, spec, document)
        if len({self._id(item, document) for item in items}) != len(items) or len(items) != count:
            raise StashConsistencyError(
                f"{spec.name} links: {len(items)} rows but Stash reports count {count} in the same answer"
            )
        return list(items)

    # ------------------------------------------------------------------ counts
    def count(self, spec: EntitySpec, filter: Filter = None) -> int:
        """Number of entities matching ``filter`` (``per_page: 0``: no rows transferred)."""
        document = queries.count_query(spec)
        data = self.execute(document, {"filter": filter})
        return self._int(self._result(data, spec.query, document).get("count"), f"{spec.query}.count")

    def count_many(self, filters: Mapping[str, Filter]) -> dict[str, int]:
        """Counts of several types in ONE request (one read transaction), keyed by plural name.

        ``filters`` maps a type name (plural or singular) to a filter or ``None``.  The answer has,
        per type, ``<name>``: the count matching its filter (the total when the filter is ``None``)
        and ``<name>_total``: the unfiltered total.
        """
        normalized: dict[str, Filter] = {spec_for(name).name: f for name, f in filters.items()}
        if not normalized:
            return {}
        filtered = [name for name, f in normalized.items() if f is not None]
        document = queries.count_many_query(filtered, list(normalized))
        variables = {queries.count_variable(name): normalized[name] for name in filtered}
        data = self.execute(document, variables)
        out: dict[str, int] = {}
        for name in normalized:
            changed_alias, total_alias = queries.count_aliases(name)
            total = self._int(self._result(data, total_alias, "CountMany").get("count"), total_alias)
            out[name] = (
                self._int(self._result(data, changed_alias, "CountMany").get("count"), changed_alias)
                if name in filtered
                else total
            )
            out[f"{name}_total"] = total
        return out

    def probe(self, probes: Mapping[queries.Probe, Filter], with_totals: bool = False) -> dict[str, Any]:
        """The sensor's probes (each with its filter, or ``None``) in ONE request, keyed by alias:
        a count, or for a stamps probe the sorted ``(id, updated_at)`` pairs, verified against the
        count in the same answer; with ``with_totals``, ``stats``' activity totals as ``"stats"``
        and the server's version as ``"stash_version"`` (as ``features()`` names it)."""
        if not probes:
            return {}
        document = queries.probes_query(tuple(probes), with_totals)
        variables = {p.alias: f for p, f in probes.items() if p.filtered}
        data = self.execute(document, variables)
        out: dict[str, Any] = {}
        if with_totals:
            stats = data.get("stats")
            if not isinstance(stats, dict):
                raise StashProtocolError(f"{queries.PROBES_OPERATION}: the answer has no stats object")
            out["stats"] = {k: _number(stats.get(k), f"stats.{k}") for k in queries.ACTIVITY_TOTALS}
            out["stash_version"] = features.version_of(data)
        for probe in probes:
            result = self._result(data, probe.alias, queries.PROBES_OPERATION)
            count = self._int(result.get("count"), f"{probe.alias}.count")
            if probe.links or probe.columns:
                items = self._items(result, any_spec(probe.type_name), document)
                if len(items) != count:
                    raise StashConsistencyError(
                        f"{probe.alias}: {len(items)} rows but Stash reports count {count}"
                    )
                out[probe.alias] = list(items)
                continue
            if not probe.stamps:
                out[probe.alias] = count
                continue
            spec = any_spec(probe.type_name)
            items = self._items(result, spec, document)
            pairs = sorted(
                (self._id(item, document), text if isinstance(text := item.get("updated_at"), str) else None)
                for item in items
            )
            if len({i for i, _ in pairs}) != len(pairs) or len(pairs) != count:
                raise StashConsistencyError(
                    f"{probe.alias}: {len(pairs)} stamps but Stash reports count {count} in the same answer"
                )
            out[probe.alias] = pairs
        return out

    def latest_updated_at(self, spec: EntitySpec, filter: Filter = None) -> str | None:
        """The newest ``updated_at`` string of the rows of a type matching ``filter``, verbatim
        (``None`` when none match).

        Noted before a long paged read, it bounds a catch-up pass for rows edited behind the read.
        """
        document = queries.latest_updated_at_query(spec)
        data = self.execute(document, {"filter": dict(filter) if filter else None})
        items = self._items(self._result(data, spec.query, document), spec, document)
        if not items:
            return None
        value = items[0].get("updated_at")
        if not isinstance(value, str):
            raise StashProtocolError(f"{document.split('{')[0].strip()}: updated_at is not a string")
        return value

    def member_pairs(
        self, owner: EntitySpec, relation: Relation, ids: Iterable[int]
    ) -> list[tuple[int, int]]:
        """(owner id, target id) of ``relation`` for every ``owner`` that lists one of ``ids``, one
        request per chunk (a consistent snapshot, verified against its count).  Membership edits
        bump only the side that cannot list it (``MembersFrom``: addGalleryImages bumps the
        gallery), so a bumped one's members are re-read this way."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        document = queries.members_query(owner, relation)
        op = queries.operation_name(document)
        pairs: list[tuple[int, int]] = []
        for chunk in _chunks(wanted, self.ids_chunk_size):
            data = self.execute(document, {"ids": [str(i) for i in chunk]})
            result = self._result(data, owner.query, document)
            count = self._int(result.get("count"), f"{owner.query}.count")
            items = result.get(owner.result_key)
            if not isinstance(items, list):
                raise StashProtocolError(f"{op}: {owner.result_key} is not a list")
            members = set(chunk)
            owner_ids: set[int] = set()
            for item in items:
                owner_id = self._id(item, document)
                owner_ids.add(owner_id)
                targets = item.get(relation.field)
                if not isinstance(targets, list):
                    raise StashProtocolError(
                        f"{op}: {owner.singular} {owner_id} has no {relation.field} list"
                    )
                for target in targets:
                    target_id = self._id(target, document)
                    if target_id in members:
                        pairs.append((owner_id, target_id))
            if len(owner_ids) != len(items) or len(owner_ids) != count:
                raise StashConsistencyError(
                    f"{owner.name} of {len(chunk)} {relation.target_type}: {len(items)} {owner.name} "
                    f"({len(owner_ids)} unique) but count {count}"
                )
        return sorted(set(pairs))

    def image_ids_of_gallery(self, gallery_id: int) -> list[int]:
        """Ids of the images in a gallery (sorted), in one request (a consistent snapshot),
        verified against the count from the same answer."""
        document = queries.IMAGES_OF_GALLERY
        data = self.execute(document, {"gallery_id": str(gallery_id)})
        result = self._result(data, "findImages", document)
        count = self._int(result.get("count"), "findImages.count")
        items = result.get("images")
        if not isinstance(items, list):
            raise StashProtocolError("ImagesOfGallery: images is not a list")
        ids = {self._id(item, document) for item in items}
        if len(ids) != len(items) or len(ids) != count:
            raise StashConsistencyError(
                f"gallery {gallery_id}: {len(items)} image ids ({len(ids)} unique) but count {count}"
            )
        return sorted(ids)


__all__ = ["Filter", "Page", "ReadStopped", "StashClient", "StashHealth"]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StashProtocolError(f"{what}: expected a number, got {value!r}")
    return value
