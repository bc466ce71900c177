"""The fake's complete state as plain JSON-able data: what a correct mirror is compared against.

Why a separate export rather than handing out the store: tests must not see (or mutate) the live
dicts, and they need a stable, order-independent form.  So every entity is deep-copied, relation id
lists are sorted, pairs become ``[id, payload]`` lists sorted by id, and each type's list is sorted
by id.  Lists whose order means something in Stash (``files``: primary first; ``urls``; histories)
keep their order.

Derived conveniences (not store keys, computed from the owning side so nothing is lost):
galleries carry ``image_ids`` and ``scene_ids`` (membership lives on images' and scenes'
``gallery_ids``).
"""

from typing import Any

from stash_pipeline.fakestash.clock import ServerZone
from stash_pipeline.fakestash.store import (
    ENTITY_TYPES,
    ID_LIST_RELATIONS,
    PAIR_LIST_RELATIONS,
    PLURAL,
    Store,
)

_SORTED_ID_LISTS: dict[str, frozenset[str]] = {
    kind: frozenset(key for (owner, key) in ID_LIST_RELATIONS if owner == kind) for kind in ENTITY_TYPES
}
_PAIR_LISTS: dict[str, frozenset[str]] = {
    kind: frozenset(key for (owner, key) in PAIR_LIST_RELATIONS if owner == kind) for kind in ENTITY_TYPES
}


def _plain(value: Any) -> Any:
    """Deep copy into JSON types (tuples become lists)."""
    if isinstance(value, dict):  # the store's own marks (a file's ``_owner``) are not Stash's
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _export_entity(kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    id_lists, pair_lists = _SORTED_ID_LISTS[kind], _PAIR_LISTS[kind]
    out: dict[str, Any] = {}
    for key, value in entity.items():
        if key in id_lists:
            out[key] = sorted(value)
        elif key in pair_lists:
            out[key] = [[target, payload] for target, payload in sorted(value, key=lambda p: p[0])]
        else:
            out[key] = _plain(value)
    return out


def export_truth(store: Store, zone: ServerZone | None = None) -> dict[str, Any]:
    """Snapshot of every entity, keyed by plural type name, plus ``counts`` (and ``zone``)."""
    with store.lock:
        truth: dict[str, Any] = {}
        for kind in ENTITY_TYPES:
            table = store.tables[kind]
            rows = [_export_entity(kind, table[i]) for i in sorted(table)]
            if kind == "gallery":
                for row in rows:
                    row["image_ids"] = sorted(store.images_of_gallery(row["id"]))
                    row["scene_ids"] = sorted(store.scenes_of_gallery(row["id"]))
            truth[PLURAL[kind]] = rows
        truth["counts"] = {PLURAL[kind]: len(store.tables[kind]) for kind in ENTITY_TYPES}
        if zone is not None:
            truth["zone"] = zone.describe()
        return truth


__all__ = ["export_truth"]
