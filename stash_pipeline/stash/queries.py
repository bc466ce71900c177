"""Every GraphQL document the client sends, built from the entity model (``stash_pipeline.model``).

Rules baked in here (docs/stash-behaviour.md §2, docs/architecture.md §2 rule 1):
- every find query carries a ``filter`` with ``per_page`` *and* ``sort: "id"``: without ``per_page``
  Stash returns 25 rows, and without ``sort`` scenes/images/galleries have no ORDER BY at all (the
  one exception, ``latest_updated_at_query``, reads a single value sorted by ``updated_at``);
- paged queries also say ``direction: ASC`` and ``page``; count probes use ``per_page: 0``;
- entity filters travel as variables of the spec's filter type, so callers can pass any criterion
  and the client can AND the keyset ``id`` criterion into it;
- ``count`` is selected only where it is used: for scenes and images selecting it costs a count query.

Documents are cached (``functools.cache``): the same string for the same arguments, so building one
is free after the first time.  ``all_documents()`` yields every document the client can send, for the
validation test against the real schema.
"""

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache

from stash_pipeline.model import ENTITY_SPECS, SPECS_BY_NAME, EntitySpec, Relation
from stash_pipeline.model.entities import any_spec
from stash_pipeline.stash.features import FEATURES

SORT = 'sort: "id"'
HEALTH_OPERATION = "Health"
STATS_OPERATION = "Stats"
COUNT_MANY_OPERATION = "CountMany"
IMAGES_OF_GALLERY_OPERATION = "ImagesOfGallery"

_OPERATION_RE = re.compile(r"^\s*(?:query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")


def operation_name(document: str) -> str | None:
    """The name of a document's (first) operation, for logs and error messages."""
    match = _OPERATION_RE.match(document)
    return match.group(1) if match else None


def _title(spec: EntitySpec) -> str:
    """``Scenes``, ``SceneMarkers``: the stem of a type's operation names."""
    return "".join(part[:1].upper() + part[1:] for part in spec.name.split("_"))


def _paged_filter() -> str:
    return f"filter: {{page: $page, per_page: $per_page, {SORT}, direction: ASC}}"


@cache
def page_query(spec: EntitySpec, with_count: bool = True) -> str:
    """One page of full entities: ``$filter`` (the spec's filter type), ``$page``, ``$per_page``."""
    count = "count " if with_count else ""
    suffix = "Page" if with_count else "PageNoCount"
    return (
        f"query {_title(spec)}{suffix}($filter: {spec.filter_type}, $page: Int!, $per_page: Int!) {{ "
        f"{spec.query}({spec.filter_arg}: $filter, {_paged_filter()}) {{ "
        f"{count}{spec.result_key} {{ {spec.selection} }} }} }}"
    )


class Selection(Enum):
    """What each entity of a page carries."""

    FULL = "full"  # every mirrored field (``spec.selection``)
    IDS = "ids"  # the id only: sweeps, which find deletions
    STAMPS = "stamps"  # id and updated_at: the stamp check, which finds what changed without a bump
    # of the text order (docs/architecture.md §6)


_LIGHT = {Selection.IDS: ("Ids", "id"), Selection.STAMPS: ("Stamps", "id updated_at")}


@cache
def light_query(spec: EntitySpec, selection: Selection, with_count: bool = True) -> str:
    """One page of ids, or of (id, updated_at) stamps: ``$filter``, ``$page``, ``$per_page`` (-1
    means all)."""
    name, fields = _LIGHT[selection]
    count = "count " if with_count else ""
    suffix = name if with_count else f"{name}NoCount"
    return (
        f"query {_title(spec)}{suffix}($filter: {spec.filter_type}, $page: Int!, $per_page: Int!) {{ "
        f"{spec.query}({spec.filter_arg}: $filter, {_paged_filter()}) {{ "
        f"{count}{spec.result_key} {{ {fields} }} }} }}"
    )


