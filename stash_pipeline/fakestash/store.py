"""In-memory state of the fake Stash: seven tables of plain dicts plus the join tables' reverse indexes.

Design notes
- Each entity is a ``dict`` whose scalar keys use Stash's GraphQL field names, and whose relations
  are stored on the side that owns the join table in Stash's SQLite schema (see ``RELATION_FIELDS``).
  The executor resolves the other side through the reverse indexes kept here.
- Ids are ``int`` and monotonic per type (``INTEGER PRIMARY KEY AUTOINCREMENT``: never reused), so a
  table's dict insertion order *is* id order; ``sorted_ids`` caches it for keyset paging.
- This module knows the foreign-key semantics (``ON DELETE CASCADE`` for join rows, ``SET NULL`` for
  ``studio_id``/``parent_id``) but not the ``updated_at`` bump rules: those belong to
  ``mutations.py``, because in Stash they are decided by the resolver, not the database.
- One ``threading.RLock`` guards everything; the HTTP server takes it per request, which gives the
  "one read transaction per request" consistency Stash has.

Entity dict keys (all present on every entity; ``None``/empty when unset):

scene:     id title code details director urls date rating100 organized o_counter interactive
           interactive_speed resume_time play_duration play_count last_played_at play_history
           o_history created_at updated_at studio_id performer_ids tag_ids gallery_ids
           groups (list of (group_id, scene_index)) stash_ids (list of dicts endpoint/stash_id/updated_at)
           files (list of VideoFile dicts, primary first) captions (list of dicts)
image:     id title code details photographer urls date rating100 organized o_counter created_at
           updated_at studio_id performer_ids tag_ids gallery_ids files (list of ImageFile dicts)
gallery:   id title code details photographer urls date rating100 organized created_at updated_at
           studio_id performer_ids tag_ids cover_image_id folder (dict id/path or None)
           files (list of GalleryFile dicts) chapters (list of dicts id/title/image_index)
           -- scenes and images of a gallery live on the scene/image side (gallery_ids)
performer: id name disambiguation urls gender birthdate death_date ethnicity country eye_color
           hair_color height_cm weight measurements fake_tits penis_length circumcised
           career_length tattoos piercings alias_list favorite ignore_auto_tag rating100 details
           image_path created_at updated_at custom_fields tag_ids stash_ids
studio:    id name urls aliases details rating100 favorite ignore_auto_tag created_at updated_at
           parent_id tag_ids stash_ids image_path
tag:       id name sort_name description aliases favorite ignore_auto_tag created_at updated_at
           parent_ids stash_ids image_path
group:     id name aliases (a single string) duration date rating100 director synopsis urls
           created_at updated_at studio_id tag_ids containing (list of (group_id, description))
scene_marker: id scene_id title seconds end_seconds primary_tag_id tag_ids created_at updated_at

Files are the dicts inside their owners' ``files`` lists; ``tables["file"]`` indexes the same dicts
by id (``findFiles``), each marked with its owner's kind under ``_owner`` (``scene_count`` and the
like; the truth export leaves ``_`` keys out).
"""

import threading
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from typing import Any

Entity = dict[str, Any]

ENTITY_TYPES: tuple[str, ...] = (
    "studio",
    "tag",
    "performer",
    "group",
    "gallery",
    "scene",
    "image",
    "scene_marker",
)
"""Singular type names, in dependency order (a type only references types before it, or itself)."""

PLURAL = {
    "studio": "studios",
    "tag": "tags",
    "performer": "performers",
    "group": "groups",
    "gallery": "galleries",
    "scene": "scenes",
    "image": "images",
    "scene_marker": "scene_markers",
}
FILE_OWNERS = ("scene", "image", "gallery")
SINGULAR = {v: k for k, v in PLURAL.items()}

