"""What a correct mirror holds, computed in plain Python from the fake's truth export.

Deliberately independent of the sync code: no entity specs, no Polars, no SQL; only the contract
of docs/architecture.md §3 applied to the fake's raw state.  Tests compare these rows with the DuckDB tables.
"""

import json
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import duckdb

# table → (truth key, {mirror column: truth key or callable})
SCALARS: dict[str, list[str]] = {
    "studios": [
        "name",
        "aliases",
        "urls",
        "details",
        "rating100",
        "favorite",
        "ignore_auto_tag",
        "image_path",
    ],
    "tags": ["name", "sort_name", "description", "aliases", "favorite", "ignore_auto_tag", "image_path"],
    "performers": [
        "name",
        "disambiguation",
        "gender",
        "birthdate",
        "death_date",
        "ethnicity",
        "country",
        "eye_color",
        "hair_color",
        "height_cm",
        "weight",
        "measurements",
        "fake_tits",
        "penis_length",
        "circumcised",
        "career_length",
        "tattoos",
        "piercings",
        "alias_list",
        "urls",
        "favorite",
        "ignore_auto_tag",
        "rating100",
        "details",
        "image_path",
        "custom_fields",
    ],
    "groups": ["name", "aliases", "duration", "date", "rating100", "director", "synopsis", "urls"],
    "galleries": [
        "title",
        "code",
        "date",
        "details",
        "photographer",
        "urls",
        "rating100",
        "organized",
        "folder_path",
    ],
    "scenes": [
        "title",
        "code",
        "details",
        "director",
        "date",
        "urls",
        "rating100",
        "organized",
        "interactive",
        "interactive_speed",
        "o_counter",
        "play_count",
        "play_duration",
        "resume_time",
        "last_played_at",
    ],
    "images": [
        "title",
        "code",
        "date",
        "details",
        "photographer",
        "urls",
        "rating100",
        "organized",
        "o_counter",
    ],
    "scene_markers": ["title", "seconds", "end_seconds"],
}
DATE_FIELDS = {"date", "birthdate", "death_date"}
LIST_FIELDS = {"aliases", "urls", "alias_list"}
TIMESTAMP_FIELDS = {"last_played_at"}
REFS = {
    "studios": {"parent_id": "parent_id"},
    "groups": {"studio_id": "studio_id"},
    "galleries": {"studio_id": "studio_id"},
    "scenes": {"studio_id": "studio_id"},
    "images": {"studio_id": "studio_id"},
    "scene_markers": {"scene_id": "scene_id", "primary_tag_id": "primary_tag_id"},
}
# link table → (owner truth type, truth key, owner column, target column, payload column or None)
LINKS = {
    "studio_tags": ("studios", "tag_ids", None),
    "tag_parents": ("tags", "parent_ids", None),
    "performer_tags": ("performers", "tag_ids", None),
    "group_tags": ("groups", "tag_ids", None),
    "group_parents": ("groups", "containing", "description"),
    "gallery_performers": ("galleries", "performer_ids", None),
    "gallery_tags": ("galleries", "tag_ids", None),
    "scene_performers": ("scenes", "performer_ids", None),
    "scene_tags": ("scenes", "tag_ids", None),
    "scene_galleries": ("scenes", "gallery_ids", None),
    "scene_groups": ("scenes", "groups", "scene_index"),
    "image_performers": ("images", "performer_ids", None),
    "image_tags": ("images", "tag_ids", None),
    "image_galleries": ("images", "gallery_ids", None),
    "scene_marker_tags": ("scene_markers", "tag_ids", None),
}
FILE_OWNERS = {"scene_files": "scenes", "image_files": "images", "gallery_files": "galleries"}
STASH_ID_OWNERS = {
    "scene_stash_ids": "scenes",
    "performer_stash_ids": "performers",
    "studio_stash_ids": "studios",
    "tag_stash_ids": "tags",
}
FILE_BASE = ["path", "basename", "size"]
FILE_VISUAL = ["format", "width", "height"]
FILE_VIDEO = ["duration", "video_codec", "audio_codec", "frame_rate", "bit_rate"]
FINGERPRINTS = ["oshash", "md5", "phash"]
# Child tables whose rows repeat (two plays in the same second are two plays): compared as multisets.
CHILD_TABLES = [
    *STASH_ID_OWNERS,
    "scene_captions",
    "scene_play_history",
    "scene_o_history",
    "gallery_chapters",
]


def _text(value: Any) -> Any:
    return None if value == "" else value


def _date(value: str | None) -> tuple[date | None, str | None]:
    if not value:
        return None, None
    if len(value) == 4:
        return date(int(value), 1, 1), "year"
    if len(value) == 7:
        return date(int(value[:4]), int(value[5:7]), 1), "month"
    return date.fromisoformat(value), "day"


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _primary_file(entity: dict) -> dict:
    files = entity.get("files") or []
    return files[0] if files else {}


