"""What the derived tables hold, computed in plain Python from the fake's truth export.

Deliberately independent of ``stash_pipeline.mirror.derived``: no SQL, no mirror tables, only the
contract of docs/architecture.md §3 applied to the fake's raw state (the same way ``expected_mirror`` states
what the mirror tables hold).  Tests compare these rows with the DuckDB tables.

- ``images_effective``: an image's own studio/date/photographer/details, or where the image has
  none (NULL or empty text), its first gallery's (lowest gallery id); ``inherited_from_gallery_id``
  names that gallery when at least one value came from it.
- ``image_performers_effective`` / ``image_tags_effective``: the image's direct links
  (inherited = False), or if it has none, its first gallery's (inherited = True).
- ``scene_inherited_tags``: tags of the scene's performers, studio and groups, minus its own tags.
- ``tag_ancestors``: (tag, ancestor, shortest distance), the tag itself at depth 0; cycles in bad
  data are walked once (breadth-first over a visited set).
- ``entity_counts``: per performer, tag, studio and gallery, scenes and galleries by direct links,
  images by effective links; a gallery counts its member images and has no gallery_count.
"""

from collections import Counter, deque
from datetime import date
from typing import Any

import duckdb

from stash_pipeline_tests.expected_mirror import _date, _text


def _by_id(truth: dict, table: str) -> dict[int, dict]:
    return {int(e["id"]): e for e in truth[table]}


def _first_gallery(image: dict, galleries: dict[int, dict]) -> dict | None:
    ids = [int(g) for g in image.get("gallery_ids") or []]
    return galleries.get(min(ids)) if ids else None


def expected_images_effective(truth: dict) -> dict[int, tuple]:
    """image_id → (studio_id, date, date_precision, photographer, details, inherited_from_gallery_id)."""
    galleries = _by_id(truth, "galleries")
    out: dict[int, tuple] = {}
    for image in truth["images"]:
        gallery = _first_gallery(image, galleries) or {}
        inherited = False

        def pick(own: Any, theirs: Any) -> Any:
            nonlocal inherited
            if own is not None:
                return own
            if theirs is not None:
                inherited = True
            return theirs

        studio = pick(image.get("studio_id"), gallery.get("studio_id"))
        own_date, own_precision = _date(image.get("date"))
        gallery_date, gallery_precision = _date(gallery.get("date"))
        day: date | None = pick(own_date, gallery_date)
        precision = own_precision if own_date is not None else gallery_precision
        photographer = pick(_text(image.get("photographer")), _text(gallery.get("photographer")))
        details = pick(_text(image.get("details")), _text(gallery.get("details")))
        source = int(gallery["id"]) if inherited else None
        out[int(image["id"])] = (studio, day, precision, photographer, details, source)
    return out


def expected_effective_links(truth: dict, key: str) -> set[tuple[int, int, bool]]:
    """(image_id, performer_id | tag_id, inherited) for ``key`` = performer_ids | tag_ids."""
    galleries = _by_id(truth, "galleries")
    out: set[tuple[int, int, bool]] = set()
    for image in truth["images"]:
        image_id = int(image["id"])
        own = image.get(key) or []
        if own:
            out |= {(image_id, int(t), False) for t in own}
            continue
        gallery = _first_gallery(image, galleries)
        if gallery:
            out |= {(image_id, int(t), True) for t in gallery.get(key) or []}
    return out


def expected_scene_inherited_tags(truth: dict) -> set[tuple[int, int]]:
    performers = _by_id(truth, "performers")
    studios = _by_id(truth, "studios")
    groups = _by_id(truth, "groups")
    out: set[tuple[int, int]] = set()
    for scene in truth["scenes"]:
        carried: set[int] = set()
        for performer_id in scene.get("performer_ids") or []:
            carried |= set(performers[int(performer_id)].get("tag_ids") or [])
        if scene.get("studio_id") is not None:
            carried |= set(studios[int(scene["studio_id"])].get("tag_ids") or [])
        for group_id, _index in scene.get("groups") or []:
            carried |= set(groups[int(group_id)].get("tag_ids") or [])
        carried -= set(scene.get("tag_ids") or [])
        out |= {(int(scene["id"]), int(t)) for t in carried}
    return out


def expected_tag_ancestors(truth: dict) -> set[tuple[int, int, int]]:
    """Breadth-first from every tag over ``parent_ids``: the first visit is the shortest path."""
    parents = {int(t["id"]): [int(p) for p in t.get("parent_ids") or []] for t in truth["tags"]}
    out: set[tuple[int, int, int]] = set()
    for tag_id in parents:
        depth_of = {tag_id: 0}
        queue = deque([tag_id])
        while queue:
            current = queue.popleft()
            for parent in parents.get(current, []):
                if parent not in depth_of:
                    depth_of[parent] = depth_of[current] + 1
                    queue.append(parent)
        out |= {(tag_id, ancestor, depth) for ancestor, depth in depth_of.items()}
    return out