# Owning-side list relations: (owner type, key) -> target type.  A delete of the target removes
# its id from these lists (ON DELETE CASCADE on the join table).
ID_LIST_RELATIONS: dict[tuple[str, str], str] = {
    ("scene", "performer_ids"): "performer",
    ("scene", "tag_ids"): "tag",
    ("scene", "gallery_ids"): "gallery",
    ("image", "performer_ids"): "performer",
    ("image", "tag_ids"): "tag",
    ("image", "gallery_ids"): "gallery",
    ("gallery", "performer_ids"): "performer",
    ("gallery", "tag_ids"): "tag",
    ("performer", "tag_ids"): "tag",
    ("studio", "tag_ids"): "tag",
    ("tag", "parent_ids"): "tag",
    ("group", "tag_ids"): "tag",
    ("scene_marker", "tag_ids"): "tag",
}
# Pair-list relations: list of (target id, payload); payload is scene_index / description.
PAIR_LIST_RELATIONS: dict[tuple[str, str], str] = {
    ("scene", "groups"): "group",
    ("group", "containing"): "group",
}
# Nullable single references: ON DELETE SET NULL.
NULLABLE_REFS: dict[tuple[str, str], str] = {
    ("scene", "studio_id"): "studio",
    ("image", "studio_id"): "studio",
    ("gallery", "studio_id"): "studio",
    ("group", "studio_id"): "studio",
    ("studio", "parent_id"): "studio",
    ("gallery", "cover_image_id"): "image",
    # A marker's scene and primary tag are required in Stash: a scene's delete deletes its markers
    # (``Store.delete``), a tag's is refused while a marker has it as primary (``Mutations``).
    ("scene_marker", "scene_id"): "scene",
    ("scene_marker", "primary_tag_id"): "tag",
}


