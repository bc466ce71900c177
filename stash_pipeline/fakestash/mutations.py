"""Writes to the fake Stash, each with Stash's exact ``updated_at`` bump rules (docs/stash-behaviour.md §6).

The point of the fake is to make a mirror's incremental sync fail the way it would against a real
server, so every method reproduces which rows Stash bumps and which it silently leaves alone:

- ``update``/``bulk_update``/``create`` bump only the edited rows (``NewXPartial()`` in Stash),
  except an image ``gallery_ids`` edit, which also bumps every gallery added or removed (#3759);
  a bulk edit takes ONE timestamp, before the write, for all its rows.
- ``destroy`` cascades join rows and SETs NULL references, bumping nothing (``Store.delete``).
- ``tags_merge`` bumps nothing at all; ``performer_merge`` bumps only the destination.
- gallery membership (``add/remove_gallery_images``) and ``gallery_update(scene_ids=…)`` bump only
  the gallery; o-counter/play history and sub-group edits bump nothing.

Conventions: kinds are singular type names; field names are the store keys (``tag_ids``,
``studio_id``, ``groups`` as ``[group_id, scene_index]`` pairs, ``containing`` as
``[group_id, description]`` pairs).  Relation targets are checked like SQLite foreign keys, and
tag/studio/group hierarchies are kept acyclic, as Stash's resolvers do.  Scalar values are stored
as given (no validation), so tests can plant odd data (bad dates, huge strings) on purpose.
Every method holds ``store.lock``, calls ``store.touch()``, and assigns fresh lists: generated
entities share list objects, so nothing here mutates a list in place.
"""

import copy
from collections.abc import Iterable
from typing import Any

from stash_pipeline.fakestash.clock import ServerClock, ServerZone
from stash_pipeline.fakestash.generator import ENTITY_KEYS, blank_entity
from stash_pipeline.fakestash.store import (
    ENTITY_TYPES,
    ID_LIST_RELATIONS,
    NULLABLE_REFS,
    PAIR_LIST_RELATIONS,
    Entity,
    Store,
)

_UTC = ServerZone()
_READ_ONLY = frozenset({"id", "created_at", "updated_at"})
_STRING_LISTS = frozenset({"urls", "alias_list", "play_history", "o_history"})
BULK_MODES = ("SET", "ADD", "REMOVE")
# Stash refuses a second tag/studio with the same name (case-insensitive unique index).
_UNIQUE_NAME = frozenset({"tag", "studio"})
_NAME_REQUIRED = frozenset({"tag", "studio", "performer", "group"})


