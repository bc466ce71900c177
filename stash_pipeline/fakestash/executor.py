"""GraphQL execution for the fake Stash: graphql-core validates, a generated projector executes.

Why not ``graphql.execute``: it resolves every field through a Python call chain and is far too slow
to serve 1000-scene pages at the rates a real Stash does.  Here each document is parsed, validated
and compiled ONCE (LRU keyed by query text, like gqlgen's query cache); compiling turns every
selection set into the source of a small Python function that builds the response dict directly
from the store's entity dicts (``{"id": str(o["id"]), "title": o.get("title"), ...}``), and
``exec``s it.  Per request only variables are coerced, root arguments evaluated, and the projector
run.

Semantics reproduced from Stash (docs/stash-behaviour.md §2-§3): paging (per_page null 25 / negative all /
0 none), per-type sort allow-lists, no ORDER BY without a sort for scenes/images/galleries (the
fake returns a different order on every request), ties shuffled per request, ``ids`` in input
order with Stash's errors, timestamp criteria compared as raw TEXT with SQLite's numeric coercion
of bare numbers, the ``id`` criterion (scenes/images/galleries only), ``galleries`` multi
criterion, AND/OR/NOT with the one-per-level rule, and count/aggregates only when selected.

Errors: parse/validation/variable errors give HTTP 422 (gqlgen's status) with
``extensions.code``; resolver errors give HTTP 200 ``{"errors": [{"message", "path"}], "data":
null}``.
"""

import heapq
import itertools
import random
import re
import sys
import threading
import traceback
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from copy import copy
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    GraphQLSyntaxError,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    build_ast_schema,
    execute_sync,
    get_named_type,
    get_nullable_type,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_directive_values, get_variable_values
from graphql.utilities import get_operation_ast

from stash_pipeline.fakestash.clock import ServerClock
from stash_pipeline.fakestash.store import Entity, Store
from stash_pipeline.fakestash.versions import CURRENT, release

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
FAKE_HASH = "fa6e5a5h"
UNORDERED_SHUFFLE_LIMIT = 5000  # above this, "no ORDER BY" is a random rotation (O(page), not O(n))


def _without_lacked_arguments(type_name: str, node: Any, lacks: frozenset[str]) -> Any:
    """A field definition without the arguments a release lacks (``Query.findSceneMarkers(ids)``)."""
    arguments = getattr(node, "arguments", None)
    if not arguments:
        return node
    kept = tuple(a for a in arguments if f"{type_name}.{node.name.value}({a.name.value})" not in lacks)
    if len(kept) == len(arguments):
        return node
    trimmed = copy(node)
    trimmed.arguments = kept
    return trimmed


@cache
def load_schema(version: str = CURRENT) -> GraphQLSchema:
    """The fake's own SDL (``schema.graphql``) as release ``version`` has it (``versions.py``: the
    fields it lacks removed, and types left without fields), built once per process."""
    lacks = release(version).lacks
    document = parse(SCHEMA_PATH.read_text(encoding="utf-8"))
    if not lacks:
        return build_ast_schema(document)
    definitions = []
    for node in document.definitions:
        fields = getattr(node, "fields", None)
        if fields is None or not hasattr(node, "name"):
            definitions.append(node)
            continue
        kept = tuple(
            _without_lacked_arguments(node.name.value, f, lacks)
            for f in fields
            if f"{node.name.value}.{f.name.value}" not in lacks
        )
        if kept:
            definitions.append(copy(node))
            definitions[-1].fields = kept
    return build_ast_schema(DocumentNode(definitions=tuple(definitions)))


class QueryError(Exception):
    """A resolver error: reported in ``errors`` with HTTP 200, like gqlgen."""


class RequestError(Exception):
    """A parse/validation/variable error: HTTP 422, nothing executed."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid request")
        self.errors = errors


def _error_dicts(errors: Iterable[GraphQLError], code: str) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        item: dict[str, Any] = {"message": err.message}
        if err.locations:
            item["locations"] = [{"line": loc.line, "column": loc.column} for loc in err.locations]
        item["extensions"] = {"code": code}
        out.append(item)
    return out


def internal_error(reason: str) -> QueryError:
    """What Stash's recover hook turns a Go panic into."""
    return QueryError(f"Internal system error. Error <{reason}>")


# ============================================================================ per-type tables