def ids_query(spec: EntitySpec, with_count: bool = True) -> str:
    """One page of ids only (the sweep)."""
    return light_query(spec, Selection.IDS, with_count)


def stamps_query(spec: EntitySpec, with_count: bool = True) -> str:
    """One page of (id, updated_at) stamps."""
    return light_query(spec, Selection.STAMPS, with_count)


def paged_query(spec: EntitySpec, selection: Selection, with_count: bool = True) -> str:
    """The page document of ``spec`` for ``selection``."""
    if selection is Selection.FULL:
        return page_query(spec, with_count)
    return light_query(spec, selection, with_count)


@cache
def count_query(spec: EntitySpec) -> str:
    """Count only (``per_page: 0``: Stash computes count and returns no rows)."""
    return (
        f"query {_title(spec)}Count($filter: {spec.filter_type}) {{ "
        f"{spec.query}({spec.filter_arg}: $filter, filter: {{per_page: 0, {SORT}}}) {{ count }} }}"
    )


@cache
def tail_probe_query(spec: EntitySpec) -> str:
    """Two counts in one read transaction: all rows matching ``$filter`` and those matching
    ``$tail`` (the same filter AND ``id > last``).  Used to verify the end of a keyset read."""
    probe = f"filter: {{per_page: 0, {SORT}}}"
    return (
        f"query {_title(spec)}TailProbe($filter: {spec.filter_type}, $tail: {spec.filter_type}) {{ "
        f"total: {spec.query}({spec.filter_arg}: $filter, {probe}) {{ count }} "
        f"tail: {spec.query}({spec.filter_arg}: $tail, {probe}) {{ count }} }}"
    )


@cache
def latest_updated_at_query(spec: EntitySpec) -> str:
    """The newest ``updated_at`` of the rows matching ``$filter``: one row sorted by ``updated_at``
    DESC.

    The one document not sorted by id, on purpose: it reads a single value, not a page, so the
    unstable tie order of ``updated_at`` (docs/stash-behaviour.md §2) cannot matter.  Stash sorts the stored TEXT,
    so this is the largest string, the same order the incremental cursor uses.  An incremental read
    passes its own ``updated_at`` criterion: the newest row is among its rows, and the server sorts
    those, not the whole table.
    """
    return (
        f"query {_title(spec)}LatestUpdatedAt($filter: {spec.filter_type}) {{ "
        f"{spec.query}({spec.filter_arg}: $filter, "
        f'filter: {{page: 1, per_page: 1, sort: "updated_at", direction: DESC}}) {{ '
        f"{spec.result_key} {{ id updated_at }} }} }}"
    )


@cache
def by_ids_query(spec: EntitySpec) -> str:
    """Full entities by id (``ids: [ID!]``).  Stash ignores filter and paging when ``ids`` is set,
    but we still send ``per_page``/``sort`` so no document of ours ever lacks them."""
    return (
        f"query {_title(spec)}ByIds($ids: [ID!]) {{ "
        f"{spec.query}(ids: $ids, filter: {{per_page: -1, {SORT}}}) {{ "
        f"{spec.result_key} {{ {spec.selection} }} }} }}"
    )


def above_zero_filter(columns: Sequence[str]) -> dict | None:
    """Rows where any of ``columns`` is above zero (criteria ORed), ``None`` if there are none."""
    combined: dict | None = None
    for name in reversed(columns):
        criterion: dict = {name: {"modifier": "GREATER_THAN", "value": 0}}
        combined = criterion if combined is None else {**criterion, "OR": combined}
    return combined


def active_filter(spec: EntitySpec) -> dict | None:
    """Rows with any activity: one numeric unbumped column above zero, ``None`` if none."""
    return above_zero_filter([c.name for c in spec.unbumped_columns if c.kind.name in ("int", "float")])


