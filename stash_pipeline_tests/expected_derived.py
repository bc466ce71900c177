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
  images by effective links; a gallery counts its member images and has no gallery_count.  Markers:
  those of its scenes (a tag's: markers with it as primary or other tag; a gallery has none).
  Files and bytes: of its scenes, effective images and galleries (a gallery's: its images' and its
  own zip).
- ``scene_resolution``: the primary file's size, label by the shorter side, codec, frame rate, bit
  rate; the best shorter side of all files, their number and total size.
- ``file_duplicates``: files sharing an exact fingerprint with another file.
"""

from collections import Counter, deque
from datetime import date
from typing import Any

import duckdb

from stash_pipeline_tests.expected_mirror import FILE_OWNERS, _date, _text, expected_file_rows


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


def _files_of(truth: dict, table: str) -> dict[int, tuple[int, int]]:
    """owner id → (files, bytes) of one owner type."""
    return {
        int(e["id"]): (len(e.get("files") or []), sum(f.get("size") or 0 for f in e.get("files") or []))
        for e in truth[table]
    }


def expected_entity_totals(truth: dict) -> dict[tuple[str, int], tuple]:
    """(entity_type, entity_id) → (marker_count, file_count, file_size)."""
    scene_files, image_files, gallery_files = (_files_of(truth, t) for t in FILE_OWNERS.values())
    markers_of_scene = Counter(int(m["scene_id"]) for m in truth["scene_markers"] if m.get("scene_id"))
    effective = expected_images_effective(truth)

    def total(pairs: list[tuple[int, int]]) -> tuple[int, int]:
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)

    def of_links(key: str) -> dict[int, tuple[int, int]]:
        """performer/tag id → files of the scenes, effective images and galleries linking it."""
        found: dict[int, list[tuple[int, int]]] = {}
        for scene in truth["scenes"]:
            for target in scene.get(key) or []:
                found.setdefault(int(target), []).append(scene_files[int(scene["id"])])
        images: set[tuple[int, int]] = {(t, i) for i, t, _inh in expected_effective_links(truth, key)}
        for target, image_id in images:
            found.setdefault(target, []).append(image_files[image_id])
        for gallery in truth["galleries"]:
            for target in gallery.get(key) or []:
                found.setdefault(int(target), []).append(gallery_files[int(gallery["id"])])
        return {k: total(v) for k, v in found.items()}

    performer_files, tag_files = of_links("performer_ids"), of_links("tag_ids")
    studio_parts: dict[int, list[tuple[int, int]]] = {}
    for table, files in (("scenes", scene_files), ("galleries", gallery_files)):
        for e in truth[table]:
            if e.get("studio_id") is not None:
                studio_parts.setdefault(int(e["studio_id"]), []).append(files[int(e["id"])])
    for image_id, row in effective.items():
        if row[0] is not None:
            studio_parts.setdefault(row[0], []).append(image_files[image_id])
    studio_files = {k: total(v) for k, v in studio_parts.items()}

    tag_markers: dict[int, set[int]] = {}
    for m in truth["scene_markers"]:
        for tag in {m.get("primary_tag_id"), *(m.get("tag_ids") or [])} - {None}:
            tag_markers.setdefault(int(tag), set()).add(int(m["id"]))

    def scene_markers_of(key: str, value: int) -> int:
        return sum(
            markers_of_scene[int(s["id"])]
            for s in truth["scenes"]
            if (s.get(key) == value if key == "studio_id" else value in [int(v) for v in s.get(key) or []])
        )

    out: dict[tuple[str, int], tuple] = {}
    for p in truth["performers"]:
        pid = int(p["id"])
        out[("performer", pid)] = (scene_markers_of("performer_ids", pid), *performer_files.get(pid, (0, 0)))
    for t in truth["tags"]:
        tid = int(t["id"])
        out[("tag", tid)] = (len(tag_markers.get(tid, ())), *tag_files.get(tid, (0, 0)))
    for st in truth["studios"]:
        sid = int(st["id"])
        out[("studio", sid)] = (scene_markers_of("studio_id", sid), *studio_files.get(sid, (0, 0)))
    for g in truth["galleries"]:
        gid = int(g["id"])
        parts = [image_files[int(i)] for i in g["image_ids"]] + [gallery_files[gid]]
        out[("gallery", gid)] = (None, *total(parts))
    return out


_HEIGHTS = (4320, 4032, 3384, 2880, 2160, 1440, 1080, 720, 540, 480, 360, 240, 144)


def _label(width: int | None, height: int | None) -> str | None:
    if width is None or height is None:
        return None
    short = min(width, height)
    return next((f"{h}p" for h in _HEIGHTS if short >= h), "below 144p")


def expected_scene_resolution(truth: dict) -> dict[int, tuple]:
    """scene_id → (file_id, width, height, resolution, video_codec, frame_rate, bit_rate,
    best_short_side, file_count, total_size)."""
    out: dict[int, tuple] = {}
    for scene in truth["scenes"]:
        files = scene.get("files") or []
        if not files:
            out[int(scene["id"])] = (None,) * 10
            continue
        p = files[0]
        out[int(scene["id"])] = (
            int(p["id"]),
            p["width"],
            p["height"],
            _label(p["width"], p["height"]),
            p["video_codec"],
            p["frame_rate"],
            p["bit_rate"],
            max(min(f["width"], f["height"]) for f in files),
            len(files),
            sum(f["size"] for f in files),
        )
    return out


def expected_file_duplicates(truth: dict) -> set[tuple]:
    """(fingerprint_type, fingerprint, file_id, file_type, copies) of shared fingerprints."""
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for file_id, row in expected_file_rows(truth).items():
        for kind in ("oshash", "md5", "phash"):
            if row[kind] is not None:
                groups.setdefault((kind, row[kind]), []).append((file_id, row["file_type"]))
    return {
        (kind, value, file_id, file_type, len(members))
        for (kind, value), members in groups.items()
        if len(members) > 1
        for file_id, file_type in members
    }


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
    _compare_keyed(
        "entity_counts",
        rows("SELECT entity_type, entity_id, marker_count, file_count, file_size FROM entity_counts"),
        expected_entity_totals(truth),
        2,
        problems,
    )
    _compare_keyed(
        "scene_resolution",
        rows(
            "SELECT scene_id, file_id, width, height, resolution, video_codec, frame_rate, bit_rate, "
            "best_short_side, file_count, total_size FROM scene_resolution"
        ),
        expected_scene_resolution(truth),
        1,
        problems,
    )
    _compare_sets(
        "file_duplicates",
        rows("SELECT fingerprint_type, fingerprint, file_id, file_type, copies FROM file_duplicates"),
        expected_file_duplicates(truth),
        problems,
    )
    return problems


__all__ = [
    "derived_differences",
    "expected_effective_links",
    "expected_entity_counts",
    "expected_entity_totals",
    "expected_file_duplicates",
    "expected_images_effective",
    "expected_scene_inherited_tags",
    "expected_scene_resolution",
    "expected_tag_ancestors",
]