KINDS_BY_QUERY = {
    "findScenes": ("scene", "scenes", "scene_filter", "scene_ids"),
    "findImages": ("image", "images", "image_filter", "image_ids"),
    "findGalleries": ("gallery", "galleries", "gallery_filter", None),
    "findPerformers": ("performer", "performers", "performer_filter", "performer_ids"),
    "findStudios": ("studio", "studios", "studio_filter", None),
    "findTags": ("tag", "tags", "tag_filter", None),
    "findGroups": ("group", "groups", "group_filter", None),
    "findSceneMarkers": ("scene_marker", "scene_markers", "scene_marker_filter", None),
    "findFiles": ("file", "files", "file_filter", None),
}
SINGLE_QUERIES = {
    "findScene": "scene",
    "findImage": "image",
    "findGallery": "gallery",
    "findPerformer": "performer",
    "findStudio": "studio",
    "findTag": "tag",
    "findGroup": "group",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SORTS: dict[str, frozenset[str]] = {
    "scene": _words(
        "bitrate created_at code date file_count filesize duration file_mod_time framerate "
        "group_scene_number id interactive interactive_speed last_o_at last_played_at "
        "movie_scene_number o_counter organized performer_count play_count play_duration resume_time "
        "path perceptual_similarity random rating resolution studio tag_count title updated_at "
        "performer_age"
    ),
    "image": _words(
        "created_at date file_count file_mod_time filesize id o_counter path performer_count random "
        "rating resolution tag_count title updated_at"
    ),
    "gallery": _words(
        "created_at date file_count file_mod_time id images_count path performer_count random rating "
        "tag_count title updated_at"
    ),
    "performer": _words(
        "birthdate career_length created_at galleries_count height id images_count last_o_at "
        "last_played_at measurements name o_counter penis_length play_count random rating "
        "scenes_count scenes_duration tag_count updated_at weight"
    ),
    "studio": _words(
        "child_count created_at galleries_count id images_count name scenes_count scenes_duration "
        "random rating tag_count updated_at"
    ),
    "tag": _words(
        "created_at galleries_count groups_count id images_count movies_count studios_count name "
        "performers_count random scene_markers_count scenes_count scenes_duration updated_at"
    ),
    "group": _words(
        "created_at date duration id name random rating scenes_count o_counter sub_group_order "
        "tag_count updated_at"
    ),
    "scene_marker": _words(
        "created_at id title random scene_id scenes_updated_at seconds updated_at duration"
    ),
    "file": _words("created_at id path random updated_at"),
}
DEFAULT_SORT = {"scene_marker": "title"}  # otherwise "name" (findFiles: none, like the three below)
UNSORTED_BY_DEFAULT = frozenset({"scene", "image", "gallery", "file"})  # no ORDER BY when sort is null/""
KEYSET_KINDS = frozenset({"scene", "image", "gallery"})  # the kinds whose filter has an `id` criterion
# A file's owner counts (FileFilterType.scene_count, ...): each file belongs to one owner here.
FILE_OWNER_COUNTS = {"scene_count": "scene", "image_count": "image", "gallery_count": "gallery"}

TS_MODIFIERS = frozenset(
    {"EQUALS", "NOT_EQUALS", "GREATER_THAN", "LESS_THAN", "BETWEEN", "NOT_BETWEEN", "IS_NULL", "NOT_NULL"}
)
INT_MODIFIERS = TS_MODIFIERS

# SQLite applies NUMERIC affinity to a bound value compared with a DATETIME column: text that is a
# well-formed number becomes INTEGER/REAL, which sorts below every TEXT value.
_SQLITE_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


class _Num:
    """A bound that SQLite coerced to a number: below every stored timestamp string."""

    def __repr__(self) -> str:
        return "<num>"


NUM = _Num()


def sqlite_bound(value: str) -> "str | _Num":
    return NUM if _SQLITE_NUMBER.match(value) else value


# ============================================================================ request context


class RequestContext:
    """Per-request state handed to computed fields: the store, variables and cached indexes."""

    def __init__(self, executor: "Executor", variables: dict[str, Any]) -> None:
        self.executor = executor
        self.store = executor.store
        self.variables = variables

    def index(self, name: str) -> Any:
        return self.executor.index(name)


# ============================================================================ field resolvers
# How a field of a parent type is read from a store dict.  Anything not listed uses the default:
# ``o.get(name)`` for leaves, nested dicts/lists of dicts for object types.


@dataclass(frozen=True)
class Ref:
    """Single nullable entity reference stored as an id under ``key``."""

    kind: str
    key: str


@dataclass(frozen=True)
class RefList:
    """List of entity ids stored under ``key`` (the owning side of a join table)."""

    kind: str
    key: str


@dataclass(frozen=True)
class Pairs:
    """List of (entity id, payload) stored under ``key``; projected as {target: entity, payload: p}."""

    kind: str
    key: str
    target: str
    payload: str


@dataclass(frozen=True)
class Computed:
    """Value computed by ``fn(rc, o, args)``; ``shape`` says how to project it.

    shape: "scalar" (returned as is), "ref" (an entity id), "list" (entity ids),
    "pairs" (list of (entity id, payload) like Pairs).
    """

    fn: Callable[[RequestContext, Entity, dict[str, Any]], Any]
    shape: str = "scalar"
    kind: str | None = None
    target: str = "group"
    payload: str = "description"


def _first_url(rc: RequestContext, o: Entity, args: dict[str, Any]) -> str | None:
    urls = o.get("urls") or ()
    return urls[0] if urls else None


def _gallery_scenes(rc: RequestContext, o: Entity, args: dict[str, Any]) -> list[int]:
    return sorted(rc.store.gallery_scenes.get(o["id"], ()))


def _gallery_image_count(rc: RequestContext, o: Entity, args: dict[str, Any]) -> int:
    return len(rc.store.gallery_images.get(o["id"], ()))


def _gallery_cover(rc: RequestContext, o: Entity, args: dict[str, Any]) -> int | None:
    cover = o.get("cover_image_id")
    if cover is not None:
        return cover
    members = rc.store.gallery_images.get(o["id"])
    return min(members) if members else None


def _file_fingerprint(rc: RequestContext, o: Entity, args: dict[str, Any]) -> str | None:
    wanted = args.get("type")
    for fp in o.get("fingerprints") or ():
        if fp.get("type") == wanted:
            return fp.get("value")
    return None


def _frozen_values(index: dict[int, list[Any]]) -> dict[int, tuple[Any, ...]]:
    return {key: tuple(values) for key, values in index.items()}


def _members(owner: str, key: str) -> Callable[[RequestContext, Entity, dict[str, Any]], list[int]]:
    """Owners (of type ``owner``) whose ``key`` references ``o``: the other side of a relation."""

    def fn(rc: RequestContext, o: Entity, args: dict[str, Any]) -> list[int]:
        return rc.index(f"members:{owner}:{key}").get(o["id"], [])

    return fn


def _with_descendants(rc: RequestContext, kind: str, root: int, depth: int | None) -> list[int]:
    """``root`` plus its descendants up to ``depth`` levels (-1: all), for *_count(depth:)."""
    if not depth:
        return [root]
    children = rc.index(f"children:{kind}")
    seen = {root}
    frontier = [root]
    level = 0
    while frontier and (depth < 0 or level < depth):
        level += 1
        nxt = []
        for node in frontier:
            for child in children.get(node, ()):
                if child not in seen:
                    seen.add(child)
                    nxt.append(child)
        frontier = nxt
    return list(seen)


def _count_of(owner: str, key: str, hierarchical: str | None = None) -> Computed:
    def fn(rc: RequestContext, o: Entity, args: dict[str, Any]) -> int:
        index = rc.index(f"members:{owner}:{key}")
        if hierarchical is None:
            return len(index.get(o["id"], ()))
        roots = _with_descendants(rc, hierarchical, o["id"], args.get("depth"))
        found: set[int] = set()
        for root in roots:
            found.update(index.get(root, ()))
        return len(found)

    return Computed(fn)


def _performer_groups(rc: RequestContext, o: Entity, args: dict[str, Any]) -> list[int]:
    scenes = rc.store.tables["scene"]
    groups: set[int] = set()
    for sid in rc.index("members:scene:performer_ids").get(o["id"], ()):
        groups.update(g for g, _ in scenes[sid]["groups"])
    return sorted(groups)


def _children(kind: str) -> Callable[[RequestContext, Entity, dict[str, Any]], list[int]]:
    def fn(rc: RequestContext, o: Entity, args: dict[str, Any]) -> list[int]:
        return rc.index(f"children:{kind}").get(o["id"], [])

    return fn


def _sub_groups(rc: RequestContext, o: Entity, args: dict[str, Any]) -> list[tuple[int, str | None]]:
    return rc.index("sub_groups").get(o["id"], [])


def _len_of(fn: Callable[[RequestContext, Entity, dict[str, Any]], Any]) -> Computed:
    return Computed(lambda rc, o, args: len(fn(rc, o, args)))


_file_fp = Computed(_file_fingerprint)

RESOLVERS: dict[tuple[str, str], Any] = {
    ("Scene", "studio"): Ref("studio", "studio_id"),
    ("Scene", "performers"): RefList("performer", "performer_ids"),
    ("Scene", "tags"): RefList("tag", "tag_ids"),
    ("Scene", "galleries"): RefList("gallery", "gallery_ids"),
    ("Scene", "groups"): Pairs("group", "groups", "group", "scene_index"),
    ("Scene", "url"): Computed(_first_url),
    ("Image", "studio"): Ref("studio", "studio_id"),
    ("Image", "performers"): RefList("performer", "performer_ids"),
    ("Image", "tags"): RefList("tag", "tag_ids"),
    ("Image", "galleries"): RefList("gallery", "gallery_ids"),
    ("Image", "url"): Computed(_first_url),
    ("Image", "visual_files"): "files",  # union list read from the "files" key
    ("Gallery", "studio"): Ref("studio", "studio_id"),
    ("Gallery", "performers"): RefList("performer", "performer_ids"),
    ("Gallery", "tags"): RefList("tag", "tag_ids"),
    ("Gallery", "scenes"): Computed(_gallery_scenes, "list", "scene"),
    ("Gallery", "image_count"): Computed(_gallery_image_count),
    ("Gallery", "cover"): Computed(_gallery_cover, "ref", "image"),
    ("Gallery", "url"): Computed(_first_url),
    ("Performer", "tags"): RefList("tag", "tag_ids"),
    ("Performer", "url"): Computed(_first_url),
    ("Performer", "scene_count"): _count_of("scene", "performer_ids"),
    ("Performer", "image_count"): _count_of("image", "performer_ids"),
    ("Performer", "gallery_count"): _count_of("gallery", "performer_ids"),
    ("Performer", "group_count"): _len_of(_performer_groups),
    ("Performer", "scenes"): Computed(_members("scene", "performer_ids"), "list", "scene"),
    ("Performer", "groups"): Computed(_performer_groups, "list", "group"),
    ("Studio", "parent_studio"): Ref("studio", "parent_id"),
    ("Studio", "child_studios"): Computed(_children("studio"), "list", "studio"),
    ("Studio", "tags"): RefList("tag", "tag_ids"),
    ("Studio", "url"): Computed(_first_url),
    ("Studio", "scene_count"): _count_of("scene", "studio_id", "studio"),
    ("Studio", "image_count"): _count_of("image", "studio_id", "studio"),
    ("Studio", "gallery_count"): _count_of("gallery", "studio_id", "studio"),
    ("Studio", "group_count"): _count_of("group", "studio_id", "studio"),
    ("Studio", "groups"): Computed(_members("group", "studio_id"), "list", "group"),
    ("Tag", "parents"): RefList("tag", "parent_ids"),
    ("Tag", "children"): Computed(_children("tag"), "list", "tag"),
    ("Tag", "parent_count"): Computed(lambda rc, o, args: len(o.get("parent_ids") or ())),
    ("Tag", "child_count"): _len_of(_children("tag")),
    ("Tag", "scene_count"): _count_of("scene", "tag_ids", "tag"),
    ("Tag", "image_count"): _count_of("image", "tag_ids", "tag"),
    ("Tag", "gallery_count"): _count_of("gallery", "tag_ids", "tag"),
    ("Tag", "performer_count"): _count_of("performer", "tag_ids", "tag"),
    ("Tag", "studio_count"): _count_of("studio", "tag_ids", "tag"),
    ("Tag", "group_count"): _count_of("group", "tag_ids", "tag"),
    ("Group", "studio"): Ref("studio", "studio_id"),
    ("Group", "tags"): RefList("tag", "tag_ids"),
    ("Group", "containing_groups"): Pairs("group", "containing", "group", "description"),
    ("Group", "sub_groups"): Computed(_sub_groups, "pairs", "group", "group", "description"),
    ("Group", "sub_group_count"): _len_of(_sub_groups),
    ("Group", "scene_count"): _count_of("scene", "groups"),
    ("Group", "scenes"): Computed(_members("scene", "groups"), "list", "scene"),
    ("VideoFile", "fingerprint"): _file_fp,
    ("ImageFile", "fingerprint"): _file_fp,
    ("GalleryFile", "fingerprint"): _file_fp,
    ("BasicFile", "fingerprint"): _file_fp,
    ("Scene", "scene_markers"): Computed(_members("scene_marker", "scene_id"), "list", "scene_marker"),
    ("SceneMarker", "scene"): Ref("scene", "scene_id"),
    ("SceneMarker", "primary_tag"): Ref("tag", "primary_tag_id"),
    ("SceneMarker", "tags"): RefList("tag", "tag_ids"),
}

ENTITY_TYPE_KIND = {
    "Scene": "scene",
    "Image": "image",
    "Gallery": "gallery",
    "Performer": "performer",
    "Studio": "studio",
    "Tag": "tag",
    "Group": "group",
    "SceneMarker": "scene_marker",
}


def file_typename(o: dict[str, Any]) -> str:
    """A file dict's GraphQL type: its explicit ``__typename``, else VideoFile or ImageFile."""
    name = o.get("__typename")
    if name in ("VideoFile", "ImageFile", "GalleryFile"):
        return name
    return "VideoFile" if "duration" in o or "video_codec" in o else "ImageFile"


TYPE_RESOLVERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "VisualFile": file_typename,
    "BaseFile": file_typename,
}