@cache
def activity_query(spec: EntitySpec) -> str:
    """``id`` and the unbumped columns of every row matching ``$filter``, in one answer."""
    fields = " ".join(["id", *(c.name for c in spec.unbumped_columns)])
    return (
        f"query {_title(spec)}Activity($filter: {spec.filter_type}) {{ "
        f"{spec.query}({spec.filter_arg}: $filter, filter: {{page: 1, per_page: -1, {SORT}, direction: ASC}}) {{ "
        f"count {spec.result_key} {{ {fields} }} }} }}"
    )


@cache
def links_query(spec: EntitySpec) -> str:
    """Every row's unbumped relations (``Relation.unbumped``), all rows in one answer."""
    fields = " ".join(["id", *(r.selection for r in spec.unbumped_relations)])
    return (
        f"query {_title(spec)}Links {{ "
        f"{spec.query}(filter: {{page: 1, per_page: -1, {SORT}, direction: ASC}}) {{ "
        f"count {spec.result_key} {{ {fields} }} }} }}"
    )


def count_aliases(name: str) -> tuple[str, str]:
    """The aliases of one type in the ``count_many`` document: (filtered, total)."""
    return f"{name}_changed", f"{name}_total"


def count_variable(name: str) -> str:
    """The variable carrying one type's filter in the ``count_many`` document."""
    return f"{name}_f"


def _canonical(names: Iterable[str]) -> tuple[str, ...]:
    wanted = set(names)
    unknown = wanted - set(SPECS_BY_NAME)
    if unknown:
        raise KeyError(f"unknown entity types {sorted(unknown)}; expected some of {list(SPECS_BY_NAME)}")
    return tuple(s.name for s in ENTITY_SPECS if s.name in wanted)


def count_many_query(filtered: Sequence[str], totals: Sequence[str]) -> str:
    """One document counting several types at once (aliases; one request, one read transaction).

    ``filtered`` types get ``<name>_changed`` (their filter in ``$<name>_f``); ``totals`` types get
    ``<name>_total`` (no filter).  Argument order does not matter: the document is canonical.
    """
    return _count_many_query(_canonical(filtered), _canonical(totals))


@cache
def _count_many_query(filtered: tuple[str, ...], totals: tuple[str, ...]) -> str:
    probe = f"filter: {{per_page: 0, {SORT}}}"
    params: list[str] = []
    fields: list[str] = []
    for spec in ENTITY_SPECS:
        changed, total = count_aliases(spec.name)
        if spec.name in filtered:
            var = count_variable(spec.name)
            params.append(f"${var}: {spec.filter_type}")
            fields.append(f"{changed}: {spec.query}({spec.filter_arg}: ${var}, {probe}) {{ count }}")
        if spec.name in totals:
            fields.append(f"{total}: {spec.query}({probe}) {{ count }}")
    if not fields:
        raise ValueError("count_many needs at least one entity type")
    head = f"query {COUNT_MANY_OPERATION}({', '.join(params)})" if params else f"query {COUNT_MANY_OPERATION}"
    return f"{head} {{ {' '.join(fields)} }}"


PROBES_OPERATION = "SensorProbe"


@dataclass(frozen=True)
class Probe:
    """One question of the sensor's probe: a count of a type's rows (all of them when it has no
    filter), or their stamps (``stamps``: ``(id, updated_at)`` of every row matching the filter),
    or some columns of every row matching it (``columns``)."""

    alias: str
    type_name: str
    filtered: bool
    stamps: bool = False
    links: bool = False  # every row with its unbumped relations (``links_query``)
    columns: tuple[str, ...] = ()  # these columns of every row matching the filter, with the ids


def links_probe(name: str) -> Probe:
    """The sensor's probe of a type's unbumped links (``Relation.unbumped``)."""
    return Probe(f"{name}_links", name, False, links=True)


def listed_activity_probe(spec: EntitySpec) -> Probe:
    """The sensor's probe of the activity no ``stats`` total follows (``EntitySpec.listed_activity``)."""
    return Probe(f"{spec.name}_listed_activity", spec.name, True, columns=spec.listed_activity)