def expected_entity_rows(truth: dict, table: str) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for entity in truth[table]:
        row: dict[str, Any] = {}
        for name in SCALARS[table]:
            value = entity.get(name)
            if name in DATE_FIELDS:
                row[name], row[f"{name}_precision"] = _date(value)
            elif name in LIST_FIELDS and table != "groups":
                row[name] = list(value or [])
            elif name in TIMESTAMP_FIELDS:
                row[name] = _instant(value)
            else:
                row[name] = _text(value)
        for column, key in REFS.get(table, {}).items():
            row[column] = entity.get(key)
        if table == "performers":
            fields = entity.get("custom_fields")
            row["custom_fields"] = (
                None
                if fields is None
                else json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            )
        if table == "galleries":
            row["folder_path"] = (entity.get("folder") or {}).get("path")
        if table == "scenes":
            primary = _primary_file(entity)
            row["path"] = _text(primary.get("path"))
            row["filesize"] = primary.get("size")
            row["duration"] = primary.get("duration")
        if table == "images":
            primary = _primary_file(entity)
            row["path"] = _text(primary.get("path"))
            row["filesize"] = primary.get("size")
        row["created_at"] = _instant(entity["created_at"])
        row["updated_at"] = _instant(entity["updated_at"])
        row["updated_at_text"] = entity["updated_at"]
        rows[int(entity["id"])] = row
    return rows


def expected_link_rows(truth: dict, table: str) -> set[tuple]:
    owner_type, key, payload = LINKS[table]
    out: set[tuple] = set()
    for entity in truth[owner_type]:
        for element in entity.get(key) or []:
            if payload is None:
                out.add((int(entity["id"]), int(element)))
            else:
                target, extra = element[0], element[1]
                out.add((int(entity["id"]), int(target), _text(extra) if isinstance(extra, str) else extra))
    return out


def file_type(owner: str, file: dict) -> str:
    """A file's GraphQL type: a gallery's are GalleryFiles, an image's VideoFile or ImageFile."""
    if owner == "galleries":
        return "GalleryFile"
    name = file.get("__typename")
    if name in ("VideoFile", "ImageFile"):
        return name
    return "VideoFile" if "duration" in file or "video_codec" in file else "ImageFile"


def expected_file_rows(truth: dict) -> dict[int, dict[str, Any]]:
    """Every file any scene, image or gallery holds, as the ``files`` table stores it."""
    rows: dict[int, dict[str, Any]] = {}
    for owner in FILE_OWNERS.values():
        for entity in truth[owner]:
            for file in entity.get("files") or []:
                kind = file_type(owner, file)
                row: dict[str, Any] = {"file_type": kind}
                for name in FILE_BASE:
                    row[name] = _text(file.get(name))
                row["parent_folder"] = (file.get("parent_folder") or {}).get("path")
                row["zip_file"] = (file.get("zip_file") or {}).get("path")
                row["mod_time"] = _instant(file.get("mod_time"))
                prints = {fp["type"]: fp["value"] for fp in file.get("fingerprints") or []}
                for name in FINGERPRINTS:
                    row[name] = prints.get(name)
                for name in FILE_VISUAL:
                    row[name] = _text(file.get(name)) if kind != "GalleryFile" else None
                for name in FILE_VIDEO:
                    row[name] = _text(file.get(name)) if kind == "VideoFile" else None
                row["created_at"] = _instant(file["created_at"])
                row["updated_at"] = _instant(file["updated_at"])
                row["updated_at_text"] = file["updated_at"]
                rows[int(file["id"])] = row
    return rows


def expected_file_links(truth: dict, table: str) -> set[tuple]:
    out: set[tuple] = set()
    for entity in truth[FILE_OWNERS[table]]:
        for position, file in enumerate(entity.get("files") or []):
            out.add((int(entity["id"]), int(file["id"]), position == 0))
    return out


def expected_child_rows(truth: dict, table: str) -> Counter:
    """Rows of a child table (the owner's own data, not links to entities), as a multiset."""
    out: Counter = Counter()
    if table in STASH_ID_OWNERS:
        for entity in truth[STASH_ID_OWNERS[table]]:
            for sid in entity.get("stash_ids") or []:
                out[
                    (int(entity["id"]), sid["stash_id"], sid["endpoint"], _instant(sid.get("updated_at")))
                ] += 1
    elif table == "scene_captions":
        for entity in truth["scenes"]:
            for caption in entity.get("captions") or []:
                out[(int(entity["id"]), caption["language_code"], caption["caption_type"])] += 1
    elif table in ("scene_play_history", "scene_o_history"):
        key = "play_history" if table == "scene_play_history" else "o_history"
        for entity in truth["scenes"]:
            for moment in entity.get(key) or []:
                out[(int(entity["id"]), _instant(moment))] += 1
    elif table == "gallery_chapters":
        for entity in truth["galleries"]:
            for chapter in entity.get("chapters") or []:
                out[
                    (
                        int(entity["id"]),
                        int(chapter["id"]),
                        chapter["title"],
                        chapter["image_index"],
                        _instant(chapter["created_at"]),
                        _instant(chapter["updated_at"]),
                    )
                ] += 1
    else:
        raise KeyError(table)
    return out


