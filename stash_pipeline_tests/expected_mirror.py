"""What a correct mirror holds, computed in plain Python from the fake's truth export.

Deliberately independent of the sync code: no entity specs, no Polars, no SQL; only the contract
of docs/architecture.md §3 applied to the fake's raw state.  Tests compare these rows with the DuckDB tables.
"""

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
    ],
    "groups": ["name", "aliases", "duration", "date", "rating100", "director", "synopsis", "urls"],
    "galleries": ["title", "code", "date", "details", "photographer", "urls", "rating100", "organized"],
    "scenes": [
        "title",
        "code",
        "details",
        "director",
        "date",
        "urls",
        "rating100",
        "organized",
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
}


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
    return [tuple(r) for r in con.execute(f"SELECT * FROM {table}").fetchall()]


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
    for table in LINKS:
        expected_links = expected_link_rows(truth, table)
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
    return problems