# ============================================================================ compilation


@dataclass
class Binder:
    """A computed field occurrence: bound per request to its coerced arguments."""

    computed: Computed
    field_def: GraphQLField
    node: FieldNode
    static_args: dict[str, Any] | None

    def bind(self, rc: RequestContext) -> Callable[[Entity], Any]:
        args = self.static_args
        if args is None:
            args = get_argument_values(self.field_def, self.node, rc.variables)
        fn = self.computed.fn
        return lambda o: fn(rc, o, args)


@dataclass
class RootField:
    key: str
    name: str
    field_def: GraphQLField
    node: FieldNode
    nullable: bool
    projector: str | None = None  # generated function name for object results
    # For find* result types: (response key, field name, projector name or None)
    result_fields: list[tuple[str, str, str | None]] = field(default_factory=list)
    selected: frozenset[str] = frozenset()


@dataclass
class Plan:
    roots: list[RootField]
    builder: Callable[[Store, list[Callable[[Entity], Any]]], dict[str, Callable[[Entity], Any]]]
    binders: list[Binder]
    introspection: DocumentNode | None
    operation: OperationDefinitionNode
    source: str = ""


def _has_variables(node: Any) -> bool:
    """Whether an AST node (arguments of a field) mentions a variable."""
    from graphql.language import VariableNode, visit
    from graphql.language.visitor import BREAK, Visitor

    found = False

    class Finder(Visitor):
        def enter_variable(self, _node: VariableNode, *_args: Any) -> Any:
            nonlocal found
            found = True
            return BREAK

    for arg in node.arguments or ():
        visit(arg, Finder())
    return found