def actual_entity_rows(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> dict[int, dict]:
    cols = ", ".join(["id", *columns])
    result = {}
    for row in con.execute(f"SELECT {cols} FROM {table}").fetchall():
        values = dict(zip(["id", *columns], row, strict=True))
        for key, value in values.items():
            if isinstance(value, datetime):
                values[key] = value.astimezone(UTC)
        result[values.pop("id")] = values
    return result


def actual_link_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return [
        tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in r)
        for r in con.execute(f"SELECT * FROM {table}").fetchall()
    ]


def entity_row_differences(
    table: str, expected: dict[int, dict], actual: dict[int, dict], problems: list[str], limit: int
) -> bool:
    """Append a line per column that differs, for the ids on both sides; True once ``problems``
    holds ``limit`` lines (the caller stops there)."""
    for entity_id in sorted(set(expected) & set(actual)):
        for column, want in expected[entity_id].items():
            got = actual[entity_id].get(column)
            if isinstance(want, float) and isinstance(got, float) and abs(want - got) < 1e-9:
                continue
            if got != want:
                problems.append(f"{table}[{entity_id}].{column}: mirror {got!r} != stash {want!r}")
                if len(problems) >= limit:
                    return True
    return False


class MirrorFileChecks:
    """Read-only checks of a mirror file against the fake's truth, for test environments that
    have ``db_path`` and ``fake``."""

    db_path: str
    fake: Any

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(self.db_path, read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def differences(self) -> list[str]:
        with duckdb.connect(self.db_path, read_only=True) as con:
            return mirror_differences(con, self.fake.truth())

    def assert_equal(self) -> None:
        problems = self.differences()
        assert problems == [], "\n".join(problems)


def mirror_differences(con: duckdb.DuckDBPyConnection, truth: dict, *, limit: int = 20) -> list[str]:
    """Every difference between the mirror and the truth (empty when equal), readable in a failure."""
    problems: list[str] = []
    for table in SCALARS:
        expected = expected_entity_rows(truth, table)
        columns = list(next(iter(expected.values())).keys()) if expected else []
        actual = (
            actual_entity_rows(con, table, columns)
            if columns
            else {r[0]: {} for r in con.execute(f"SELECT id FROM {table}").fetchall()}
        )
        count = con.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone()
        if count[0] != count[1]:
            problems.append(f"{table}: duplicate ids ({count[0]} rows, {count[1]} distinct)")
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        if missing:
            problems.append(f"{table}: missing ids {missing[:10]} ({len(missing)})")
        if extra:
            problems.append(f"{table}: extra ids {extra[:10]} ({len(extra)})")
        if entity_row_differences(table, expected, actual, problems, limit):
            return problems
    expected_files = expected_file_rows(truth)
    columns = list(next(iter(expected_files.values())).keys()) if expected_files else ["file_type"]
    actual_files = actual_entity_rows(con, "files", columns)
    missing = sorted(set(expected_files) - set(actual_files))
    extra = sorted(set(actual_files) - set(expected_files))
    if missing:
        problems.append(f"files: missing ids {missing[:10]} ({len(missing)})")
    if extra:
        problems.append(f"files: extra ids {extra[:10]} ({len(extra)})")
    if entity_row_differences("files", expected_files, actual_files, problems, limit):
        return problems
    links = {table: expected_link_rows(truth, table) for table in LINKS}
    links.update({table: expected_file_links(truth, table) for table in FILE_OWNERS})
    for table, expected_links in links.items():
        actual_list = actual_link_rows(con, table)
        actual_links = set(actual_list)
        if len(actual_list) != len(actual_links):
            problems.append(f"{table}: {len(actual_list) - len(actual_links)} duplicate link rows")
        missing = sorted(expected_links - actual_links)
        extra = sorted(actual_links - expected_links)
        if missing:
            problems.append(f"{table}: missing links {missing[:5]} ({len(missing)})")
        if extra:
            problems.append(f"{table}: extra links {extra[:5]} ({len(extra)})")
        if len(problems) >= limit:
            return problems
    for table in CHILD_TABLES:
        want = expected_child_rows(truth, table)
        got = Counter(actual_link_rows(con, table))
        missing_rows = sorted((want - got).elements(), key=repr)
        extra_rows = sorted((got - want).elements(), key=repr)
        if missing_rows:
            problems.append(f"{table}: missing rows {missing_rows[:5]} ({len(missing_rows)})")
        if extra_rows:
            problems.append(f"{table}: extra rows {extra_rows[:5]} ({len(extra_rows)})")
        if len(problems) >= limit:
            return problems
    return problems