def files_probe(name: str) -> Probe:
    """The sensor's probe of the stamps of a type's files (renames and rescans bump no owner)."""
    return Probe(f"{name}_files", "files", True, stamps=True)


def sensor_probes(name: str) -> tuple[Probe, Probe, Probe, Probe]:
    """The smart-sync sensor's probes of one type: the total (deletions show as a smaller one),
    the stamps at or above the stamp bound, and the two counts it falls back to when those are
    too many to list on every tick (newer than the cursor, in the overlap window)."""
    return (
        Probe(f"{name}_total", name, False),
        Probe(f"{name}_stamps", name, True, stamps=True),
        Probe(f"{name}_newer", name, True),
        Probe(f"{name}_window", name, True),
    )


@cache
def probes_query(probes: tuple[Probe, ...], with_totals: bool = False) -> str:
    """Any number of probes in ONE document (one request per tick, one read transaction), and
    ``stats``' activity totals and the server's version when asked (``with_totals``)."""
    count_filter = f"filter: {{per_page: 0, {SORT}}}"
    all_rows = f"filter: {{page: 1, per_page: -1, {SORT}, direction: ASC}}"
    params: list[str] = []
    fields: list[str] = []
    for probe in probes:
        spec = any_spec(probe.type_name)
        args = f"{spec.filter_arg}: ${probe.alias}, " if probe.filtered else ""
        if probe.filtered:
            params.append(f"${probe.alias}: {spec.filter_type}")
        if probe.links:
            rels = " ".join(r.selection for r in spec.unbumped_relations)
            fields.append(
                f"{probe.alias}: {spec.query}({all_rows}) {{ count {spec.result_key} {{ id {rels} }} }}"
            )
        elif probe.columns:
            fields.append(
                f"{probe.alias}: {spec.query}({args}{all_rows}) "
                f"{{ count {spec.result_key} {{ id {' '.join(probe.columns)} }} }}"
            )
        elif probe.stamps:
            fields.append(
                f"{probe.alias}: {spec.query}({args}{all_rows}) {{ count {spec.result_key} {{ id updated_at }} }}"
            )
        else:
            fields.append(f"{probe.alias}: {spec.query}({args}{count_filter}) {{ count }}")
    if with_totals:
        fields.append(f"stats {{ {' '.join(ACTIVITY_TOTALS)} }}")
        fields.append("version { version }")
    if not fields:
        raise ValueError("a probe needs at least one question")
    head = f"query {PROBES_OPERATION}({', '.join(params)})" if params else f"query {PROBES_OPERATION}"
    return f"{head} {{ {' '.join(fields)} }}"


IMAGES_OF_GALLERY = (
    f"query {IMAGES_OF_GALLERY_OPERATION}($gallery_id: ID!) {{ "
    "findImages(image_filter: {galleries: {value: [$gallery_id], modifier: INCLUDES}}, "
    f"filter: {{page: 1, per_page: -1, {SORT}, direction: ASC}}) {{ count images {{ id }} }} }}"
)
"""Member image ids of one gallery, all in one request (one consistent snapshot).  Gallery has no
images list field; image membership is read from the image side (docs/stash-behaviour.md §5)."""


@cache
def members_query(owner: EntitySpec, relation: Relation) -> str:
    """The owners listing any of ``$ids`` in ``relation``, each with that relation's ids: the
    membership a type cannot list itself (``MembersFrom``), read from the other side in one
    request per chunk (one consistent snapshot).  images.galleries → ``ImagesOfGalleries``."""
    target = SPECS_BY_NAME[relation.target_type]
    return (
        f"query {_title(owner)}Of{_title(target)}($ids: [ID!]) {{ "
        f"{owner.query}({owner.filter_arg}: {{{relation.field}: {{value: $ids, modifier: INCLUDES}}}}, "
        f"filter: {{page: 1, per_page: -1, {SORT}, direction: ASC}}) {{ "
        f"count {owner.result_key} {{ id {relation.field} {{ id }} }} }} }}"
    )