class Compiler:
    """Turns one operation into generated projector source (see module docstring)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables  # only for @skip/@include
        self.defs: list[str] = []
        self.binders: list[Binder] = []
        self.binder_names: list[str] = []
        self.extra_globals: dict[str, Any] = {}
        self.source = ""
        self.counter = itertools.count()

    # ------------------------------------------------------------------ field collection
    def _included(self, node: Any) -> bool:
        if not node.directives:
            return True
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip and skip.get("if"):
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include and not include.get("if"))

    def _applies(self, type_condition: Any, otype: GraphQLObjectType) -> bool:
        if type_condition is None:
            return True
        cond = self.schema.get_type(type_condition.name.value)
        if cond is otype:
            return True
        if isinstance(cond, (GraphQLUnionType, GraphQLInterfaceType)):
            return self.schema.is_sub_type(cond, otype)
        return False

    def collect(
        self, otype: GraphQLObjectType, selections: Iterable[SelectionNode]
    ) -> "OrderedDict[str, list[FieldNode]]":
        fields: OrderedDict[str, list[FieldNode]] = OrderedDict()
        self._collect_into(otype, selections, fields, set())
        return fields

    def _collect_into(
        self,
        otype: GraphQLObjectType,
        selections: Iterable[SelectionNode],
        fields: "OrderedDict[str, list[FieldNode]]",
        visited: set[str],
    ) -> None:
        for sel in selections:
            if not self._included(sel):
                continue
            if isinstance(sel, FieldNode):
                key = sel.alias.value if sel.alias else sel.name.value
                fields.setdefault(key, []).append(sel)
            elif isinstance(sel, InlineFragmentNode):
                if self._applies(sel.type_condition, otype):
                    self._collect_into(otype, sel.selection_set.selections, fields, visited)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name in visited:
                    continue
                visited.add(name)
                frag = self.fragments[name]
                if self._applies(frag.type_condition, otype):
                    self._collect_into(otype, frag.selection_set.selections, fields, visited)

    @staticmethod
    def sub_selections(nodes: list[FieldNode]) -> list[SelectionNode]:
        out: list[SelectionNode] = []
        for node in nodes:
            if node.selection_set:
                out.extend(node.selection_set.selections)
        return out

    # ------------------------------------------------------------------ code generation
    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def object_fn(self, otype: GraphQLObjectType, selections: list[SelectionNode]) -> str:
        """Generate ``def pN(o): return {...}`` for an object type; returns its name."""
        name = self.fresh("p")
        fields = self.collect(otype, selections)
        items = []
        for key, nodes in fields.items():
            items.append(f"{key!r}: {self.field_expr(otype, nodes)}")
        body = ", ".join(items)
        self.defs.append(f"def {name}(o):\n    return {{{body}}}")
        return name

    def abstract_fn(self, atype: Any, selections: list[SelectionNode]) -> str:
        name = self.fresh("p")
        resolver = TYPE_RESOLVERS[atype.name]
        resolver_name = f"TR_{atype.name}"
        self.extra_globals[resolver_name] = resolver
        lines = [f"def {name}(o):", f"    t = {resolver_name}(o)"]
        possible = self.schema.get_possible_types(atype)
        for i, otype in enumerate(possible):
            sub = self.object_fn(otype, selections)
            if i == len(possible) - 1:
                lines.append(f"    return {sub}(o)")
            else:
                lines.append(f"    if t == {otype.name!r}:\n        return {sub}(o)")
        self.defs.append("\n".join(lines))
        return name

    def sub_fn(self, target: Any, nodes: list[FieldNode]) -> str:
        named = get_named_type(target)
        selections = self.sub_selections(nodes)
        if isinstance(named, GraphQLObjectType):
            return self.object_fn(named, selections)
        return self.abstract_fn(named, selections)

    def id_only(self, otype: Any, nodes: list[FieldNode]) -> str | None:
        """For an entity sub-selection of only id/__typename: a dict template over id ``i``."""
        named = get_named_type(otype)
        if not isinstance(named, GraphQLObjectType):
            return None
        fields = self.collect(named, self.sub_selections(nodes))
        parts = []
        for key, fnodes in fields.items():
            fname = fnodes[0].name.value
            if fname == "id":
                parts.append(f"{key!r}: str(i)")
            elif fname == "__typename":
                parts.append(f"{key!r}: {named.name!r}")
            else:
                return None
        return "{" + ", ".join(parts) + "}"

    def field_expr(self, otype: GraphQLObjectType, nodes: list[FieldNode]) -> str:
        fname = nodes[0].name.value
        if fname == "__typename":
            return repr(otype.name)
        fdef = otype.fields[fname]
        ftype = fdef.type
        nullable_type = get_nullable_type(ftype)
        is_list = isinstance(nullable_type, GraphQLList)
        named = get_named_type(ftype)
        spec = RESOLVERS.get((otype.name, fname))
        v = self.fresh("v")
        r = self.fresh("r")

        if isinstance(spec, Ref):
            table = f"T_{spec.kind}"
            tpl = self.id_only(ftype, nodes)
            if tpl is not None:
                return f"(None if ({v} := o.get({spec.key!r})) is None or {v} not in {table} else {tpl.replace('str(i)', f'str({v})')})"
            sub = self.sub_fn(ftype, nodes)
            return f"(None if ({v} := {table}.get(o.get({spec.key!r}))) is None else {sub}({v}))"
        if isinstance(spec, RefList):
            table = f"T_{spec.kind}"
            tpl = self.id_only(ftype, nodes)
            if tpl is not None:
                return f"[{tpl} for i in o[{spec.key!r}] if i in {table}]"
            sub = self.sub_fn(ftype, nodes)
            return f"[{sub}({r}) for i in o[{spec.key!r}] if ({r} := {table}.get(i)) is not None]"
        if isinstance(spec, Pairs):
            return self._pairs_expr(ftype, nodes, f"o[{spec.key!r}]", spec.kind, spec.target, spec.payload)
        if isinstance(spec, Computed):
            binder_index = len(self.binders)
            static_args: dict[str, Any] | None = {}
            if fdef.args:
                static_args = None if _has_variables(nodes[0]) else get_argument_values(fdef, nodes[0], {})
            self.binders.append(Binder(spec, fdef, nodes[0], static_args))
            call = f"F{binder_index}(o)"
            self.binder_names.append(f"F{binder_index}")
            if spec.shape == "scalar":
                return call
            table = f"T_{spec.kind}"
            if spec.shape == "ref":
                sub = self.sub_fn(ftype, nodes)
                return f"(None if ({v} := {table}.get({call})) is None else {sub}({v}))"
            if spec.shape == "list":
                tpl = self.id_only(ftype, nodes)
                if tpl is not None:
                    return f"[{tpl} for i in {call} if i in {table}]"
                sub = self.sub_fn(ftype, nodes)
                return f"[{sub}({r}) for i in {call} if ({r} := {table}.get(i)) is not None]"
            return self._pairs_expr(ftype, nodes, call, spec.kind or "group", spec.target, spec.payload)
        key = spec if isinstance(spec, str) else fname

        # Defaults: leaves read the key, objects project nested dicts.
        if not isinstance(named, (GraphQLObjectType, GraphQLUnionType, GraphQLInterfaceType)):
            if fname == "id" and named.name == "ID":
                if isinstance(ftype, GraphQLNonNull):
                    return 'str(o["id"])'
                return f'(None if ({v} := o.get("id")) is None else str({v}))'
            if isinstance(ftype, GraphQLNonNull) and is_list:
                return f"(o.get({key!r}) or [])"
            if named.name == "Map":
                return f"(o.get({key!r}) or {{}})"
            return f"o.get({key!r})"
        sub = self.sub_fn(ftype, nodes)
        if is_list:
            if isinstance(ftype, GraphQLNonNull):
                return f"[{sub}(x) for x in o.get({key!r}) or ()]"
            return f"(None if ({v} := o.get({key!r})) is None else [{sub}(x) for x in {v}])"
        return f"(None if ({v} := o.get({key!r})) is None else {sub}({v}))"

    def _pairs_expr(
        self, ftype: Any, nodes: list[FieldNode], source: str, kind: str, target: str, payload: str
    ) -> str:
        r = self.fresh("r")
        sub = self.sub_fn(ftype, nodes)
        return (
            f"[{sub}({{{target!r}: {r}, {payload!r}: p}}) for i, p in {source} "
            f"if ({r} := T_{kind}.get(i)) is not None]"
        )

    def build_module(self, roots_fns: list[str]) -> Callable[..., dict[str, Callable[[Entity], Any]]]:
        prologue = [
            "def _build(S, F):",
            *[f"    T_{k} = S.tables[{k!r}]" for k in ENTITY_TYPE_KIND.values()],
            *[f"    {name} = F[{int(name[1:])}]" for name in self.binder_names],
        ]
        body = []
        for d in self.defs:
            body.extend("    " + line for line in d.splitlines())
        ret = "    return {" + ", ".join(f"{n!r}: {n}" for n in roots_fns) + "}"
        source = "\n".join([*prologue, *body, ret])
        namespace: dict[str, Any] = dict(self.extra_globals)
        exec(compile(source, "<fakestash-projector>", "exec"), namespace)
        self.source = source
        return namespace["_build"]


def compile_plan(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict[str, Any]
) -> Plan:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        msg = (
            f"Unknown operation named '{operation_name}'."
            if operation_name
            else "Must provide operation name if query contains multiple operations."
        )
        raise RequestError([{"message": msg, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}])
    if operation.operation != OperationType.QUERY:
        raise RequestError(
            [
                {
                    "message": f"{operation.operation.value} not supported by the fake",
                    "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
                }
            ]
        )
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    comp = Compiler(schema, fragments, variables)
    query_type = schema.query_type
    assert query_type is not None
    roots: list[RootField] = []
    intro_nodes: list[FieldNode] = []
    root_fns: list[str] = []
    for key, nodes in comp.collect(query_type, operation.selection_set.selections).items():
        name = nodes[0].name.value
        if name in ("__schema", "__type"):
            intro_nodes.extend(nodes)
            continue
        if name == "__typename":
            roots.append(RootField(key, name, None, nodes[0], True))  # type: ignore[arg-type]
            continue
        fdef = query_type.fields[name]
        root = RootField(key, name, fdef, nodes[0], not isinstance(fdef.type, GraphQLNonNull))
        result_type = get_named_type(fdef.type)
        assert isinstance(result_type, GraphQLObjectType)
        if name in KINDS_BY_QUERY:
            list_key = KINDS_BY_QUERY[name][1]
            sub_fields = comp.collect(result_type, comp.sub_selections(nodes))
            for sub_key, sub_nodes in sub_fields.items():
                sub_name = sub_nodes[0].name.value
                fn = None
                if sub_name == list_key:  # findFiles lists an interface (BaseFile): per-type projectors
                    fn = comp.sub_fn(result_type.fields[sub_name].type, sub_nodes)
                    root_fns.append(fn)
                root.result_fields.append((sub_key, sub_name, fn))
            root.selected = frozenset(n for _, n, _ in root.result_fields)
        else:
            root.projector = comp.object_fn(result_type, comp.sub_selections(nodes))
            root_fns.append(root.projector)
            root.selected = frozenset(
                n[0].name.value for n in comp.collect(result_type, comp.sub_selections(nodes)).values()
            )
        roots.append(root)
    builder = comp.build_module(root_fns)
    introspection = None
    if intro_nodes:
        intro_op = OperationDefinitionNode(
            operation=OperationType.QUERY,
            name=operation.name,
            variable_definitions=operation.variable_definitions,
            directives=(),
            selection_set=SelectionSetNode(selections=tuple(intro_nodes)),
        )
        introspection = DocumentNode(definitions=(intro_op, *fragments.values()))
    return Plan(roots, builder, comp.binders, introspection, operation, comp.source)


# ============================================================================ filters


@dataclass
class CompiledFilter:
    """A filter split for fast paths: a top-level id criterion, a gallery source, the rest."""

    id_crit: dict[str, Any] | None  # top-level id criterion, applied by bisect on sorted ids
    galleries: dict[str, Any] | None  # top-level galleries criterion used as the row source
    predicate: Callable[[Entity], bool] | None  # everything else (None: no condition)
    key: bytes  # cache key of (galleries, predicate) part
    sole_ts: (
        tuple[str, str, Any, Any] | None
    )  # (column, modifier, lo, hi) if the rest is one timestamp criterion
    # A timestamp criterion ANDed with others (no OR/NOT): its index gives the candidates.
    first_ts: tuple[str, str, Any, Any] | None = None


def _check_combination(f: dict[str, Any]) -> None:
    present = [k for k in ("AND", "OR", "NOT") if f.get(k) is not None]
    if len(present) > 1:
        raise QueryError(
            f"illegal filter combination: cannot have {present[0]} and {present[1]} in the same filter"
        )


def _ts_predicate(
    column: str, crit: dict[str, Any], clock: ServerClock
) -> tuple[Callable[[dict[str, Any]], bool], tuple[str, Any, Any]]:
    """Predicate over a dict's ``column`` string, compared as SQLite compares TEXT with a bound."""
    mod = crit.get("modifier")
    if mod not in TS_MODIFIERS:
        raise internal_error("unsupported date modifier type")
    if mod == "IS_NULL":
        return (lambda r: r.get(column) is None), (mod, None, None)
    if mod == "NOT_NULL":
        return (lambda r: r.get(column) is not None), (mod, None, None)
    lo = sqlite_bound(crit["value"])
    hi: Any = None
    if mod in ("BETWEEN", "NOT_BETWEEN"):
        value2 = crit.get("value2")
        hi = sqlite_bound(value2 if value2 is not None else clock.stamp_tomorrow())

    def ge(s: str, b: Any) -> bool:
        return True if b is NUM else s >= b

    def le(s: str, b: Any) -> bool:
        return False if b is NUM else s <= b

    if mod == "EQUALS":
        if lo is NUM:
            return (lambda r: False), (mod, lo, hi)
        return (lambda r: r.get(column) == lo), (mod, lo, hi)
    if mod == "NOT_EQUALS":
        if lo is NUM:
            return (lambda r: r.get(column) is not None), (mod, lo, hi)
        return (lambda r: (s := r.get(column)) is not None and s != lo), (mod, lo, hi)
    if mod == "GREATER_THAN":
        if lo is NUM:
            return (lambda r: r.get(column) is not None), (mod, lo, hi)
        return (lambda r: (s := r.get(column)) is not None and s > lo), (mod, lo, hi)
    if mod == "LESS_THAN":
        if lo is NUM:
            return (lambda r: False), (mod, lo, hi)
        return (lambda r: (s := r.get(column)) is not None and s < lo), (mod, lo, hi)
    if mod == "BETWEEN":
        return (lambda r: (s := r.get(column)) is not None and ge(s, lo) and le(s, hi)), (mod, lo, hi)
    return (
        lambda r: (s := r.get(column)) is not None and not (ge(s, lo) and le(s, hi)),
        (mod, lo, hi),
    )


