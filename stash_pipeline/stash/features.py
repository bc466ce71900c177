"""What a Stash server offers, learnt once per run, and the model adapted to it.

Users run many releases (docs/stash-behaviour.md §5): a field a release lacks makes Stash refuse
the whole document (HTTP 422).  So before a sync selects anything, the client asks the server for
its version and the fields of its types in one introspection request, and every entity type is
*adapted*: a column the server lacks is not selected and is stored as NULL, or read from the older
field that carries the same data where the model declares one (``Column.fallback``: a studio's
``url`` before ``urls``); a type whose filter lacks the ``id`` criterion is offset-paged.  What was
left out is reported per type (run metadata, ``stash-pipeline status``).
"""

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from stash_pipeline.model import EntitySpec
from stash_pipeline.model.records import Column

FEATURES_OPERATION = "Features"
FEATURES = (
    f"query {FEATURES_OPERATION} {{ version {{ version }} "
    "__schema { types { name fields(includeDeprecated: true) { name } inputFields { name } } } }"
)
"""The server's version and the field names of its types, in one request."""


@dataclass(frozen=True)
class Unoffered:
    """A column the server does not offer, and the older field it is read from instead, if any."""

    entity_type: str
    column: str
    fallback: str | None = None

    def describe(self) -> str:
        """``studios.urls, read from studios.url`` or ``tags.sort_name``."""
        name = f"{self.entity_type}.{self.column}"
        return f"{name}, read from {self.entity_type}.{self.fallback}" if self.fallback else name


@dataclass(frozen=True)
class Adapted:
    """An entity type as this server can be asked for it."""

    spec: EntitySpec
    unoffered: tuple[Unoffered, ...]


@dataclass(frozen=True)
class ServerFeatures:
    version: str
    fields: Mapping[str, frozenset[str]]  # GraphQL type name → its field (or input field) names

    @classmethod
    def from_answer(cls, data: Mapping) -> "ServerFeatures":
        types = data.get("__schema", {}).get("types") or []
        fields = {
            t["name"]: frozenset(f["name"] for f in (t.get("fields") or t.get("inputFields") or []))
            for t in types
            if isinstance(t, dict) and t.get("name")
        }
        version = (data.get("version") or {}).get("version") or "unknown"
        return cls(version=version, fields=fields)

    def offers(self, type_name: str, field: str) -> bool:
        return field in self.fields.get(type_name, frozenset())

    def adapt(self, spec: EntitySpec) -> Adapted:
        """``spec`` with what this server lacks left out (NULL) or read from its fallback."""
        columns: list[Column] = []
        unoffered: list[Unoffered] = []
        for column in spec.columns:
            root = column.element.list_field if column.element else column.name
            if self.offers(spec.type_name, root):
                columns.append(column)
            elif column.fallback and self.offers(spec.type_name, column.fallback):
                columns.append(replace(column, source=f"{column.name}: {column.fallback}"))
                unoffered.append(Unoffered(spec.name, column.name, column.fallback))
            else:
                columns.append(replace(column, absent=True))
                unoffered.append(Unoffered(spec.name, column.name))
        keyset = spec.keyset and self.offers(spec.filter_type, "id")
        if not unoffered and keyset == spec.keyset:
            return Adapted(spec, ())
        return Adapted(replace(spec, columns=tuple(columns), keyset=keyset), tuple(unoffered))


# A run is one process (the CLI's, or the run worker Dagster starts for it), so a run asks once;
# a process that outlives runs asks again after a while (Stash may have been upgraded meanwhile).
CACHE_SECONDS = 300.0
_CACHE: dict[str, tuple[float, ServerFeatures]] = {}
_CACHE_LOCK = threading.Lock()


def cached(url: str) -> ServerFeatures | None:
    """What a server at ``url`` offered when this process last asked, if recently."""
    with _CACHE_LOCK:
        entry = _CACHE.get(url)
    if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
        return None
    return entry[1]


def remember(url: str, features: ServerFeatures) -> None:
    with _CACHE_LOCK:
        _CACHE[url] = (time.monotonic(), features)


def forget(url: str | None = None) -> None:
    """Drop what was learnt (about one server, or all): the next run asks again."""
    with _CACHE_LOCK:
        if url is None:
            _CACHE.clear()
        else:
            _CACHE.pop(url, None)