def members_queries() -> Iterator[tuple[EntitySpec, EntitySpec, Relation, str]]:
    """(type whose members they are, owner type, owner's relation, document) for every type that
    reads its membership from the other side."""
    for spec in ENTITY_SPECS:
        if spec.members_from is not None:
            owner = SPECS_BY_NAME[spec.members_from.owner]
            relation = owner.relation(spec.members_from.relation)
            yield spec, owner, relation, members_query(owner, relation)


HEALTH = (
    f"query {HEALTH_OPERATION} {{ version {{ version hash build_time }} "
    "systemStatus { status databaseSchema appSchema } }"
)
"""Version and schema status; never ``latestversion`` (it calls GitHub)."""

ACTIVITY_TOTALS = ("total_o_count", "total_play_count", "total_play_duration")
"""``stats`` totals that move with every play, O count and activity save (none of which bumps)."""

STATS = (
    f"query {STATS_OPERATION} {{ stats {{ scene_count image_count gallery_count performer_count "
    f"studio_count group_count tag_count {' '.join(ACTIVITY_TOTALS)} }} }}"
)
"""Cheap global counts of the seven types."""

STATS_KEYS: dict[str, str] = {spec.name: f"{spec.singular}_count" for spec in ENTITY_SPECS if spec.in_stats}
"""Each type's count in ``stats`` (``scene_count``, ...)."""


def all_documents(specs: Sequence[EntitySpec] = ENTITY_SPECS, lists_files: bool = True) -> Iterator[str]:
    """Every document the client can send with these specs (as adapted to a server, see
    ``stash.features``; ``count_many``: every shape class it can take: all seven filtered and
    totalled, totals only, and each type alone, both ways); the file check's only where the
    server lists files (``findFiles``)."""
    embedded = {rel.embedded.name: rel.embedded for spec in specs for rel in spec.embedded_relations}
    for files in embedded.values() if lists_files else ():
        yield light_query(files, Selection.STAMPS, True)
        yield by_ids_query(files)
    for spec in specs:
        yield page_query(spec, True)
        yield page_query(spec, False)
        yield ids_query(spec, True)
        yield ids_query(spec, False)
        yield stamps_query(spec, True)
        yield stamps_query(spec, False)
        yield count_query(spec)
        yield tail_probe_query(spec)
        if spec.by_ids:
            yield by_ids_query(spec)
        yield latest_updated_at_query(spec)
        if spec.unbumped_columns:
            yield activity_query(spec)
        if spec.unbumped_relations:
            yield links_query(spec)
    names = [s.name for s in ENTITY_SPECS]
    yield count_many_query(names, names)
    yield count_many_query([], names)
    for name in names:
        yield count_many_query([name], [name])
        yield count_many_query([name], [])
    links = tuple(links_probe(s.name) for s in specs if s.unbumped_relations)
    files = tuple(files_probe(s.name) for s in specs if s.embedded_relations) if lists_files else ()
    listed = tuple(listed_activity_probe(s) for s in specs if s.listed_activity)
    yield probes_query((*(probe for n in names for probe in sensor_probes(n)), *links, *files, *listed), True)
    yield IMAGES_OF_GALLERY
    for *_specs, document in members_queries():
        yield document
    yield HEALTH
    yield STATS
    yield FEATURES


__all__ = [
    "HEALTH",
    "IMAGES_OF_GALLERY",
    "STATS",
    "STATS_KEYS",
    "all_documents",
    "by_ids_query",
    "count_aliases",
    "count_many_query",
    "count_query",
    "count_variable",
    "ids_query",
    "latest_updated_at_query",
    "members_queries",
    "members_query",
    "operation_name",
    "page_query",
    "probes_query",
    "sensor_probes",
    "stamps_query",
    "tail_probe_query",
]