class Store:
    """The seven tables, id counters, and reverse indexes for the gallery join tables."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables: dict[str, dict[int, Entity]] = {t: {} for t in (*ENTITY_TYPES, "file")}
        self.next_id: dict[str, int] = dict.fromkeys(ENTITY_TYPES, 1)
        # Id arrays, not lists: the cyclic GC walks every item of a list on each full collection
        # (1M ids: about 10 ms, several times a second while pages are built); an array it skips.
        self._sorted_ids: dict[str, array[int] | None] = dict.fromkeys((*ENTITY_TYPES, "file"))
        # Reverse indexes of the two join tables that both sides read often.
        self.gallery_images: dict[int, set[int]] = {}
        self.gallery_scenes: dict[int, set[int]] = {}
        self.version = 0  # bumped on every write; caches key on it

    # ----------------------------------------------------------------------------- reading
    def table(self, kind: str) -> dict[int, Entity]:
        return self.tables[kind]

    def get(self, kind: str, entity_id: int) -> Entity | None:
        return self.tables[kind].get(entity_id)

    def sorted_ids(self, kind: str) -> "array[int]":
        """All ids of a type, ascending (cached until the next create/delete of that type)."""
        ids = self._sorted_ids[kind]
        if ids is None:
            ids = array("q", self.tables[kind])  # insertion order == id order
            if kind == "file":  # files arrive in their owners' order
                ids = array("q", sorted(ids))
            self._sorted_ids[kind] = ids
        return ids

    def ids_after(self, kind: str, after: int) -> "array[int]":
        ids = self.sorted_ids(kind)
        return ids[bisect_right(ids, after) :]

    def images_of_gallery(self, gallery_id: int) -> set[int]:
        return self.gallery_images.get(gallery_id, set())

    def scenes_of_gallery(self, gallery_id: int) -> set[int]:
        return self.gallery_scenes.get(gallery_id, set())

    def children_of_tag(self, tag_id: int) -> list[int]:
        return [t["id"] for t in self.tables["tag"].values() if tag_id in t["parent_ids"]]

    def children_of_studio(self, studio_id: int) -> list[int]:
        return [s["id"] for s in self.tables["studio"].values() if s["parent_id"] == studio_id]

    def sub_groups_of(self, group_id: int) -> list[tuple[int, str | None]]:
        return [
            (g["id"], desc)
            for g in self.tables["group"].values()
            for parent, desc in g["containing"]
            if parent == group_id
        ]

    # ----------------------------------------------------------------------------- writing
    def touch(self) -> None:
        self.version += 1

    def new_id(self, kind: str) -> int:
        entity_id = self.next_id[kind]
        self.next_id[kind] = entity_id + 1
        return entity_id

    def insert(self, kind: str, entity: Entity) -> Entity:
        """Insert a complete entity dict (its ``id`` must be new).  Keeps reverse indexes."""
        entity_id = entity["id"]
        if entity_id in self.tables[kind]:
            raise ValueError(f"{kind} {entity_id} already exists")
        if entity_id >= self.next_id[kind]:
            self.next_id[kind] = entity_id + 1
        self.tables[kind][entity_id] = entity
        ids = self._sorted_ids[kind]
        if ids is not None and (not ids or ids[-1] < entity_id):
            ids.append(entity_id)
        else:
            self._sorted_ids[kind] = None
        if kind == "scene":
            self._index_links(self.gallery_scenes, entity_id, (), entity["gallery_ids"])
        elif kind == "image":
            self._index_links(self.gallery_images, entity_id, (), entity["gallery_ids"])
        if kind in FILE_OWNERS:
            self.add_files(kind, entity["files"])
        self.touch()
        return entity

    def add_files(self, owner: str, files: Iterable[Entity]) -> None:
        """Index an owner's file dicts by id (the same dicts, so edits show on both sides)."""
        table = self.tables["file"]
        for file in files:
            file["_owner"] = owner
            table[file["id"]] = file
        self._sorted_ids["file"] = None

    def remove_files(self, files: Iterable[Entity]) -> None:
        for file in files:
            self.tables["file"].pop(file["id"], None)
        self._sorted_ids["file"] = None

    def set_gallery_ids(self, kind: str, entity_id: int, gallery_ids: Iterable[int]) -> None:
        """Replace a scene's or image's gallery links, keeping the reverse index right."""
        entity = self.tables[kind][entity_id]
        new = list(dict.fromkeys(gallery_ids))
        index = self.gallery_scenes if kind == "scene" else self.gallery_images
        self._index_links(index, entity_id, entity["gallery_ids"], new)
        entity["gallery_ids"] = new
        self.touch()

    @staticmethod
    def _index_links(index: dict[int, set[int]], member: int, old: Iterable[int], new: Iterable[int]) -> None:
        for gid in old:
            members = index.get(gid)
            if members is not None:
                members.discard(member)
        for gid in new:
            index.setdefault(gid, set()).add(member)

    def delete(self, kind: str, entity_id: int) -> Entity:
        """Delete one entity with Stash's FK semantics: join rows cascade, references SET NULL.

        Bumps nothing: a delete never touches another row's ``updated_at`` (docs/stash-behaviour.md §6).
        """
        entity = self.tables[kind].pop(entity_id)
        self._sorted_ids[kind] = None
        if kind in FILE_OWNERS:
            self.remove_files(entity["files"])
        if kind == "scene":  # scene_markers.scene_id: ON DELETE CASCADE
            for marker in [m for m in self.tables["scene_marker"].values() if m["scene_id"] == entity_id]:
                self.delete("scene_marker", marker["id"])
        if kind == "scene":
            self._index_links(self.gallery_scenes, entity_id, entity["gallery_ids"], ())
        elif kind == "image":
            self._index_links(self.gallery_images, entity_id, entity["gallery_ids"], ())
        elif kind == "gallery":
            for member in self.gallery_scenes.pop(entity_id, set()):
                scene = self.tables["scene"][member]
                scene["gallery_ids"] = [g for g in scene["gallery_ids"] if g != entity_id]
            for member in self.gallery_images.pop(entity_id, set()):
                image = self.tables["image"][member]
                image["gallery_ids"] = [g for g in image["gallery_ids"] if g != entity_id]
        for (owner, key), target in ID_LIST_RELATIONS.items():
            if target != kind or (owner, key) in (("scene", "gallery_ids"), ("image", "gallery_ids")):
                continue
            for row in self.tables[owner].values():
                if entity_id in row[key]:
                    row[key] = [x for x in row[key] if x != entity_id]
        for (owner, key), target in PAIR_LIST_RELATIONS.items():
            if target != kind:
                continue
            for row in self.tables[owner].values():
                if any(p[0] == entity_id for p in row[key]):
                    row[key] = [p for p in row[key] if p[0] != entity_id]
        for (owner, key), target in NULLABLE_REFS.items():
            if target != kind:
                continue
            for row in self.tables[owner].values():
                if row[key] == entity_id:
                    row[key] = None
        self.touch()
        return entity

    def iter_entities(self, kind: str) -> Iterator[Entity]:
        return iter(self.tables[kind].values())

    def counts(self) -> dict[str, int]:
        return {kind: len(self.tables[kind]) for kind in ENTITY_TYPES}
