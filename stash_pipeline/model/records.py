"""The records an entity type is declared with: columns, single references, link tables and the
behaviour that differs between types.  The engine reads these fields; it never tests a type's name.
"""

from dataclasses import dataclass

from stash_pipeline.model.kinds import Kind


@dataclass(frozen=True)
class Element:
    """A value read from inside another field: one element of a list (``files[0].path``) or, with
    ``index`` None, a single nested object (``parent_folder.path``)."""

    list_field: str
    index: int | None
    key: str


@dataclass(frozen=True)
class Column:
    """A scalar column of the mirror table, read from GraphQL field ``source`` (default: ``name``)."""

    name: str
    kind: Kind
    source: str | None = None  # GraphQL selection producing it, if not the same name
    element: Element | None = None  # read from a list's element rather than field ``name``
    # Stash changes this field without bumping updated_at: only full syncs refresh it
    # (docs/stash-behaviour.md, "Changes that bump nothing").
    unbumped: bool = False
    # An older field carrying the same data, read where the server lacks this one (Studio.url for
    # urls before v0.30); the value is normalised by the kind (a string becomes a one-item list).
    fallback: str | None = None
    # Set by ``stash.features`` when the server offers neither: not selected, stored as NULL.
    absent: bool = False
    # The GraphQL types that have this field, where a type's rows come in several (a file is a
    # VideoFile, ImageFile or GalleryFile): selected only inside their fragments.  None: the
    # type itself; (): always there (``__typename``).
    on: tuple[str, ...] | None = None

    @property
    def selection(self) -> str | None:
        return None if self.absent else (self.source or self.name)

    @property
    def field(self) -> str:
        """The GraphQL field it is read from (what a server must offer): ``files`` for
        ``files[0].path``, ``fingerprint`` for ``oshash: fingerprint(type: "oshash")``."""
        if self.element is not None:
            return self.element.list_field
        head = (self.source or self.name).split("(")[0].split("{")[0]
        return head.split(":")[-1].strip()

    def mirror_columns(self) -> list[tuple[str, str]]:
        """(column, DuckDB type) this column writes: the value and the kind's companions."""
        return self.kind.mirror_columns(self.name)


@dataclass(frozen=True)
class Ref:
    """A single reference stored on the entity row: ``studio_id`` from ``studio { id }``."""

    column: str
    field: str
    target: str  # entity type (plural) it points at


@dataclass(frozen=True)
class LinkExtra:
    """A link-table column beside the two ids, read from the list element: ``scene_index``."""

    column: str
    key: str
    kind: Kind
    absent: bool = False  # the server lacks it (StashID.updated_at before v0.28): stored NULL


@dataclass(frozen=True)
class Relation:
    """A link table owned by this entity, replaced wholesale whenever the owner is fetched.

    ``selection`` is the GraphQL sub-selection; ``target_path`` reads the target id from one list
    element; ``extra`` names additional link columns read from the element.
    """

    table: str  # mirror link table, e.g. scene_tags
    field: str  # GraphQL field on the owner, e.g. tags
    owner_column: str  # e.g. scene_id
    target_column: str  # e.g. tag_id
    # Entity type name of the target (plural), e.g. tags; None for rows that are the owner's own
    # data with no entity behind them (stash ids, play history, captions): a child table.
    target_type: str | None
    selection: str  # e.g. "tags { id }"
    target_path: tuple[str, ...] = ("id",)  # (): the element itself is the value (a list of times)
    extra: tuple[LinkExtra, ...] = ()
    target_kind: Kind | None = None  # None: an id (BIGINT); else the value's kind (a stash id: STR)
    # False: every element is a row, repeats included (two plays in the same second are two plays).
    distinct: bool = True
    # A BOOLEAN link column true for the list's first element (Stash lists the primary file first).
    primary_column: str | None = None
    # The elements are whole entities of this (embedded) type, merged into its own table whenever
    # an owner is read: a scene's files.  ``element_types`` are their concrete GraphQL types (more
    # than one: a union, selected with inline fragments).
    embedded: "EntitySpec | None" = None
    element_types: tuple[str, ...] = ()
    element_type: str | None = None  # the GraphQL type of a child table's elements (StashID)
    # The join table belongs to the other side in Stash; this side refreshes it too, because Stash
    # bumps only this side when the link changes here (galleryUpdate(scene_ids), tag child_ids, ...).
    reverse: bool = False
    # Stash changes this link without bumping either side (addGroupSubGroups): every incremental
    # run lists it for all rows and compares (``mirror.links``), and the sensor compares a digest.
    unbumped: bool = False