def expected_entity_counts(truth: dict) -> dict[tuple[str, int], tuple]:
    """(entity_type, entity_id) → (scene_count, image_count, gallery_count)."""
    effective = expected_images_effective(truth)
    performer_images: dict[int, set[int]] = {}
    for image_id, performer_id, _inh in expected_effective_links(truth, "performer_ids"):
        performer_images.setdefault(performer_id, set()).add(image_id)
    tag_images: dict[int, set[int]] = {}
    for image_id, tag_id, _inh in expected_effective_links(truth, "tag_ids"):
        tag_images.setdefault(tag_id, set()).add(image_id)

    def linked(table: str, key: str) -> Counter:
        return Counter(int(t) for e in truth[table] for t in e.get(key) or [])

    def referenced(table: str) -> Counter:
        return Counter(int(e["studio_id"]) for e in truth[table] if e.get("studio_id") is not None)

    scene_performers, gallery_performers = (
        linked("scenes", "performer_ids"),
        linked("galleries", "performer_ids"),
    )
    scene_tags, gallery_tags = linked("scenes", "tag_ids"), linked("galleries", "tag_ids")
    studio_scenes, studio_galleries = referenced("scenes"), referenced("galleries")
    studio_images = Counter(row[0] for row in effective.values() if row[0] is not None)

    out: dict[tuple[str, int], tuple] = {}
    for performer in truth["performers"]:
        pid = int(performer["id"])
        out[("performer", pid)] = (
            scene_performers[pid],
            len(performer_images.get(pid, ())),
            gallery_performers[pid],
        )
    for tag in truth["tags"]:
        tid = int(tag["id"])
        out[("tag", tid)] = (scene_tags[tid], len(tag_images.get(tid, ())), gallery_tags[tid])
    for studio in truth["studios"]:
        sid = int(studio["id"])
        out[("studio", sid)] = (studio_scenes[sid], studio_images[sid], studio_galleries[sid])
    for gallery in truth["galleries"]:
        gid = int(gallery["id"])
        out[("gallery", gid)] = (len(gallery["scene_ids"]), len(gallery["image_ids"]), None)
    return out


# ------------------------------------------------------------------------------------ comparing
def _compare_sets(name: str, actual: list[tuple], expected: set[tuple], problems: list[str]) -> None:
    got = set(actual)
    if len(actual) != len(got):
        problems.append(f"{name}: {len(actual) - len(got)} duplicate rows")
    missing = sorted(expected - got, key=repr)
    extra = sorted(got - expected, key=repr)
    if missing:
        problems.append(f"{name}: missing {missing[:5]} ({len(missing)})")
    if extra:
        problems.append(f"{name}: extra {extra[:5]} ({len(extra)})")


def _compare_keyed(name: str, actual: list[tuple], expected: dict, width: int, problems: list[str]) -> None:
    """Rows whose first ``width`` columns are the key; the rest must equal ``expected[key]``."""
    got: dict = {}
    for row in actual:
        key = row[0] if width == 1 else tuple(row[:width])
        if key in got:
            problems.append(f"{name}: duplicate key {key!r}")
        got[key] = tuple(row[width:])
    missing = sorted(set(expected) - set(got), key=repr)
    extra = sorted(set(got) - set(expected), key=repr)
    if missing:
        problems.append(f"{name}: missing keys {missing[:5]} ({len(missing)})")
    if extra:
        problems.append(f"{name}: extra keys {extra[:5]} ({len(extra)})")
    wrong = [
        (k, got[k], expected[k]) for k in sorted(set(got) & set(expected), key=repr) if got[k] != expected[k]
    ]
    for key, have, want in wrong[:5]:
        problems.append(f"{name}[{key!r}]: table {have!r} != expected {want!r}")
    if len(wrong) > 5:
        problems.append(f"{name}: {len(wrong)} rows differ in all")


def derived_differences(con: duckdb.DuckDBPyConnection, truth: dict) -> list[str]:
    """Every difference between the derived tables and the contract applied to ``truth``."""
    problems: list[str] = []

    def rows(sql: str) -> list[tuple]:
        return [tuple(r) for r in con.execute(sql).fetchall()]

    _compare_keyed(
        "images_effective",
        rows(
            "SELECT image_id, studio_id, date, date_precision, photographer, details, "
            "inherited_from_gallery_id FROM images_effective"
        ),
        expected_images_effective(truth),
        1,
        problems,
    )
    for kind in ("performer", "tag"):
        _compare_sets(
            f"image_{kind}s_effective",
            rows(f"SELECT image_id, {kind}_id, inherited FROM image_{kind}s_effective"),
            expected_effective_links(truth, f"{kind}_ids"),
            problems,
        )
    _compare_sets(
        "scene_inherited_tags",
        rows("SELECT scene_id, tag_id FROM scene_inherited_tags"),
        expected_scene_inherited_tags(truth),
        problems,
    )
    _compare_sets(
        "tag_ancestors",
        rows("SELECT tag_id, ancestor_id, depth FROM tag_ancestors"),
        expected_tag_ancestors(truth),
        problems,
    )
    _compare_keyed(
        "entity_counts",
        rows("SELECT entity_type, entity_id, scene_count, image_count, gallery_count FROM entity_counts"),
        expected_entity_counts(truth),
        2,
        problems,
    )
    return problems


__all__ = [
    "derived_differences",
    "expected_effective_links",
    "expected_entity_counts",
    "expected_images_effective",
    "expected_scene_inherited_tags",
    "expected_tag_ancestors",
]