def _int_predicate(column: str, crit: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    mod = crit.get("modifier")
    if mod not in INT_MODIFIERS:
        raise internal_error("unsupported int modifier type")
    v = crit["value"]
    v2 = crit.get("value2")
    v2 = 0 if v2 is None else v2  # Stash's getIntWhereClause default upper bound
    if mod == "EQUALS":
        return lambda r: r.get(column) == v
    if mod == "NOT_EQUALS":
        return lambda r: (x := r.get(column)) is not None and x != v
    if mod == "GREATER_THAN":
        return lambda r: (x := r.get(column)) is not None and x > v
    if mod == "LESS_THAN":
        return lambda r: (x := r.get(column)) is not None and x < v
    if mod == "BETWEEN":
        return lambda r: (x := r.get(column)) is not None and v <= x <= v2
    if mod == "NOT_BETWEEN":
        return lambda r: (x := r.get(column)) is not None and not v <= x <= v2
    if mod == "IS_NULL":
        return lambda r: r.get(column) is None
    return lambda r: r.get(column) is not None


def _parse_ids(values: Iterable[Any]) -> list[int]:
    out = []
    for value in values:
        try:
            out.append(int(value))
        except (TypeError, ValueError):
            raise QueryError(f'strconv.Atoi: parsing "{value}": invalid syntax') from None
    return out


def _multi_sets(crit: dict[str, Any]) -> tuple[str, list[int], list[int]]:
    mod = crit.get("modifier")
    if mod not in ("INCLUDES", "INCLUDES_ALL", "EXCLUDES", "IS_NULL", "NOT_NULL"):
        raise QueryError(f"unsupported multi criterion modifier: {mod}")
    return mod, _parse_ids(crit.get("value") or ()), _parse_ids(crit.get("excludes") or ())


def _galleries_predicate(crit: dict[str, Any]) -> Callable[[dict[str, Any]], bool] | None:
    mod, values, excludes = _multi_sets(crit)
    wanted = set(values)
    excluded = set(excludes)
    if mod == "IS_NULL":
        return lambda r: not r.get("gallery_ids")
    if mod == "NOT_NULL":
        return lambda r: bool(r.get("gallery_ids"))
    if not wanted and not excluded:
        return None
    if mod == "INCLUDES":
        if not wanted:
            return lambda r: not excluded.intersection(r.get("gallery_ids") or ())
        return lambda r: (
            bool(wanted.intersection(g := r.get("gallery_ids") or ())) and not excluded.intersection(g)
        )
    if mod == "INCLUDES_ALL":
        return lambda r: wanted.issubset(g := r.get("gallery_ids") or ()) and not excluded.intersection(g)
    return lambda r: not (wanted | excluded).intersection(r.get("gallery_ids") or ())


def _all(preds: list[Callable[[dict[str, Any]], bool]]) -> Callable[[dict[str, Any]], bool] | None:
    if not preds:
        return None
    if len(preds) == 1:
        return preds[0]
    return lambda r: all(p(r) for p in preds)


class FilterCompiler:
    def __init__(self, clock: ServerClock) -> None:
        self.clock = clock
        self.sole_ts: list[tuple[str, str, Any, Any]] = []

    def normalise(self, f: Any) -> Any:
        """Drop explicit nulls and fill BETWEEN's missing value2 with Stash's default (now + 1 day)."""
        if isinstance(f, dict):
            out = {k: self.normalise(v) for k, v in f.items() if v is not None}
            if out.get("modifier") in ("BETWEEN", "NOT_BETWEEN") and isinstance(out.get("value"), str):
                out.setdefault("value2", self.clock.stamp_tomorrow())
            return out
        return f

    def compile(self, kind: str, f: dict[str, Any] | None) -> CompiledFilter:
        f = self.normalise(f or {})
        _check_combination(f)
        id_crit = None
        galleries = None
        rest = dict(f)
        if "OR" not in f:
            id_crit = rest.pop("id", None)
            if id_crit is not None:
                _int_predicate("id", id_crit)  # validates the modifier
            if kind in ("image", "scene") and "galleries" in rest:
                mod, values, _ = _multi_sets(rest["galleries"])
                if mod in ("INCLUDES", "INCLUDES_ALL") and values:
                    galleries = rest.pop("galleries")
        predicate = self.predicate(kind, rest)
        sole_ts = None
        first_ts = None
        if galleries is None and not {"AND", "OR", "NOT"} & set(rest):
            for col, crit in rest.items():
                if col in ("updated_at", "created_at", "last_played_at"):
                    _, (mod, lo, hi) = _ts_predicate(col, crit, self.clock)
                    first_ts = (col, mod, lo, hi)
                    break
            if len(rest) == 1:
                sole_ts = first_ts
        key = orjson.dumps({"g": galleries, "r": rest}, option=orjson.OPT_SORT_KEYS)
        return CompiledFilter(id_crit, galleries, predicate, key, sole_ts, first_ts)

    def predicate(self, kind: str, f: dict[str, Any]) -> Callable[[dict[str, Any]], bool] | None:
        f = {k: v for k, v in f.items() if v is not None}
        _check_combination(f)
        preds: list[Callable[[dict[str, Any]], bool]] = []
        for key, value in f.items():
            if key in ("AND", "OR", "NOT"):
                continue
            if key == "id":
                preds.append(_int_predicate("id", value))
            elif key in ("o_counter", "play_count", "resume_time", "play_duration"):
                preds.append(_int_predicate(key, value))
            elif key in FILE_OWNER_COUNTS and kind == "file":
                owned = _int_predicate("n", value)
                owner = FILE_OWNER_COUNTS[key]
                preds.append(lambda r, owned=owned, owner=owner: owned({"n": int(r.get("_owner") == owner)}))
            elif key in ("updated_at", "created_at", "last_played_at", "mod_time"):
                preds.append(_ts_predicate(key, value, self.clock)[0])
            elif key == "galleries":
                p = _galleries_predicate(value)
                if p is not None:
                    preds.append(p)
            elif key == "files_filter":
                fp = self.predicate("file", value)
                if fp is not None:
                    preds.append(lambda r, fp=fp: any(fp(x) for x in r.get("files") or ()))
            else:
                raise QueryError(f"filter criterion {key} is not supported by the fake")
        base = _all(preds)
        if "AND" in f:
            sub = self.predicate(kind, f["AND"])
            if sub is not None:
                base = _all([p for p in (base, sub) if p is not None])
        elif "NOT" in f:
            sub = self.predicate(kind, f["NOT"])
            if sub is not None:
                neg = lambda r, sub=sub: not sub(r)  # noqa: E731
                base = _all([p for p in (base, neg) if p is not None])
        elif "OR" in f:
            sub = self.predicate(kind, f["OR"])
            if sub is not None and base is not None:
                left = base
                base = lambda r, left=left, sub=sub: left(r) or sub(r)  # noqa: E731
        return base


# ============================================================================ sorting


def _text_key(v: Any) -> Any:
    if v is None:
        return (0, "")
    if isinstance(v, str):
        return (1, v.casefold())
    return (1, v)


def _primary_file(r: Entity, key: str) -> Any:
    files = r.get("files") or ()
    return files[0].get(key) if files else None


def sort_key(executor: "Executor", kind: str, sort: str) -> Callable[[Entity], Any]:
    """Key function for an allowed sort name (NULLs first, as SQLite sorts them ascending)."""
    store = executor.store

    def nullable(fn: Callable[[Entity], Any]) -> Callable[[Entity], Any]:
        def key(r: Entity) -> Any:
            v = fn(r)
            return (0, 0) if v is None else (1, v)

        return key

    if sort in ("title", "name", "code", "path", "measurements", "career_length"):
        if kind == "tag" and sort == "name":
            return lambda r: _text_key(r["sort_name"] if r.get("sort_name") is not None else r.get("name"))
        if sort == "path":
            if kind == "gallery":
                return lambda r: _text_key((r.get("folder") or {}).get("path") or _primary_file(r, "path"))
            return lambda r: _text_key(_primary_file(r, "path"))
        return lambda r: _text_key(r.get(sort))
    simple = {
        "rating": "rating100",
        "height": "height_cm",
    }
    if sort in simple:
        col = simple[sort]
        return nullable(lambda r: r.get(col))
    file_keys = {
        "filesize": "size",
        "duration": "duration",
        "bitrate": "bit_rate",
        "framerate": "frame_rate",
        "file_mod_time": "mod_time",
        "resolution": "height",
    }
    if sort in file_keys and kind in ("scene", "image", "gallery"):
        col = file_keys[sort]
        return nullable(lambda r: _primary_file(r, col))
    if sort == "duration" and kind == "group":
        return nullable(lambda r: r.get("duration"))
    counts = {
        "file_count": lambda r: len(r.get("files") or ()),
        "tag_count": lambda r: len(r.get("tag_ids") or ()),
        "performer_count": lambda r: len(r.get("performer_ids") or ()),
        "images_count": lambda r: len(store.gallery_images.get(r["id"], ())),
        "child_count": lambda r: len(executor.index("children:studio").get(r["id"], ())),
    }
    if sort in counts:
        return counts[sort]
    if sort in (
        "scenes_count",
        "galleries_count",
        "images_count",
        "performers_count",
        "groups_count",
        "studios_count",
        "movies_count",
    ):
        owner = {
            "scenes_count": "scene",
            "galleries_count": "gallery",
            "images_count": "image",
            "performers_count": "performer",
            "groups_count": "group",
            "movies_count": "group",
            "studios_count": "studio",
        }[sort]
        ref_key = {
            "performer": "performer_ids",
            "tag": "tag_ids",
            "studio": "studio_id",
            "group": "groups",
        }.get(kind)
        if ref_key is None or (owner, ref_key) == ("group", "groups"):
            return lambda r: 0
        index_name = f"members:{owner}:{ref_key}"
        return lambda r: len(executor.index(index_name).get(r["id"], ()))
    if sort == "studio":
        studios = store.tables["studio"]
        return lambda r: _text_key((studios.get(r.get("studio_id")) or {}).get("name"))
    if sort in ("group_scene_number", "movie_scene_number"):
        return nullable(lambda r: r["groups"][0][1] if r.get("groups") else None)
    if sort == "last_o_at":
        return nullable(lambda r: max(r.get("o_history") or (), default=None))
    if sort in ("created_at", "updated_at"):
        # One call per row, not two: the "newest updated_at" probe walks the whole table.
        def timestamp(r: Entity, column: str = sort) -> Any:
            v = r.get(column)
            return (0, 0) if v is None else (1, v)

        return timestamp
    return nullable(lambda r: r.get(sort))


# ============================================================================ the executor


class Executor:
    """Executes GraphQL requests against one FakeStash's store (see module docstring)."""

    def __init__(self, fake: Any, cache_size: int = 1000) -> None:
        self.fake = fake
        self.store: Store = fake.store
        self.clock: ServerClock = fake.clock
        self.release = release(getattr(fake, "version", CURRENT))
        self.schema = load_schema(self.release.name)
        self._documents: OrderedDict[str, DocumentNode] = OrderedDict()
        self._plans: OrderedDict[tuple[str, str | None, bytes], Plan] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()  # the LRUs are used by several handler threads
        self._index_version = -1
        self._indexes: dict[str, Any] = {}
        self._matches: OrderedDict[tuple[str, bytes, int], list[int]] = OrderedDict()
        self.build_time = self._build_time()

    def _build_time(self) -> str:
        stamp = self.clock.stamp()  # 2006-01-02T15:04:05+07:00 → "2006-01-02 15:04:05"
        return stamp[:10] + " " + stamp[11:19]

    # ------------------------------------------------------------------ caches
    def document(self, query: str) -> DocumentNode:
        """Parse and validate once per query text (LRU)."""
        with self._cache_lock:
            doc = self._documents.get(query)
            if doc is not None:
                self._documents.move_to_end(query)
                return doc
        try:
            doc = parse(query)
        except GraphQLSyntaxError as err:
            raise RequestError(_error_dicts([err], "GRAPHQL_PARSE_FAILED")) from None
        errors = validate(self.schema, doc)
        if errors:
            raise RequestError(_error_dicts(errors, "GRAPHQL_VALIDATION_FAILED"))
        with self._cache_lock:
            self._documents[query] = doc
            if len(self._documents) > self._cache_size:
                self._documents.popitem(last=False)
        return doc

    def plan(self, query: str, operation_name: str | None, variables: dict[str, Any]) -> Plan:
        doc = self.document(query)
        directive_key = b""
        if "@" in query:  # @skip/@include may depend on variables: key the plan on them
            directive_key = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS, default=str)
        key = (query, operation_name, directive_key)
        with self._cache_lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = compile_plan(self.schema, doc, operation_name, variables)
        with self._cache_lock:
            self._plans[key] = plan
            if len(self._plans) > self._cache_size:
                self._plans.popitem(last=False)
        return plan

    def index(self, name: str) -> Any:
        """Reverse indexes computed from the store, cached until the store's next write."""
        if self._index_version != self.store.version:
            self._indexes.clear()
            self._index_version = self.store.version
        value = self._indexes.get(name)
        if value is None:
            value = self._build_index(name)
            self._indexes[name] = value
        return value

    def _build_index(self, name: str) -> Any:
        """Values are tuples of ids (or of id/description pairs): once a collection has seen that
        they hold no containers the cyclic GC stops tracking them, so caches of a million ids cost
        no full collection anything (a list of them is walked, item by item, every time)."""
        tables = self.store.tables
        if name == "stats":
            return self._stats_totals()
        parts = name.split(":")
        if parts[0] == "members":
            owner, key = parts[1], parts[2]
            out: dict[int, list[int]] = {}
            for row in tables[owner].values():
                value = row.get(key)
                if value is None:
                    continue
                if isinstance(value, list):
                    for target in value:
                        target_id = target[0] if isinstance(target, (list, tuple)) else target
                        out.setdefault(target_id, []).append(row["id"])
                else:
                    out.setdefault(value, []).append(row["id"])
            return _frozen_values(out)
        if parts[0] == "children":
            kind = parts[1]
            out = {}
            if kind == "studio":
                for row in tables["studio"].values():
                    if row.get("parent_id") is not None:
                        out.setdefault(row["parent_id"], []).append(row["id"])
            else:
                for row in tables["tag"].values():
                    for parent in row.get("parent_ids") or ():
                        out.setdefault(parent, []).append(row["id"])
            return _frozen_values(out)
        if parts[0] == "sub_groups":
            subs: dict[int, list[tuple[int, str | None]]] = {}
            for row in tables["group"].values():
                for parent, desc in row.get("containing") or ():
                    subs.setdefault(parent, []).append((row["id"], desc))
            return _frozen_values(subs)
        if parts[0] == "sorted_values":
            # A column's non-null values in order, with the id of each (an index on the column).
            kind, column = parts[1], parts[2]
            table = tables[kind]
            pairs = sorted((v, i) for i, row in table.items() if (v := row.get(column)) is not None)
            values = tuple(v for v, _i in pairs)
            return values, array("q", (i for _v, i in pairs)), len(table) - len(values)
        raise KeyError(name)

    # ------------------------------------------------------------------ entry point
    def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Run one request; returns (HTTP status, response object)."""
        try:
            if not isinstance(query, str) or not query.strip():
                raise RequestError(
                    [
                        {
                            "message": "no operation provided",
                            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
                        }
                    ]
                )
            if variables is not None and not isinstance(variables, dict):
                raise RequestError(
                    [
                        {
                            "message": "variables must be an object",
                            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
                        }
                    ]
                )
            plan = self.plan(query, operation_name, variables or {})
            coerced = get_variable_values(
                self.schema, plan.operation.variable_definitions or (), variables or {}
            )
            if isinstance(coerced, list):
                raise RequestError(_error_dicts(coerced, "GRAPHQL_VALIDATION_FAILED"))
        except RequestError as err:
            return 422, {"errors": err.errors, "data": None}
        with self.store.lock:
            return 200, self.run(plan, coerced, variables or {})

    def run(self, plan: Plan, variables: dict[str, Any], raw_variables: dict[str, Any]) -> dict[str, Any]:
        rc = RequestContext(self, variables)
        bound = [b.bind(rc) for b in plan.binders]
        fns = plan.builder(self.store, bound)
        data: dict[str, Any] | None = {}
        errors: list[dict[str, Any]] = []
        for root in plan.roots:
            try:
                value = self.resolve_root(root, fns, variables)
            except QueryError as err:
                errors.append({"message": str(err), "path": [root.key]})
                value = None
            except Exception as err:  # a bug in the fake: report it like Stash's recover hook
                traceback.print_exc(file=sys.stderr)
                errors.append({"message": f"Internal system error. Error <{err!r}>", "path": [root.key]})
                value = None
            if value is None and not root.nullable:
                data = None
            if data is not None:
                data[root.key] = value
        if plan.introspection is not None and data is not None:
            result = execute_sync(self.schema, plan.introspection, variable_values=raw_variables)
            if result.errors:
                errors.extend({"message": e.message, "path": e.path} for e in result.errors)
            data.update(result.data or {})
        if errors:
            return {"errors": errors, "data": data}
        return {"data": data}

    def resolve_root(
        self, root: RootField, fns: dict[str, Callable[[Entity], Any]], variables: dict[str, Any]
    ) -> Any:
        if root.name == "__typename":
            return "Query"
        args = get_argument_values(root.field_def, root.node, variables)
        if root.name in KINDS_BY_QUERY:
            return self.find_many(root, args, fns)
        if root.name in SINGLE_QUERIES:
            row = self.find_one(SINGLE_QUERIES[root.name], args)
            return None if row is None else fns[root.projector](row)  # type: ignore[index]
        if root.name == "version":
            obj: dict[str, Any] = {
                "version": self.release.version,
                "hash": FAKE_HASH,
                "build_time": self.build_time,
            }
        elif root.name == "systemStatus":
            obj = {
                "databaseSchema": self.release.database_schema,
                "databasePath": "/fakestash/stash-go.sqlite",
                "configPath": "/fakestash/config.yml",
                "appSchema": self.release.database_schema,
                "status": "OK",
                "os": "linux",
                "workingDir": "/fakestash",
                "homeDir": "/fakestash",
                "ffmpegPath": None,
                "ffprobePath": None,
            }
        elif root.name == "stats":
            obj = self.stats(root.selected)
        else:  # pragma: no cover - the schema declares nothing else
            raise QueryError(f"{root.name} is not implemented by the fake")
        return fns[root.projector](obj)  # type: ignore[index]

    def stats(self, selected: frozenset[str]) -> dict[str, Any]:
        t = self.store.tables
        out: dict[str, Any] = {
            "scene_count": len(t["scene"]),
            "image_count": len(t["image"]),
            "gallery_count": len(t["gallery"]),
            "performer_count": len(t["performer"]),
            "studio_count": len(t["studio"]),
            "group_count": len(t["group"]),
            "tag_count": len(t["tag"]),
        }
        if selected - out.keys():
            totals = self.index("stats")
            out.update((key, totals[key]) for key in selected if key in totals)
        return out

    def _stats_totals(self) -> dict[str, Any]:
        """The sums behind ``stats``, in one pass over scenes and one over images.  Stash computes
        them with SQL aggregates; summed in Python they cost the fake about 0.3 s per answer at 1M
        images, so they are cached until the next write (``index``) like the reverse indexes."""
        t = self.store.tables
        totals = dict.fromkeys(
            ("scenes_size", "scenes_duration", "total_play_duration", "images_size"), 0.0
        ) | dict.fromkeys(("total_o_count", "total_play_count", "scenes_played"), 0)
        for r in t["scene"].values():
            totals["scenes_size"] += _primary_file(r, "size") or 0
            totals["scenes_duration"] += _primary_file(r, "duration") or 0
            totals["total_o_count"] += r.get("o_counter") or 0
            totals["total_play_duration"] += r.get("play_duration") or 0
            plays = r.get("play_count") or 0
            totals["total_play_count"] += plays
            totals["scenes_played"] += 1 if plays else 0
        for r in t["image"].values():
            totals["images_size"] += _primary_file(r, "size") or 0
            totals["total_o_count"] += r.get("o_counter") or 0
        return totals

    def find_one(self, kind: str, args: dict[str, Any]) -> Entity | None:
        table = self.store.tables[kind]
        entity_id = args.get("id")
        if entity_id is not None:
            (parsed,) = _parse_ids([entity_id])
            return table.get(parsed)
        checksum = args.get("checksum")
        if checksum is None:
            return None
        for row in table.values():
            for file in row.get("files") or ():
                for fp in file.get("fingerprints") or ():
                    if fp.get("type") in ("md5", "oshash") and fp.get("value") == checksum:
                        return row
        return None

    # ------------------------------------------------------------------ find*
    def find_many(
        self, root: RootField, args: dict[str, Any], fns: dict[str, Callable[[Entity], Any]]
    ) -> dict[str, Any]:
        kind, list_key, filter_arg, deprecated_ids = KINDS_BY_QUERY[root.name]
        table = self.store.tables[kind]
        selected = root.selected
        need_count = "count" in selected
        aggregates = [n for n in ("duration", "filesize", "megapixels") if n in selected]
        ids = args.get("ids") or (args.get(deprecated_ids) if deprecated_ids else None)
        count = 0
        agg_rows: Iterable[Entity] = ()
        if ids:
            parsed = _parse_ids(ids)
            seen: set[int] = set()
            for entity_id in parsed:
                if entity_id in seen:
                    raise QueryError(f"validating ids: duplicate id found: {entity_id}")
                seen.add(entity_id)
            rows = []
            for entity_id in parsed:
                row = table.get(entity_id)
                if row is None:
                    raise QueryError(f"{kind} with id {entity_id} not found")
                rows.append(row)
            count = len(rows)
            agg_rows = rows
        else:
            rows, count, agg_rows = self.select(
                kind, args.get(filter_arg), args.get("filter") or {}, need_count, bool(aggregates)
            )
        out: dict[str, Any] = {}
        for key, name, fn in root.result_fields:
            if name == list_key:
                assert fn is not None
                project = fns[fn]
                out[key] = [project(r) for r in rows]
            elif name == "count":
                out[key] = count
            elif name == "__typename":
                out[key] = get_named_type(root.field_def.type).name
            elif name == "duration":
                out[key] = float(sum(_primary_file(r, "duration") or 0 for r in agg_rows))
            elif name == "filesize":
                out[key] = float(sum(_primary_file(r, "size") or 0 for r in agg_rows))
            elif name == "megapixels":
                out[key] = float(
                    sum(
                        (_primary_file(r, "width") or 0) * (_primary_file(r, "height") or 0) for r in agg_rows
                    )
                    / 1e6
                )
        return out

    def _validate_sort(self, kind: str, sort: str | None) -> str | None:
        if sort is None:
            return None if kind in UNSORTED_BY_DEFAULT else DEFAULT_SORT.get(kind, "name")
        if sort == "" and kind in UNSORTED_BY_DEFAULT:
            return None
        if sort.startswith("random_") or sort in SORTS[kind]:
            return sort
        raise QueryError(f"invalid sort: {sort}")

    def matching_ids(self, kind: str, cf: CompiledFilter) -> "array[int]":
        """Sorted ids matching the filter minus its top-level id criterion (cached per store version)."""
        hit = self.cached_matches(kind, cf)
        if hit is not None:
            return hit
        key = (kind, cf.key, self.store.version)
        table = self.store.tables[kind]
        if cf.galleries is not None:
            mod, values, _ = _multi_sets(cf.galleries)
            index = self.store.gallery_images if kind == "image" else self.store.gallery_scenes
            sets = [index.get(g, set()) for g in values]
            members = set().union(*sets) if mod == "INCLUDES" else set.intersection(*[set(s) for s in sets])
            pred = _galleries_predicate(cf.galleries)  # also applies `excludes`
            rows = (table[i] for i in sorted(members))
            preds = [p for p in (pred, cf.predicate) if p is not None]
            combined = _all(preds)
            result = array("q", (r["id"] for r in rows if combined is None or combined(r)))
        else:
            pred = cf.predicate
            assert pred is not None
            found = self.ts_ids(kind, cf.sole_ts) if cf.sole_ts is not None else None
            if found is None and cf.first_ts is not None:
                candidates = self.ts_ids(kind, cf.first_ts)
                if candidates is not None:
                    found = array("q", (i for i in candidates if pred(table[i])))
            result = found if found is not None else array("q", (r["id"] for r in table.values() if pred(r)))
        self._matches[key] = result
        if len(self._matches) > 16:
            self._matches.popitem(last=False)
        return result

    @staticmethod
    def id_range(ids: list[int], crit: dict[str, Any] | None) -> list[tuple[int, int]]:
        """Index ranges of a sorted id list satisfying an IntCriterionInput on id."""
        n = len(ids)
        if crit is None:
            return [(0, n)]
        mod = crit["modifier"]
        v = crit["value"]
        v2 = crit.get("value2")
        v2 = 0 if v2 is None else v2
        if mod == "GREATER_THAN":
            return [(bisect_right(ids, v), n)]
        if mod == "LESS_THAN":
            return [(0, bisect_left(ids, v))]
        if mod == "EQUALS":
            return [(bisect_left(ids, v), bisect_right(ids, v))]
        if mod == "NOT_EQUALS":
            return [(0, bisect_left(ids, v)), (bisect_right(ids, v), n)]
        if mod == "BETWEEN":
            lo, hi = bisect_left(ids, v), bisect_right(ids, v2)
            return [(lo, max(lo, hi))]
        if mod == "NOT_BETWEEN":
            lo, hi = bisect_left(ids, v), bisect_right(ids, v2)
            return [(0, lo), (max(lo, hi), n)] if hi > lo else [(0, n)]
        if mod == "IS_NULL":
            return [(0, 0)]
        return [(0, n)]

    def ts_count(self, kind: str, sole: tuple[str, str, Any, Any]) -> int:
        """Count of a lone timestamp criterion by bisecting the sorted column (no row scan)."""
        column, mod, lo, hi = sole
        values, _ids, nulls = self.index(f"sorted_values:{kind}:{column}")
        n = len(values)
        if mod == "IS_NULL":
            return nulls
        if mod == "NOT_NULL":
            return n

        def n_ge(b: Any) -> int:
            return n if b is NUM else n - bisect_left(values, b)

        def n_le(b: Any) -> int:
            return 0 if b is NUM else bisect_right(values, b)

        if mod == "GREATER_THAN":
            return n if lo is NUM else n - bisect_right(values, lo)
        if mod == "LESS_THAN":
            return 0 if lo is NUM else bisect_left(values, lo)
        if mod == "EQUALS":
            return 0 if lo is NUM else bisect_right(values, lo) - bisect_left(values, lo)
        if mod == "NOT_EQUALS":
            return n if lo is NUM else n - (bisect_right(values, lo) - bisect_left(values, lo))
        between = max(0, n_ge(lo) + n_le(hi) - n)
        return between if mod == "BETWEEN" else n - between

    def ts_ids(self, kind: str, sole: tuple[str, str, Any, Any]) -> "array[int] | None":
        """Sorted ids of a lone timestamp criterion that selects one range of the sorted column
        (an incremental read's ``updated_at >``), from the column's index: no row scan, so such
        a read costs the same in a library of 1M rows as of 1,000.  ``None``: scan instead."""
        column, mod, lo, hi = sole
        if lo is NUM or hi is NUM:
            return None
        values, ids, _nulls = self.index(f"sorted_values:{kind}:{column}")
        if mod == "GREATER_THAN":
            start, stop = bisect_right(values, lo), len(values)
        elif mod == "LESS_THAN":
            start, stop = 0, bisect_left(values, lo)
        elif mod == "EQUALS":
            start, stop = bisect_left(values, lo), bisect_right(values, lo)
        elif mod == "BETWEEN":
            start, stop = bisect_left(values, lo), bisect_right(values, hi)
        else:
            return None
        return array("q", sorted(ids[start:stop])) if stop > start else array("q")

    def select(
        self,
        kind: str,
        filt: dict[str, Any] | None,
        ff: dict[str, Any],
        need_count: bool,
        need_all: bool,
    ) -> tuple[list[Entity], int, Iterable[Entity]]:
        """Rows of one page, the count (if needed) and the rows to aggregate (if needed)."""
        table = self.store.tables[kind]
        page = ff.get("page")
        page = 1 if page is None or page < 1 else page
        per_page = ff.get("per_page")
        per_page = 25 if per_page is None else per_page
        sort = self._validate_sort(kind, ff.get("sort"))
        descending = ff.get("direction") == "DESC"
        cf = FilterCompiler(self.clock).compile(kind, filt)
        offset = 0 if per_page < 0 else (page - 1) * per_page
        limit = None if per_page < 0 else per_page

        cached = self.cached_matches(kind, cf)
        count_without_scan = cached is not None or (cf.sole_ts is not None and cf.id_crit is None)
        if limit == 0 and not need_all and count_without_scan:  # count-only probe: no row scan
            if cached is not None:
                total = sum(b - a for a, b in self.id_range(cached, cf.id_crit))
            else:
                total = self.ts_count(kind, cf.sole_ts)  # type: ignore[arg-type]
            return [], total, ()
        if (
            sort == "id"
            and cached is None
            and cf.galleries is None
            and not need_all
            and (not need_count or count_without_scan)
        ):
            # Keyset fast path: walk sorted ids from the id criterion's position, stop after a page.
            total = self.ts_count(kind, cf.sole_ts) if need_count and cf.sole_ts is not None else 0
            return self.walk_ids(kind, cf, offset, limit, descending), total, ()

        base = cached if cached is not None else self.matching_ids(kind, cf)
        ranges = self.id_range(base, cf.id_crit)
        total = sum(b - a for a, b in ranges)

        def ordered_ids() -> list[int]:
            if len(ranges) == 1:
                a, b = ranges[0]
                return base if (a, b) == (0, len(base)) else base[a:b]
            return [base[p] for a, b in ranges for p in range(a, b)]

        agg_rows: Iterable[Entity] = ()
        if need_all:
            agg_rows = [table[i] for i in ordered_ids()]
        if limit == 0 or offset >= total:
            return [], total, agg_rows

        if sort == "id":
            if len(ranges) == 1:
                a, b = ranges[0]
                if descending:
                    start = b - offset
                    stop = a if limit is None else max(a, start - limit)
                    page_ids = base[stop:start][::-1]
                else:
                    start = a + offset
                    stop = b if limit is None else min(b, start + limit)
                    page_ids = base[start:stop]
            else:
                positions = [p for a, b in ranges for p in range(a, b)]
                if descending:
                    positions.reverse()
                chosen = positions[offset:] if limit is None else positions[offset : offset + limit]
                page_ids = [base[p] for p in chosen]
            return [table[i] for i in page_ids], total, agg_rows

        if sort is None:
            # No ORDER BY in Stash: an order that changes on every request.
            rng = random.Random()
            if total <= UNORDERED_SHUFFLE_LIMIT:
                ids = list(ordered_ids())
                rng.shuffle(ids)
                page_ids = ids[offset:] if limit is None else ids[offset : offset + limit]
            else:  # a random rotation and direction: O(page), still different on every request
                flat = ordered_ids()
                rot = rng.randrange(total)
                step = -1 if rng.random() < 0.5 else 1
                n = total - offset if limit is None else min(limit, total - offset)
                page_ids = [flat[(rot + step * (offset + j)) % total] for j in range(n)]
            return [table[i] for i in page_ids], total, agg_rows

        if sort.startswith("random"):
            seed_text = sort[len("random_") :] if sort.startswith("random_") else ""
            rng = random.Random(int(seed_text)) if seed_text.isdigit() else random.Random()
            ids = list(ordered_ids())
            rng.shuffle(ids)
            page_ids = ids[offset:] if limit is None else ids[offset : offset + limit]
            return [table[i] for i in page_ids], total, agg_rows

        key = sort_key(self, kind, sort)
        if limit is not None and (offset + limit) * 16 < total:
            # A few rows off the top (the "newest updated_at" probe): a top-k pass, O(n) as
            # SQLite's sorter with a LIMIT, not a full sort.  Rotated at random first, so that ties
            # still come back in no fixed order (the selection keeps the input order among ties).
            ids = ordered_ids()
            turn = random.randrange(len(ids))
            rotated = map(table.__getitem__, itertools.chain(ids[turn:], ids[:turn]))
            top = heapq.nlargest if descending else heapq.nsmallest
            return top(offset + limit, rotated, key=key)[offset:], total, agg_rows
        rows = [table[i] for i in ordered_ids()]
        random.shuffle(rows)  # ties under a non-unique key come back in no fixed order
        rows.sort(key=key, reverse=descending)
        page_rows = rows[offset:] if limit is None else rows[offset : offset + limit]
        return page_rows, total, agg_rows

    def walk_ids(
        self, kind: str, cf: CompiledFilter, offset: int, limit: int | None, descending: bool
    ) -> list[Entity]:
        """One page in id order by walking sorted ids lazily (no full scan for keyset paging)."""
        if limit == 0:
            return []
        table = self.store.tables[kind]
        ids = self.store.sorted_ids(kind)
        ranges = self.id_range(ids, cf.id_crit)
        pred = cf.predicate
        if pred is None and len(ranges) == 1:  # pure slicing
            a, b = ranges[0]
            if descending:
                start = b - offset
                stop = a if limit is None else max(a, start - limit)
                return [table[i] for i in ids[stop:start][::-1]] if start > stop else []
            start = a + offset
            stop = b if limit is None else min(b, start + limit)
            return [table[i] for i in ids[start:stop]]
        if descending:
            walk: Iterable[int] = itertools.chain.from_iterable(
                reversed(range(a, b)) for a, b in reversed(ranges)
            )
        else:
            walk = itertools.chain.from_iterable(range(a, b) for a, b in ranges)
        rows: list[Entity] = []
        skipped = 0
        for pos in walk:
            row = table[ids[pos]]
            if pred is not None and not pred(row):
                continue
            if skipped < offset:
                skipped += 1
                continue
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
        return rows

    def cached_matches(self, kind: str, cf: CompiledFilter) -> "array[int] | None":
        """The matching ids if known without a scan: no condition, or already cached."""
        if cf.galleries is None and cf.predicate is None:
            return self.store.sorted_ids(kind)
        key = (kind, cf.key, self.store.version)
        hit = self._matches.get(key)
        if hit is not None:
            self._matches.move_to_end(key)
        return hit
