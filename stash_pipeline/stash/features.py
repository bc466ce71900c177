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
from dataclasses import dataclass, field, replace

from stash_pipeline.model import EntitySpec
from stash_pipeline.model.records import Column, Relation

FEATURES_OPERATION = "Features"
FEATURES = (
    f"query {FEATURES_OPERATION} {{ version {{ version }} "
    "__schema { types { name fields(includeDeprecated: true) { name args { name } } inputFields { name } } } }"
)
"""The server's version, the field names of its types and their arguments, in one request."""


def version_of(data: dict) -> str:
    """The server's version from an answer that asked ``version { version }`` (the features
    request and the sensor's probe both do, and a sync records it: they must name it alike)."""
    return (data.get("version") or {}).get("version") or "unknown"


NO_FIND_FILES = "findFiles (renamed or rescanned files are seen by full syncs only)"


@dataclass(frozen=True)
class Unoffered:
    """A column the server does not offer, and the older field it is read from instead, if any."""

    entity_type: str
    column: str
    fallback: str | None = None
    where: str | None = None  # the concrete types that lack it, where others have it (files)
    text: str | None = None  # what is missing, when it is not a field (a query)

    def describe(self) -> str:
        """``studios.urls, read from studios.url``, ``tags.sort_name`` or ``files.format (on
        ImageFile)``."""
        if self.text:
            return self.text
        name = f"{self.entity_type}.{self.column}"
        if self.fallback:
            return f"{name}, read from {self.entity_type}.{self.fallback}"
        return f"{name} (on {self.where})" if self.where else name


@dataclass(frozen=True)
class Adapted:
    """An entity type as this server can be asked for it."""

    spec: EntitySpec
    unoffered: tuple[Unoffered, ...]


@dataclass(frozen=True)
class ServerFeatures:
    version: str
    fields: Mapping[str, frozenset[str]]  # GraphQL type name → its field (or input field) names
    arguments: Mapping[str, frozenset[str]] = field(default_factory=dict)  # "Type.field" → args

    @classmethod
    def from_answer(cls, data: Mapping) -> "ServerFeatures":
        types = data.get("__schema", {}).get("types") or []
        fields = {
            t["name"]: frozenset(f["name"] for f in (t.get("fields") or t.get("inputFields") or []))
            for t in types
            if isinstance(t, dict) and t.get("name")
        }
        arguments = {
            f"{t['name']}.{f['name']}": frozenset(a["name"] for a in f.get("args") or [])
            for t in types
            if isinstance(t, dict) and t.get("name")
            for f in t.get("fields") or []
            if f.get("args")
        }
        return cls(version=version_of(data), fields=fields, arguments=arguments)

    def takes(self, type_name: str, field_name: str, argument: str) -> bool:
        return argument in self.arguments.get(f"{type_name}.{field_name}", frozenset())

    def offers(self, type_name: str, field: str) -> bool:
        return field in self.fields.get(type_name, frozenset())

    def adapt(self, spec: EntitySpec) -> Adapted:
        """``spec`` with what this server lacks left out (NULL) or read from its fallback."""
        columns, unoffered = self._columns(spec)
        relations: list[Relation] = []
        for rel in spec.relations:
            if not self.offers(spec.type_name, rel.field):  # Tag.stash_ids before v0.30
                unoffered.append(Unoffered(spec.name, rel.field))
                continue
            adapted, lacking = self._relation(spec, rel)
            relations.append(adapted)
            unoffered += lacking
        if spec.embedded_relations and not self.lists_files:
            unoffered.append(Unoffered(spec.name, "", text=NO_FIND_FILES))
        keyset = spec.keyset and self.offers(spec.filter_type, "id")
        by_ids = spec.by_ids and self.takes("Query", spec.query, "ids")
        adapted_spec = replace(
            spec, columns=tuple(columns), relations=tuple(relations), keyset=keyset, by_ids=by_ids
        )
        if adapted_spec == spec:
            return Adapted(spec, ())
        return Adapted(adapted_spec, tuple(dict.fromkeys(unoffered)))

    def _columns(self, spec: EntitySpec) -> tuple[list[Column], list[Unoffered]]:
        columns: list[Column] = []
        unoffered: list[Unoffered] = []
        for column in spec.columns:
            root = column.element.list_field if column.element else column.name
            if column.on is not None:
                root = column.field  # a field of some of the concrete types (files)
                on = tuple(t for t in column.on if self.offers(t, root))
                if on == column.on:
                    columns.append(column)
                    continue
                lacking = ", ".join(t for t in column.on if t not in on)
                columns.append(replace(column, on=on, absent=not on))
                unoffered.append(Unoffered(spec.name, column.name, where=lacking if on else None))
            elif self.offers(spec.type_name, root):
                columns.append(column)
            elif column.fallback and self.offers(spec.type_name, column.fallback):
                columns.append(replace(column, source=f"{column.name}: {column.fallback}"))
                unoffered.append(Unoffered(spec.name, column.name, column.fallback))
            else:
                columns.append(replace(column, absent=True))
                unoffered.append(Unoffered(spec.name, column.name))
        return columns, unoffered

    def _relation(self, spec: EntitySpec, rel: Relation) -> tuple[Relation, list[Unoffered]]:
        """A relation with the element fields the server lacks left out: an embedded type's
        columns (files' folders before v0.29), a child table's extras (StashID.updated_at)."""
        if rel.embedded is not None:
            inner = self.adapt(rel.embedded)
            if inner.spec == rel.embedded:
                return rel, []
            selection = f"{rel.field} {{ {inner.spec.embedded_selection(rel.element_types)} }}"
            return replace(rel, embedded=inner.spec, selection=selection), list(inner.unoffered)
        if rel.element_type is None:
            return rel, []
        lacking = [e for e in rel.extra if not self.offers(rel.element_type, e.key)]
        if not lacking:
            return rel, []
        extras = tuple(replace(e, absent=True) if e in lacking else e for e in rel.extra)
        keys = " ".join(dict.fromkeys([*rel.target_path[:1], *(e.key for e in extras if not e.absent)]))
        unoffered = [Unoffered(rel.table, e.column) for e in lacking]
        return replace(rel, extra=extras, selection=f"{rel.field} {{ {keys} }}"), unoffered

    @property
    def lists_files(self) -> bool:
        """``findFiles`` (v0.29.3 on): files changed without a bump of their owner can be found."""
        return self.offers("Query", "findFiles")


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