def _as_id(value: Any, what: str = "id") -> int:
    """GraphQL ids arrive as strings from the control endpoint; accept ``12`` and ``"12"``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer id, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer id, got {value!r}") from None


def _as_ids(values: Any, what: str = "ids") -> list[int]:
    if values is None:
        return []
    if isinstance(values, (int, str)):
        values = [values]
    return list(dict.fromkeys(_as_id(v, what) for v in values))


class Mutations:
    """All writes of the fake server.  Public methods are listed in ``PUBLIC``."""

    PUBLIC = frozenset(
        {
            "update",
            "bulk_update",
            "create",
            "destroy",
            "tags_merge",
            "performer_merge",
            "add_gallery_images",
            "remove_gallery_images",
            "gallery_update",
            "scene_add_o",
            "scene_add_play",
            "scene_delete_o",
            "scene_reset_o",
            "scene_delete_play",
            "scene_reset_play_count",
            "scene_save_activity",
            "scene_reset_activity",
            "image_increment_o",
            "image_decrement_o",
            "image_reset_o",
            "tag_set_children",
            "add_group_sub_groups",
            "remove_group_sub_groups",
            "move_file",
            "file_rename",
            "file_rescan",
            "scene_add_file",
            "scene_set_primary_file",
            "marker_create",
            "marker_update",
            "marker_destroy",
            "chapter_create",
            "chapter_update",
            "chapter_destroy",
        }
    )

    def __init__(self, store: Store, clock: ServerClock, lacks: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.clock = clock
        self.lacks = lacks  # what the release lacks holds no data (``versions.py``)

    # ================================================================== public API
    def update(self, kind: str, id: Any, **fields: Any) -> None:
        """Edit fields/relations of one entity: bumps it (and, for image ``gallery_ids``, the
        galleries added or removed)."""
        with self.store.lock:
            self._check_kind(kind)
            entity = self._get(kind, id)
            self._check_fields(kind, fields)
            values = {key: self._normalize(kind, key, value, entity["id"]) for key, value in fields.items()}
            self._check_unique_name(kind, values, entity["id"])
            stamp = self.clock.stamp()
            bumped_galleries = self._apply(kind, entity, values)
            entity["updated_at"] = stamp
            self._bump("gallery", bumped_galleries, stamp)
            self.store.touch()

    def bulk_update(self, kind: str, ids: Any, mode: str = "SET", **fields: Any) -> None:
        """``bulkSceneUpdate`` & co: ONE timestamp, taken before the write, for every row.

        ``mode`` applies to list fields (SET replaces, ADD appends missing, REMOVE drops);
        scalars are always set.
        """
        stamp = self.clock.stamp()  # Stash: one New*Partial() before the transaction
        with self.store.lock:
            self._check_kind(kind)
            if mode not in BULK_MODES:
                raise ValueError(
                    f"unknown bulk update mode {mode!r}; expected one of {', '.join(BULK_MODES)}"
                )
            entities = [self._get(kind, i) for i in _as_ids(ids)]
            self._check_fields(kind, fields)
            if "name" in fields and kind in _UNIQUE_NAME and len(entities) > 1:
                raise ValueError(f"{kind} names are unique: cannot set one name on {len(entities)} {kind}s")
            bumped: set[int] = set()
            plans = []
            for entity in entities:  # validate everything first: the transaction is all or nothing
                values = {}
                for key, value in fields.items():
                    normalized = self._normalize(kind, key, value, entity["id"])
                    values[key] = self._combine(kind, key, entity[key], normalized, mode)
                self._check_unique_name(kind, values, entity["id"])
                plans.append((entity, values))
            for entity, values in plans:
                bumped |= self._apply(kind, entity, values)
                entity["updated_at"] = stamp
            self._bump("gallery", bumped, stamp)
            self.store.touch()

    def create(self, kind: str, **fields: Any) -> int:
        """Create an entity (``created_at == updated_at == now``); returns its new, never reused id.

        An image created with ``gallery_ids`` bumps those galleries too (that is what a scan
        adding an image to a gallery does; Stash has no ``imageCreate``).
        """
        with self.store.lock:
            self._check_kind(kind)
            self._check_fields(kind, fields)
            if kind in _NAME_REQUIRED and not fields.get("name"):
                raise ValueError(f"{kind} name must not be blank")
            values = {key: self._normalize(kind, key, value, None) for key, value in fields.items()}
            self._check_unique_name(kind, values, None)
            stamp = self.clock.stamp()
            entity_id = self.store.new_id(kind)
            entity = blank_entity(kind, entity_id, stamp)
            if kind == "performer" and "Performer.custom_fields" in self.lacks:
                entity["custom_fields"] = None
            gallery_ids = values.pop("gallery_ids", None) if kind in ("scene", "image") else None
            entity.update(values)
            self.store.insert(kind, entity)
            if gallery_ids:
                self.store.set_gallery_ids(kind, entity_id, gallery_ids)
                if kind == "image":
                    self._bump("gallery", set(gallery_ids), stamp)
            self.store.touch()
            return entity_id

    def destroy(self, kind: str, ids: Any) -> None:
        """``*Destroy``: join rows cascade, references become NULL, no other row is bumped."""
        with self.store.lock:
            self._check_kind(kind)
            targets = [self._get(kind, i)["id"] for i in _as_ids(ids)]
            if kind == "tag":
                primary = {m["primary_tag_id"] for m in self.store.iter_entities("scene_marker")}
                if primary & set(targets):
                    raise ValueError("cannot delete tag used as a primary tag in scene markers")
            for entity_id in targets:
                self.store.delete(kind, entity_id)
            self.store.touch()

    def tags_merge(self, source_ids: Any, destination_id: Any) -> None:
        """``tagsMerge``: move every link from the sources to the destination, bump NOTHING.

        Links use ``UPDATE OR IGNORE`` semantics (an owner already linked to the destination just
        loses the source link); the destination's parents/children become the union of all of
        theirs (minus the merged tags); source names and aliases become destination aliases.
        """
        with self.store.lock:
            dest = self._get("tag", destination_id)
            sources = [self._get("tag", i) for i in _as_ids(source_ids, "source")]
            if not sources:
                raise ValueError("tagsMerge needs at least one source tag")
            dest_id = dest["id"]
            src_ids = {s["id"] for s in sources}
            if dest_id in src_ids:
                raise ValueError("cannot merge where source == destination")
            merged = src_ids | {dest_id}
            tags = self.store.tables["tag"]
            # Hierarchy first (computed before the link moves, like tag.MergeHierarchy).
            parents = list(dest["parent_ids"])
            for source in sources:
                parents += source["parent_ids"]
            new_parents = [p for p in dict.fromkeys(parents) if p not in merged]
            below: set[int] = set()
            for tag_id in merged:
                below |= self._tag_descendants(tag_id)
            looped = sorted(set(new_parents) & below)
            if looped:  # Stash's ValidateHierarchyExisting fails and the transaction rolls back
                raise ValueError(
                    f"merging would make tag {looped[0]} both a parent and a child of tag {dest_id}"
                )
            children = [
                t for t in tags.values() if t["id"] not in merged and not src_ids.isdisjoint(t["parent_ids"])
            ]
            # Every owner-side tag link: scenes, images, galleries, performers, studios, groups.
            for (owner, key), target in ID_LIST_RELATIONS.items():
                if target != "tag" or key != "tag_ids":
                    continue
                for row in self.store.tables[owner].values():
                    current = row[key]
                    if current and not src_ids.isdisjoint(current):
                        row[key] = self._replace_ids(current, src_ids, dest_id)
            for child in children:
                child["parent_ids"] = self._replace_ids(child["parent_ids"], src_ids, dest_id)
            for marker in self.store.iter_entities("scene_marker"):
                if marker["primary_tag_id"] in src_ids:
                    marker["primary_tag_id"] = dest_id
            aliases = list(dest["aliases"])
            for source in sources:
                aliases.append(source["name"])
                aliases += source["aliases"]
            dest["aliases"] = [a for a in dict.fromkeys(aliases) if a != dest["name"]]
            dest["parent_ids"] = new_parents
            for source in sources:
                self.store.delete("tag", source["id"])
            self.store.touch()

    def performer_merge(self, source_ids: Any, destination_id: Any, **values: Any) -> None:
        """``performerMerge``: scene/image/gallery links move to the destination (UPDATE OR
        IGNORE), sources are deleted, and only the destination is bumped (optionally also taking
        ``values``, like ``PerformerMergeInput.values``)."""
        with self.store.lock:
            dest = self._get("performer", destination_id)
            sources = [self._get("performer", i) for i in _as_ids(source_ids, "source")]
            if not sources:
                raise ValueError("performerMerge needs at least one source performer")
            dest_id = dest["id"]
            src_ids = {s["id"] for s in sources}
            if dest_id in src_ids:
                raise ValueError("cannot merge where source == destination")
            self._check_fields("performer", values)
            normalized = {key: self._normalize("performer", key, v, dest_id) for key, v in values.items()}
            stamp = self.clock.stamp()
            for owner in ("scene", "image", "gallery"):
                for row in self.store.tables[owner].values():
                    current = row["performer_ids"]
                    if current and not src_ids.isdisjoint(current):
                        row["performer_ids"] = self._replace_ids(current, src_ids, dest_id)
            for source in sources:
                self.store.delete("performer", source["id"])
            self._apply("performer", dest, normalized)
            dest["updated_at"] = stamp
            self.store.touch()

    def add_gallery_images(self, gallery_id: Any, image_ids: Any) -> None:
        """``addGalleryImages``: membership rows only; the gallery is bumped, the images are not."""
        with self.store.lock:
            gallery = self._get("gallery", gallery_id)
            gid = gallery["id"]
            images = [self._get("image", i) for i in _as_ids(image_ids, "image id")]
            for image in images:
                if gid not in image["gallery_ids"]:
                    self.store.set_gallery_ids("image", image["id"], [*image["gallery_ids"], gid])
            gallery["updated_at"] = self.clock.stamp()
            self.store.touch()

    def remove_gallery_images(self, gallery_id: Any, image_ids: Any) -> None:
        """``removeGalleryImages``: the gallery is bumped, the images are not."""
        with self.store.lock:
            gallery = self._get("gallery", gallery_id)
            gid = gallery["id"]
            images = [self._get("image", i) for i in _as_ids(image_ids, "image id")]
            for image in images:
                if gid in image["gallery_ids"]:
                    self.store.set_gallery_ids(
                        "image", image["id"], [g for g in image["gallery_ids"] if g != gid]
                    )
            gallery["updated_at"] = self.clock.stamp()
            self.store.touch()

    def gallery_update(self, gallery_id: Any, scene_ids: Any = None, **fields: Any) -> None:
        """``galleryUpdate``: bumps the gallery; ``scene_ids`` (stored on the scenes' side) replaces
        the gallery's scenes WITHOUT bumping any scene."""
        with self.store.lock:
            gallery = self._get("gallery", gallery_id)
            gid = gallery["id"]
            self._check_fields("gallery", fields)
            values = {key: self._normalize("gallery", key, v, gid) for key, v in fields.items()}
            new_scenes = None
            if scene_ids is not None:
                new_scenes = [self._get("scene", i)["id"] for i in _as_ids(scene_ids, "scene id")]
            stamp = self.clock.stamp()
            if new_scenes is not None:
                wanted = set(new_scenes)
                for sid in sorted(self.store.scenes_of_gallery(gid) - wanted):
                    scene = self.store.tables["scene"][sid]
                    self.store.set_gallery_ids("scene", sid, [g for g in scene["gallery_ids"] if g != gid])
                for sid in new_scenes:
                    scene = self.store.tables["scene"][sid]
                    if gid not in scene["gallery_ids"]:
                        self.store.set_gallery_ids("scene", sid, [*scene["gallery_ids"], gid])
            self._apply("gallery", gallery, values)
            gallery["updated_at"] = stamp
            self.store.touch()

    def scene_add_o(self, id: Any) -> int:
        """``sceneAddO``: appends to the O history (UTC), returns the new count; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            scene["o_history"] = [*scene["o_history"], self._utc_now()]
            scene["o_counter"] = len(scene["o_history"])
            self.store.touch()
            return scene["o_counter"]

    def scene_add_play(self, id: Any) -> int:
        """``sceneAddPlay``: appends to the play history (UTC), sets last_played_at; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            now = self._utc_now()
            scene["play_history"] = [*scene["play_history"], now]
            scene["play_count"] = len(scene["play_history"])
            scene["last_played_at"] = now
            self.store.touch()
            return scene["play_count"]

    def scene_delete_o(self, id: Any) -> int:
        """``sceneDeleteO`` (no times): drops the latest O; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            scene["o_history"] = scene["o_history"][:-1]
            scene["o_counter"] = len(scene["o_history"])
            self.store.touch()
            return scene["o_counter"]

    def scene_reset_o(self, id: Any) -> int:
        """``sceneResetO``: clears the O history; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            scene["o_history"] = []
            scene["o_counter"] = 0
            self.store.touch()
            return 0

    def scene_delete_play(self, id: Any) -> int:
        """``sceneDeletePlay`` (no times): drops the latest play; last_played_at follows; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            scene["play_history"] = scene["play_history"][:-1]
            scene["play_count"] = len(scene["play_history"])
            scene["last_played_at"] = scene["play_history"][-1] if scene["play_history"] else None
            self.store.touch()
            return scene["play_count"]

    def scene_reset_play_count(self, id: Any) -> int:
        """``sceneResetPlayCount``: clears the play history and last_played_at; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            scene["play_history"] = []
            scene["play_count"] = 0
            scene["last_played_at"] = None
            self.store.touch()
            return 0

    def scene_save_activity(
        self, id: Any, resume_time: float | None = None, play_duration: float | None = None
    ) -> bool:
        """``sceneSaveActivity``: sets the resume point and adds to the play duration; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            if resume_time is not None:
                scene["resume_time"] = float(resume_time)
            if play_duration is not None and play_duration > 0:
                scene["play_duration"] = float(scene["play_duration"] or 0) + float(play_duration)
            self.store.touch()
            return True

    def scene_reset_activity(self, id: Any, reset_resume: bool = True, reset_duration: bool = False) -> bool:
        """``sceneResetActivity``: the resume point and/or the play duration back to 0; no bump."""
        with self.store.lock:
            scene = self._get("scene", id)
            if reset_resume:
                scene["resume_time"] = 0.0
            if reset_duration:
                scene["play_duration"] = 0.0
            self.store.touch()
            return True

    def image_decrement_o(self, id: Any) -> int:
        """``imageDecrementO``: o_counter - 1, not below 0; no bump."""
        with self.store.lock:
            image = self._get("image", id)
            image["o_counter"] = max(0, (image["o_counter"] or 0) - 1)
            self.store.touch()
            return image["o_counter"]

    def image_reset_o(self, id: Any) -> int:
        """``imageResetO``: o_counter 0; no bump."""
        with self.store.lock:
            image = self._get("image", id)
            image["o_counter"] = 0
            self.store.touch()
            return 0

    def image_increment_o(self, id: Any) -> int:
        """``imageIncrementO``: o_counter + 1; no bump."""
        with self.store.lock:
            image = self._get("image", id)
            image["o_counter"] = (image["o_counter"] or 0) + 1
            self.store.touch()
            return image["o_counter"]

    def tag_set_children(self, tag_id: Any, child_ids: Any) -> None:
        """``tagUpdate(child_ids)``: the tag's children become exactly ``child_ids``; the edited
        tag is bumped, the children (whose parent links change) are not."""
        with self.store.lock:
            tag = self._get("tag", tag_id)
            tid = tag["id"]
            wanted = _as_ids(child_ids, "child id")
            ancestors = {
                t["id"] for t in self.store.tables["tag"].values() if tid in self._tag_descendants(t["id"])
            }
            for child_id in wanted:
                self._exists("tag", child_id)
                if child_id == tid or child_id in ancestors:
                    raise ValueError(
                        f"tag {child_id} cannot be a child of tag {tid}: that would make a cycle"
                    )
            for other in self.store.tables["tag"].values():
                has = tid in other["parent_ids"]
                if other["id"] in wanted and not has:
                    other["parent_ids"] = [*other["parent_ids"], tid]
                elif other["id"] not in wanted and has:
                    other["parent_ids"] = [p for p in other["parent_ids"] if p != tid]
            tag["updated_at"] = self.clock.stamp()
            self.store.touch()

    def add_group_sub_groups(self, group_id: Any, sub_group_ids: Any) -> None:
        """``addGroupSubGroups``: each sub-group gains ``group_id`` as a containing group; NO bump.

        ``sub_group_ids`` items are ids or ``[id, description]`` pairs.
        """
        with self.store.lock:
            parent = self._get("group", group_id)
            pid = parent["id"]
            subs = self._sub_group_pairs(sub_group_ids)
            for sub_id, description in subs:
                sub = self._get("group", sub_id)
                if sub_id == pid or pid in self._group_descendants(sub_id):
                    raise ValueError(
                        f"group {sub_id} cannot be a sub-group of {pid}: that would make a cycle"
                    )
                containing = [p for p in sub["containing"] if p[0] != pid]
                sub["containing"] = [*containing, (pid, description)]
            self.store.touch()

    def remove_group_sub_groups(self, group_id: Any, sub_group_ids: Any) -> None:
        """``removeGroupSubGroups``: drops the containing links; NO bump."""
        with self.store.lock:
            pid = self._get("group", group_id)["id"]
            for sub_id in _as_ids(sub_group_ids, "sub-group id"):
                sub = self._get("group", sub_id)
                if any(p[0] == pid for p in sub["containing"]):
                    sub["containing"] = [p for p in sub["containing"] if p[0] != pid]
            self.store.touch()

    def move_file(self, kind: str, id: Any, path: str, file_index: int = 0) -> None:
        """A rename/move found by a rescan: the file's path and ``updated_at`` change, the scene,
        image or gallery that owns it is NOT bumped (docs/stash-behaviour.md §6)."""
        with self.store.lock:
            if kind not in ("scene", "image", "gallery"):
                raise ValueError(f"only scenes, images and galleries have files, not {kind!r}")
            entity = self._get(kind, id)
            files = entity["files"]
            if not 0 <= file_index < len(files):
                raise ValueError(f"{kind} {entity['id']} has no file #{file_index}")
            moved = dict(files[file_index])
            moved["path"] = path
            moved["basename"] = path.rsplit("/", 1)[-1]
            moved["updated_at"] = self.clock.stamp()
            entity["files"] = [*files[:file_index], moved, *files[file_index + 1 :]]
            self.store.add_files(kind, [moved])
            self.store.touch()

    # ------------------------------------------------------------------ files
    def _file(self, file_id: Any) -> tuple[Entity, int]:
        """The owner holding a file, and the file's position in its list."""
        fid = _as_id(file_id, "file id")
        file = self.store.tables["file"].get(fid)
        if file is None:
            raise ValueError(f"file with id {fid} not found")
        for owner in self.store.iter_entities(file["_owner"]):
            for position, held in enumerate(owner["files"]):
                if held["id"] == fid:
                    return owner, position
        raise ValueError(f"file {fid} has no owner")  # pragma: no cover - the index says it has

    def _replace_file(self, owner: Entity, position: int, new: Entity) -> None:
        kind = new["_owner"]
        owner["files"] = [*owner["files"][:position], new, *owner["files"][position + 1 :]]
        self.store.add_files(kind, [new])

    def file_rename(self, file_id: Any, path: str) -> None:
        """A file renamed or moved (found by a scan, or ``moveFiles``): its path, basename and
        ``updated_at`` change; its scene, image or gallery is NOT bumped."""
        with self.store.lock:
            owner, position = self._file(file_id)
            moved = dict(owner["files"][position])
            moved["path"] = path
            moved["basename"] = path.rsplit("/", 1)[-1]
            moved["updated_at"] = self.clock.stamp()
            self._replace_file(owner, position, moved)
            self.store.touch()

    def file_rescan(self, file_id: Any, fingerprints: dict[str, str] | None = None) -> None:
        """A scan of a changed file: new size, mod time and fingerprints (a video's or picture's
        phash too, where it had one; ``fingerprints`` gives chosen values, e.g. the phash of
        another file), the file's ``updated_at``; the owner is NOT bumped."""
        with self.store.lock:
            owner, position = self._file(file_id)
            file = dict(owner["files"][position])
            n = file["id"] + int(self.clock.now())
            file["size"] = (file.get("size") or 0) + 1 + n % 997
            file["mod_time"] = self.clock.stamp()
            file["fingerprints"] = [
                {"type": fp["type"], "value": f"{(n * 2654435761 + i) % (1 << 64):016x}"}
                for i, fp in enumerate(file.get("fingerprints") or ())
            ]
            chosen = dict(fingerprints or {})
            file["fingerprints"] = [
                {"type": fp["type"], "value": chosen.pop(fp["type"], fp["value"])}
                for fp in file["fingerprints"]
            ] + [{"type": kind, "value": value} for kind, value in chosen.items()]
            file["updated_at"] = self.clock.stamp()
            self._replace_file(owner, position, file)
            self.store.touch()

    def scene_add_file(self, scene_id: Any) -> int:
        """A scan attaching a new video file to a scene (after its primary): the scene IS bumped."""
        with self.store.lock:
            scene = self._get("scene", scene_id)
            stamp = self.clock.stamp()
            fid = max(self.store.tables["file"], default=0) + 1
            template = scene["files"][0] if scene["files"] else None
            # Beside the primary file, in its folder (a release without folders holds none).
            folder = template["parent_folder"] if template else {"id": 1, "path": "/data/videos"}
            directory = template["path"].rsplit("/", 1)[0] if template else folder["path"]
            basename = f"added_{fid}.mkv"
            file = {
                "__typename": "VideoFile",
                "id": fid,
                "path": f"{directory}/{basename}",
                "basename": basename,
                "parent_folder": folder,
                "zip_file": None,
                "mod_time": stamp,
                "size": 10_000_000 + fid,
                "fingerprints": [{"type": "oshash", "value": f"{fid * 7919:016x}"}],
                "format": "mkv",
                "width": 3840,
                "height": 2160,
                "duration": 600.0,
                "video_codec": "hevc",
                "audio_codec": "aac",
                "frame_rate": 60.0,
                "bit_rate": 40_000_000,
                "created_at": stamp,
                "updated_at": stamp,
                "_owner": "scene",
            }
            scene["files"] = [*scene["files"], file]
            self.store.add_files("scene", [file])
            scene["updated_at"] = stamp
            self.store.touch()
            return fid

    def file_clean(self, file_id: Any) -> None:
        """A clean finding a file gone from disk: the file is deleted; its scene, image or
        gallery IS bumped (its primary file reset to the next), or deleted with its last file."""
        with self.store.lock:
            owner, position = self._file(file_id)
            kind = owner["files"][position]["_owner"]
            if len(owner["files"]) == 1:
                self.store.delete(kind, owner["id"])
            else:
                self.store.remove_files([owner["files"][position]])
                owner["files"] = [f for i, f in enumerate(owner["files"]) if i != position]
                owner["updated_at"] = self.clock.stamp()
            self.store.touch()

    def scene_set_primary_file(self, scene_id: Any, file_id: Any) -> None:
        """``sceneUpdate(primary_file_id)``: that file moves to the front; the scene is bumped."""
        with self.store.lock:
            scene = self._get("scene", scene_id)
            fid = _as_id(file_id, "file id")
            chosen = [f for f in scene["files"] if f["id"] == fid]
            if not chosen:
                raise ValueError(f"scene {scene['id']} has no file {fid}")
            scene["files"] = [*chosen, *(f for f in scene["files"] if f["id"] != fid)]
            scene["updated_at"] = self.clock.stamp()
            self.store.touch()

    # ------------------------------------------------------------------ markers and chapters
    def marker_create(
        self,
        scene_id: Any,
        title: str,
        seconds: float,
        primary_tag_id: Any,
        end_seconds: float | None = None,
        tag_ids: Iterable[Any] = (),
    ) -> int:
        """``sceneMarkerCreate``: the marker is new; its scene is NOT bumped."""
        return self.create(
            "scene_marker",
            scene_id=scene_id,
            title=title,
            seconds=seconds,
            end_seconds=end_seconds,
            primary_tag_id=primary_tag_id,
            tag_ids=list(tag_ids),
        )

    def marker_update(self, marker_id: Any, **fields: Any) -> None:
        """``sceneMarkerUpdate``: bumps the marker only."""
        self.update("scene_marker", marker_id, **fields)

    def marker_destroy(self, marker_id: Any) -> None:
        """``sceneMarkerDestroy``: nothing else is bumped."""
        self.destroy("scene_marker", [marker_id])

    def _chapter(self, chapter_id: Any) -> tuple[Entity, int]:
        cid = _as_id(chapter_id, "chapter id")
        for gallery in self.store.iter_entities("gallery"):
            for position, chapter in enumerate(gallery["chapters"]):
                if chapter["id"] == cid:
                    return gallery, position
        raise ValueError(f"gallery chapter with id {cid} not found")

    def chapter_create(self, gallery_id: Any, title: str, image_index: int) -> int:
        """``galleryChapterCreate``: writes the chapter row only; the gallery is NOT bumped."""
        with self.store.lock:
            gallery = self._get("gallery", gallery_id)
            stamp = self.clock.stamp()
            existing = [c["id"] for g in self.store.iter_entities("gallery") for c in g["chapters"]]
            cid = max(existing, default=0) + 1
            chapter = {
                "id": cid,
                "title": title,
                "image_index": image_index,
                "created_at": stamp,
                "updated_at": stamp,
            }
            gallery["chapters"] = [*gallery["chapters"], chapter]
            self.store.touch()
            return cid

    def chapter_update(self, chapter_id: Any, **fields: Any) -> None:
        """``galleryChapterUpdate``: the chapter's fields and ``updated_at``; no gallery bump."""
        with self.store.lock:
            unknown = sorted(set(fields) - {"title", "image_index"})
            if unknown:
                raise ValueError(
                    f"unknown chapter field(s) {', '.join(unknown)}; editable: image_index, title"
                )
            gallery, position = self._chapter(chapter_id)
            chapter = {**gallery["chapters"][position], **fields, "updated_at": self.clock.stamp()}
            chapters = gallery["chapters"]
            gallery["chapters"] = [*chapters[:position], chapter, *chapters[position + 1 :]]
            self.store.touch()

    def chapter_destroy(self, chapter_id: Any) -> None:
        """``galleryChapterDestroy``: the row goes; no gallery bump."""
        with self.store.lock:
            gallery, position = self._chapter(chapter_id)
            chapters = gallery["chapters"]
            gallery["chapters"] = [*chapters[:position], *chapters[position + 1 :]]
            self.store.touch()

    # ================================================================== helpers
    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in ENTITY_TYPES:
            raise ValueError(f"unknown entity kind {kind!r}; expected one of: {', '.join(ENTITY_TYPES)}")

    def _get(self, kind: str, entity_id: Any) -> Entity:
        self._check_kind(kind)
        eid = _as_id(entity_id, f"{kind} id")
        entity = self.store.tables[kind].get(eid)
        if entity is None:
            raise ValueError(f"{kind} with id {eid} not found")
        return entity

    @staticmethod
    def _check_fields(kind: str, fields: dict[str, Any]) -> None:
        allowed = set(ENTITY_KEYS[kind]) - _READ_ONLY
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ValueError(
                f"unknown {kind} field(s) {', '.join(unknown)}; editable fields: {', '.join(sorted(allowed))}"
            )

    def _utc_now(self) -> str:
        return _UTC.format(self.clock.now())

    def _check_unique_name(self, kind: str, values: dict[str, Any], own_id: int | None) -> None:
        name = values.get("name")
        if kind not in _UNIQUE_NAME or name is None:
            return
        folded = str(name).casefold()
        for row in self.store.tables[kind].values():
            if row["id"] != own_id and str(row["name"]).casefold() == folded:
                raise ValueError(f"{kind} with name {name!r} already exists")

    def _exists(self, kind: str, entity_id: int) -> None:
        if entity_id not in self.store.tables[kind]:
            raise ValueError(f"{kind} with id {entity_id} not found")

    def _normalize(self, kind: str, key: str, value: Any, own_id: int | None) -> Any:
        """A fresh, validated value for ``entity[key]`` (relations checked like foreign keys)."""
        if (kind, key) in ID_LIST_RELATIONS:
            target = ID_LIST_RELATIONS[(kind, key)]
            ids = _as_ids(value, key)
            for target_id in ids:
                self._exists(target, target_id)
            if key == "parent_ids" and own_id is not None:
                if own_id in ids:
                    raise ValueError(f"tag {own_id} cannot be its own parent")
                descendants = self._tag_descendants(own_id)
                for parent in ids:
                    if parent in descendants:
                        raise ValueError(
                            f"tag {parent} is a descendant of tag {own_id}: that would make a cycle"
                        )
            return ids
        if (kind, key) in PAIR_LIST_RELATIONS:
            target = PAIR_LIST_RELATIONS[(kind, key)]
            pairs: dict[int, Any] = {}
            for item in value or ():
                if isinstance(item, dict):
                    target_id = item.get("group_id", item.get("id"))
                    payload = item.get("scene_index" if key == "groups" else "description")
                elif isinstance(item, (list, tuple)) and len(item) == 2:
                    target_id, payload = item
                else:
                    target_id, payload = item, None
                target_id = _as_id(target_id, key)
                self._exists(target, target_id)
                pairs.setdefault(target_id, payload)
            if key == "containing" and own_id is not None:
                descendants = self._group_descendants(own_id)
                for parent in pairs:
                    if parent == own_id or parent in descendants:
                        raise ValueError(
                            f"group {parent} cannot contain group {own_id}: that would make a cycle"
                        )
            return list(pairs.items())
        if (kind, key) in NULLABLE_REFS:
            if value is None:
                return None
            target = NULLABLE_REFS[(kind, key)]
            target_id = _as_id(value, key)
            self._exists(target, target_id)
            if kind == "studio" and key == "parent_id" and own_id is not None:
                walk: int | None = target_id
                while walk is not None:
                    if walk == own_id:
                        raise ValueError(f"studio {target_id} cannot be the parent of studio {own_id}: cycle")
                    walk = self.store.tables["studio"][walk]["parent_id"]
            return target_id
        if key in _STRING_LISTS or (key == "aliases" and kind in ("studio", "tag")):
            if value is None:
                return []
            if isinstance(value, str):
                raise ValueError(f"{kind}.{key} must be a list of strings, got a string")
            return list(value)
        return copy.deepcopy(value)

    @staticmethod
    def _combine(kind: str, key: str, old: Any, new: Any, mode: str) -> Any:
        """Bulk ADD/REMOVE for list fields; SET (and any scalar) takes the new value."""
        if mode == "SET" or not isinstance(new, list):
            return new
        if (kind, key) in PAIR_LIST_RELATIONS:
            if mode == "ADD":
                present = {p[0] for p in old}
                return [*old, *(p for p in new if p[0] not in present)]
            drop = {p[0] for p in new}
            return [p for p in old if p[0] not in drop]
        if mode == "ADD":
            return list(dict.fromkeys([*old, *new]))
        drop_set = set(new)
        return [x for x in old if x not in drop_set]

    def _apply(self, kind: str, entity: Entity, values: dict[str, Any]) -> set[int]:
        """Write normalized values; returns the galleries an image gallery edit must bump."""
        bumped: set[int] = set()
        for key, value in values.items():
            if key == "gallery_ids" and kind in ("scene", "image"):
                old = set(entity["gallery_ids"])
                self.store.set_gallery_ids(kind, entity["id"], value)
                if kind == "image":  # #3759: every impacted gallery, added or removed
                    bumped |= old ^ set(value)
            else:
                entity[key] = value
        return bumped

    def _bump(self, kind: str, ids: Iterable[int], stamp: str) -> None:
        table = self.store.tables[kind]
        for entity_id in ids:
            row = table.get(entity_id)
            if row is not None:
                row["updated_at"] = stamp

    @staticmethod
    def _replace_ids(current: list[int], sources: set[int], dest: int) -> list[int]:
        """UPDATE OR IGNORE: sources become ``dest`` unless ``dest`` is already linked."""
        out = [dest if x in sources else x for x in current]
        return list(dict.fromkeys(out))

    def _tag_descendants(self, tag_id: int) -> set[int]:
        children: dict[int, list[int]] = {}
        for tag in self.store.tables["tag"].values():
            for parent in tag["parent_ids"]:
                children.setdefault(parent, []).append(tag["id"])
        return self._reach(tag_id, children)

    def _group_descendants(self, group_id: int) -> set[int]:
        children: dict[int, list[int]] = {}
        for group in self.store.tables["group"].values():
            for parent, _desc in group["containing"]:
                children.setdefault(parent, []).append(group["id"])
        return self._reach(group_id, children)

    @staticmethod
    def _reach(start: int, edges: dict[int, list[int]]) -> set[int]:
        seen: set[int] = set()
        stack = list(edges.get(start, ()))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(edges.get(node, ()))
        return seen

    def _sub_group_pairs(self, items: Any) -> list[tuple[int, Any]]:
        if isinstance(items, (int, str)):
            items = [items]
        pairs = []
        for item in items or ():
            if isinstance(item, dict):
                pairs.append(
                    (_as_id(item.get("group_id", item.get("id")), "sub-group id"), item.get("description"))
                )
            elif isinstance(item, (list, tuple)):
                pairs.append((_as_id(item[0], "sub-group id"), item[1] if len(item) > 1 else None))
            else:
                pairs.append((_as_id(item, "sub-group id"), None))
        return pairs


__all__ = ["BULK_MODES", "Mutations"]