@dataclass(frozen=True)
class MembersFrom:
    """Membership this type cannot list itself and reads from the other side: a gallery has no
    images field, so a bumped gallery's members are re-read from the images that list it
    (``relation`` of entity type ``owner``, e.g. images.galleries → image_galleries)."""

    owner: str
    relation: str  # the owner's relation field


@dataclass(frozen=True)
class EntitySpec:
    name: str  # plural, also the mirror table and asset name: scenes
    singular: str  # scene
    query: str  # findScenes
    filter_arg: str  # scene_filter
    filter_type: str  # SceneFilterType
    result_key: str  # scenes
    keyset: bool  # Stash offers an `id` criterion: page with id > last
    order: int  # dependency order (referenced types first)
    columns: tuple[Column, ...]
    relations: tuple[Relation, ...] = ()
    refs: tuple[Ref, ...] = ()
    # A merge into a row of this type changes it without a bump (tagsMerge adds aliases to the
    # destination silently): after a delete, every row is re-read.  Cheap for the small types.
    reread_all_after_delete: bool = False
    members_from: MembersFrom | None = None
    # Stash's ``stats`` totals that move whenever this type's unbumped columns do (plays and O
    # counts bump nothing): the sensor compares them, and an incremental run checks the activity.
    activity_totals: tuple[str, ...] = ()
    # Unbumped columns that no ``stats`` total follows (a resume point saved without a play moves
    # none): the sensor lists the rows where one is above zero, and compares their digest.
    listed_activity: tuple[str, ...] = ()
    # Stash's ``stats`` counts it (``scene_count``); markers it does not.
    in_stats: bool = True
    # Its query takes ``ids`` (findSceneMarkers before v0.28 does not: rows are then picked from a
    # read of all of them).  Set by ``stash.features``.
    by_ids: bool = True
    # The concrete GraphQL types of its rows where there are several (a file is a VideoFile,
    # ImageFile or GalleryFile): its selection puts each type's fields in an inline fragment.
    element_types: tuple[str, ...] = ()
    description: str = ""

    @property
    def unbumped_relations(self) -> tuple[Relation, ...]:
        """Relations Stash changes without a bump of either side."""
        return tuple(r for r in self.relations if r.unbumped)

    @property
    def unbumped_columns(self) -> tuple[Column, ...]:
        """Columns Stash changes without a bump of ``updated_at`` (O counts, plays, activity)."""
        return tuple(c for c in self.columns if c.unbumped and not c.absent)

    @property
    def selection(self) -> str:
        """The GraphQL selection for one entity of this type (what the mirror reads)."""
        if self.element_types:
            return self.embedded_selection(self.element_types)
        parts = ["id", "created_at", "updated_at"]
        parts += [c.selection for c in self.columns if c.selection]
        parts += [f"{ref.field} {{ id }}" for ref in self.refs]
        parts += [r.selection for r in self.relations]
        return " ".join(dict.fromkeys(parts))

    @property
    def type_name(self) -> str:
        """The GraphQL type: Studio, Tag, ..., Image, SceneMarker."""
        return "".join(part[:1].upper() + part[1:] for part in self.singular.split("_"))

    @property
    def referenced_types(self) -> set[str]:
        """Synced types this one points at (not child tables, not the embedded types it carries)."""
        targets = {r.target_type for r in self.relations if r.target_type and r.embedded is None}
        return {ref.target for ref in self.refs} | targets

    def relation(self, field: str) -> Relation:
        return next(r for r in self.relations if r.field == field)

    @property
    def embedded_relations(self) -> tuple[Relation, ...]:
        """Relations whose elements are entities of an embedded type (a scene's files)."""
        return tuple(r for r in self.relations if r.embedded is not None)

    def embedded_selection(self, element_types: tuple[str, ...]) -> str:
        """This (embedded) type's fields as they are selected in a list of ``element_types``: flat
        for one concrete type, inside one inline fragment per type for a union or interface."""
        always = [c.selection for c in self.columns if c.on == () and c.selection]

        def fields(graphql_type: str) -> list[str]:
            return [c.selection for c in self.columns if c.on and graphql_type in c.on and c.selection]

        # Not ``id created_at``: that pair marks where an owner begins in a raw page
        # (``arrow_pages.last_entity_id``).
        base = ["id", "updated_at", "created_at"]
        if len(element_types) == 1:
            return " ".join(dict.fromkeys([*base, *always, *fields(element_types[0])]))
        fragments = [
            f"... on {t} {{ {' '.join(dict.fromkeys([*base, *fields(t)]))} }}" for t in element_types
        ]
        return " ".join([*always, *fragments])
