"""SQL for the derived tables (docs/architecture.md §3): recomputed from the mirror, never written into it.

Each table is rebuilt whole with ``CREATE OR REPLACE TABLE … AS`` in one transaction: on a
million images this is a few seconds of DuckDB, cheaper and simpler than incremental upkeep, and
it can never drift from its inputs.  A table already computed from its inputs as they are now (the
same change version of the types it reads, ``changed_by`` and ``mirror.changes``, and the same
definition) is left as it is (``refresh``): a run that changed nothing does not pay for the
rebuild, and one that changed only scenes does not pay for the image tables.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import duckdb

from stash_pipeline.mirror.changes import table_writers, version_of
from stash_pipeline.mirror.db import fetch_row, fetch_scalar, table_exists


@dataclass(frozen=True)
class DerivedTable:
    name: str
    description: str
    inputs: tuple[str, ...]  # the entity types (assets) whose tables it reads
    sql: str  # SELECT producing the table


# An image's "first gallery" is its lowest gallery id (Stash has no order on image_galleries).
_FIRST_GALLERY = "SELECT image_id, min(gallery_id) AS gallery_id FROM image_galleries GROUP BY image_id"

IMAGES_EFFECTIVE = DerivedTable(
    name="images_effective",
    description="Each image's studio, date, photographer and details, or where the image has none, "
    "those of its first gallery (lowest gallery id).",
    inputs=("images", "galleries"),
    sql=f"""
    SELECT i.id AS image_id,
           coalesce(i.studio_id, g.studio_id) AS studio_id,
           coalesce(i.date, g.date) AS date,
           CASE WHEN i.date IS NOT NULL THEN i.date_precision ELSE g.date_precision END AS date_precision,
           coalesce(i.photographer, g.photographer) AS photographer,
           coalesce(i.details, g.details) AS details,
           CASE WHEN (i.studio_id IS NULL AND g.studio_id IS NOT NULL)
                  OR (i.date IS NULL AND g.date IS NOT NULL)
                  OR (i.photographer IS NULL AND g.photographer IS NOT NULL)
                  OR (i.details IS NULL AND g.details IS NOT NULL)
                THEN g.id END AS inherited_from_gallery_id
    FROM images i
    LEFT JOIN ({_FIRST_GALLERY}) fg ON fg.image_id = i.id
    LEFT JOIN galleries g ON g.id = fg.gallery_id
    """,
)


def _inherited_links(kind: str) -> str:
    """Direct image links, or for an image with none, those of its first gallery."""
    return f"""
    SELECT image_id, {kind}_id, false AS inherited FROM image_{kind}s
    UNION ALL
    SELECT fg.image_id, gl.{kind}_id, true AS inherited
    FROM ({_FIRST_GALLERY}) fg
    JOIN images i ON i.id = fg.image_id
    JOIN gallery_{kind}s gl ON gl.gallery_id = fg.gallery_id
    WHERE NOT EXISTS (SELECT 1 FROM image_{kind}s d WHERE d.image_id = fg.image_id)
    """


IMAGE_PERFORMERS_EFFECTIVE = DerivedTable(
    name="image_performers_effective",
    description="Performers of each image: its own, or if it has none, those of its first gallery "
    "(inherited = true).",
    inputs=("images", "galleries"),
    sql=_inherited_links("performer"),
)

IMAGE_TAGS_EFFECTIVE = DerivedTable(
    name="image_tags_effective",
    description="Tags of each image: its own, or if it has none, those of its first gallery "
    "(inherited = true).",
    inputs=("images", "galleries"),
    sql=_inherited_links("tag"),
)

SCENE_INHERITED_TAGS = DerivedTable(
    name="scene_inherited_tags",
    description="Tags a scene carries through its performers, its studio and its groups, that are "
    "not direct tags of the scene.",
    inputs=("scenes", "performers", "studios", "groups", "tags"),
    sql="""
    SELECT DISTINCT scene_id, tag_id FROM (
        SELECT sp.scene_id, pt.tag_id FROM scene_performers sp
        JOIN performer_tags pt ON pt.performer_id = sp.performer_id
        UNION ALL
        SELECT s.id, st.tag_id FROM scenes s JOIN studio_tags st ON st.studio_id = s.studio_id
        UNION ALL
        SELECT sg.scene_id, gt.tag_id FROM scene_groups sg JOIN group_tags gt ON gt.group_id = sg.group_id
    ) t
    WHERE NOT EXISTS (SELECT 1 FROM scene_tags d WHERE d.scene_id = t.scene_id AND d.tag_id = t.tag_id)
    """,
)

# Breadth-first over the parent DAG with one row per (tag, ancestor): ``USING KEY`` keeps the
# recursion's result keyed, and each step only adds pairs not reached before, so the first depth a
# pair gets is its shortest distance and the walk ends after (longest shortest path + 1) steps,
# cycles in bad data included.  (Carrying the path of every walk instead enumerates every path:
# exponential on a DAG with many diamonds, and a depth cap to stop it truncates deep chains.)
# Depth 0 is the tag itself, so "tag X including its sub-tags" is one join: WHERE ancestor_id = X.
TAG_ANCESTORS = DerivedTable(
    name="tag_ancestors",
    description="Closure of the tag parent DAG: (tag_id, ancestor_id, depth), depth 0 being the tag "
    "itself and depth the shortest distance; cycles in the data are walked once.",
    inputs=("tags",),
    sql="""
    WITH RECURSIVE walk(tag_id, ancestor_id, depth) USING KEY (tag_id, ancestor_id) AS (
        SELECT id, id, 0 FROM tags
        UNION
        SELECT w.tag_id, tp.parent_id, w.depth + 1
        FROM walk w JOIN tag_parents tp ON tp.tag_id = w.ancestor_id
        WHERE NOT EXISTS (
            SELECT 1 FROM recurring.walk r WHERE r.tag_id = w.tag_id AND r.ancestor_id = tp.parent_id
        )
    )
    SELECT tag_id, ancestor_id, depth FROM walk
    """,
)

# Files and markers per owner, summed by the counts below.
_FILES_OF = """
    {owner}_f AS (
        SELECT l.{owner}_id AS owner_id, count(*) AS n, coalesce(sum(f.size), 0) AS bytes
        FROM {owner}_files l JOIN files f ON f.id = l.file_id GROUP BY 1
    )"""


def _file_totals(name: str, parts: list[str]) -> str:
    """A CTE ``name(id, n, bytes)`` summing the files of the owners each part joins to an id."""
    union = " UNION ALL ".join(parts)
    return f"{name} AS (SELECT id, sum(n) AS n, sum(bytes) AS bytes FROM ({union}) x GROUP BY id)"


ENTITY_COUNTS = DerivedTable(
    name="entity_counts",
    description="Per performer, tag, studio and gallery: scenes, images (including those inherited "
    "from galleries) and galleries; scene markers (a tag's: markers with it as primary or other tag); "
    "and the files and bytes of its scenes, images and galleries (a gallery's: its images' and its zip).",
    inputs=("scenes", "images", "galleries", "performers", "tags", "studios", "scene_markers"),
    sql=f"""
    WITH
    {_FILES_OF.format(owner="scene")},
    {_FILES_OF.format(owner="image")},
    {_FILES_OF.format(owner="gallery")},
    scene_m AS (SELECT scene_id, count(*) AS n FROM scene_markers WHERE scene_id IS NOT NULL GROUP BY 1),
    {
        _file_totals(
            "perf_f",
            [
                "SELECT sp.performer_id AS id, f.n, f.bytes FROM scene_performers sp JOIN scene_f f ON f.owner_id = sp.scene_id",
                "SELECT ip.performer_id, f.n, f.bytes FROM (SELECT DISTINCT image_id, performer_id "
                "FROM image_performers_effective) ip JOIN image_f f ON f.owner_id = ip.image_id",
                "SELECT gp.performer_id, f.n, f.bytes FROM gallery_performers gp JOIN gallery_f f ON f.owner_id = gp.gallery_id",
            ],
        )
    },
    {
        _file_totals(
            "tag_f",
            [
                "SELECT st.tag_id AS id, f.n, f.bytes FROM scene_tags st JOIN scene_f f ON f.owner_id = st.scene_id",
                "SELECT it.tag_id, f.n, f.bytes FROM (SELECT DISTINCT image_id, tag_id FROM image_tags_effective) it "
                "JOIN image_f f ON f.owner_id = it.image_id",
                "SELECT gt.tag_id, f.n, f.bytes FROM gallery_tags gt JOIN gallery_f f ON f.owner_id = gt.gallery_id",
            ],
        )
    },
    {
        _file_totals(
            "stu_f",
            [
                "SELECT s.studio_id AS id, f.n, f.bytes FROM scenes s JOIN scene_f f ON f.owner_id = s.id",
                "SELECT i.studio_id, f.n, f.bytes FROM images_effective i JOIN image_f f ON f.owner_id = i.image_id",
                "SELECT g.studio_id, f.n, f.bytes FROM galleries g JOIN gallery_f f ON f.owner_id = g.id",
            ],
        )
    },
    {
        _file_totals(
            "gal_f",
            [
                "SELECT ig.gallery_id AS id, f.n, f.bytes FROM image_galleries ig JOIN image_f f ON f.owner_id = ig.image_id",
                "SELECT owner_id, n, bytes FROM gallery_f",
            ],
        )
    },
    perf_m AS (
        SELECT sp.performer_id AS id, sum(m.n) AS n FROM scene_performers sp
        JOIN scene_m m ON m.scene_id = sp.scene_id GROUP BY 1
    ),
    tag_m AS (
        SELECT tag_id AS id, count(DISTINCT marker_id) AS n FROM (
            SELECT id AS marker_id, primary_tag_id AS tag_id FROM scene_markers
            UNION ALL SELECT scene_marker_id, tag_id FROM scene_marker_tags
        ) x WHERE tag_id IS NOT NULL GROUP BY 1
    ),
    stu_m AS (SELECT s.studio_id AS id, sum(m.n) AS n FROM scenes s JOIN scene_m m ON m.scene_id = s.id GROUP BY 1),
    perf AS (
        SELECT p.id,
               (SELECT count(*) FROM scene_performers x WHERE x.performer_id = p.id) AS scene_count,
               (SELECT count(DISTINCT image_id) FROM image_performers_effective x WHERE x.performer_id = p.id) AS image_count,
               (SELECT count(*) FROM gallery_performers x WHERE x.performer_id = p.id) AS gallery_count
        FROM performers p
    ),
    tag AS (
        SELECT t.id,
               (SELECT count(*) FROM scene_tags x WHERE x.tag_id = t.id) AS scene_count,
               (SELECT count(DISTINCT image_id) FROM image_tags_effective x WHERE x.tag_id = t.id) AS image_count,
               (SELECT count(*) FROM gallery_tags x WHERE x.tag_id = t.id) AS gallery_count
        FROM tags t
    ),
    stu AS (
        SELECT s.id,
               (SELECT count(*) FROM scenes x WHERE x.studio_id = s.id) AS scene_count,
               (SELECT count(*) FROM images_effective x WHERE x.studio_id = s.id) AS image_count,
               (SELECT count(*) FROM galleries x WHERE x.studio_id = s.id) AS gallery_count
        FROM studios s
    ),
    gal AS (
        SELECT g.id,
               (SELECT count(*) FROM scene_galleries x WHERE x.gallery_id = g.id) AS scene_count,
               (SELECT count(*) FROM image_galleries x WHERE x.gallery_id = g.id) AS image_count,
               NULL::BIGINT AS gallery_count
        FROM galleries g
    )
    SELECT 'performer' AS entity_type, e.id AS entity_id, scene_count, image_count, gallery_count,
           coalesce(m.n, 0)::BIGINT AS marker_count, coalesce(f.n, 0)::BIGINT AS file_count,
           coalesce(f.bytes, 0)::BIGINT AS file_size
    FROM perf e LEFT JOIN perf_m m ON m.id = e.id LEFT JOIN perf_f f ON f.id = e.id
    UNION ALL SELECT 'tag', e.id, scene_count, image_count, gallery_count, coalesce(m.n, 0),
           coalesce(f.n, 0), coalesce(f.bytes, 0)
    FROM tag e LEFT JOIN tag_m m ON m.id = e.id LEFT JOIN tag_f f ON f.id = e.id
    UNION ALL SELECT 'studio', e.id, scene_count, image_count, gallery_count, coalesce(m.n, 0),
           coalesce(f.n, 0), coalesce(f.bytes, 0)
    FROM stu e LEFT JOIN stu_m m ON m.id = e.id LEFT JOIN stu_f f ON f.id = e.id
    UNION ALL SELECT 'gallery', e.id, scene_count, image_count, gallery_count, NULL,
           coalesce(f.n, 0), coalesce(f.bytes, 0)
    FROM gal e LEFT JOIN gal_f f ON f.id = e.id
    """,
)

# Stash's standard heights, by the shorter side of the picture (a portrait 1080x1920 is 1080p).
_RESOLUTIONS = (4320, 4032, 3384, 2880, 2160, 1440, 1080, 720, 540, 480, 360, 240, 144)
_LABEL = " ".join(f"WHEN least(f.width, f.height) >= {h} THEN '{h}p'" for h in _RESOLUTIONS)

SCENE_RESOLUTION = DerivedTable(
    name="scene_resolution",
    description="Each scene's effective resolution: that of its primary file (the one Stash plays), "
    "labelled by the shorter side (1080p, 2160p, ...), with its codec, frame rate and bit rate; the "
    "best label among all its files; and how many files it has and their total size.",
    inputs=("scenes",),
    sql=f"""
    WITH labelled AS (
        SELECT l.scene_id, l.file_id, l.is_primary, f.width, f.height, f.video_codec, f.frame_rate,
               f.bit_rate, f.size, least(f.width, f.height) AS short_side,
               CASE {_LABEL} WHEN f.width IS NOT NULL THEN 'below 144p' END AS resolution
        FROM scene_files l JOIN files f ON f.id = l.file_id
    )
    SELECT s.id AS scene_id, p.file_id, p.width, p.height, p.resolution, p.video_codec, p.frame_rate,
           p.bit_rate, a.best_short_side, a.file_count, a.total_size
    FROM scenes s
    LEFT JOIN labelled p ON p.scene_id = s.id AND p.is_primary
    LEFT JOIN (
        SELECT scene_id, max(short_side) AS best_short_side, count(*) AS file_count, sum(size) AS total_size
        FROM labelled GROUP BY 1
    ) a ON a.scene_id = s.id
    """,
)

FILE_DUPLICATES = DerivedTable(
    name="file_duplicates",
    description="Files that share a fingerprint (oshash, md5 or phash, exactly equal) with another "
    "file: one row per file and fingerprint, with how many files share it.",
    inputs=("scenes", "images", "galleries"),
    sql="""
    WITH prints AS (
        SELECT id AS file_id, file_type, 'oshash' AS fingerprint_type, oshash AS fingerprint FROM files WHERE oshash IS NOT NULL
        UNION ALL SELECT id, file_type, 'md5', md5 FROM files WHERE md5 IS NOT NULL
        UNION ALL SELECT id, file_type, 'phash', phash FROM files WHERE phash IS NOT NULL
    )
    SELECT fingerprint_type, fingerprint, file_id, file_type,
           count(*) OVER (PARTITION BY fingerprint_type, fingerprint) AS copies
    FROM prints
    QUALIFY copies > 1
    """,
)

DERIVED_TABLES: tuple[DerivedTable, ...] = (
    IMAGES_EFFECTIVE,
    IMAGE_PERFORMERS_EFFECTIVE,
    IMAGE_TAGS_EFFECTIVE,
    SCENE_INHERITED_TAGS,
    TAG_ANCESTORS,
    ENTITY_COUNTS,
    SCENE_RESOLUTION,
    FILE_DUPLICATES,
)
DERIVED_BY_NAME = {d.name: d for d in DERIVED_TABLES}
# entity_counts reads three other derived tables.
DERIVED_DEPENDENCIES = {
    "entity_counts": ("images_effective", "image_performers_effective", "image_tags_effective"),
}


class MissingDerivedInput(RuntimeError):
    """A derived table reads another derived table that has not been built yet."""


@dataclass(frozen=True)
class DerivedBuild:
    """What ``refresh`` did with one derived table."""

    rows: int
    rebuilt: bool  # False: it was already computed from this version of its inputs
    mirror_version: int  # of the types it reads (``changed_by``)
    built_at: datetime


@dataclass(frozen=True)
class BuildRecord:
    """The ``derived_builds`` row a rebuild writes in its own transaction."""

    mirror_version: int
    definition: str
    built_at: datetime


@cache
def changed_by(table: DerivedTable) -> tuple[str, ...]:
    """The types whose changes can move this table: the writers of every mirror table its SQL
    names (``mirror.changes.table_writers``).  Read from the SQL itself, so a new join cannot be
    forgotten here; a table named only in a comment costs a needless rebuild, never a stale one."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", table.sql))
    writers = table_writers()
    return tuple(sorted({t for name in words & writers.keys() for t in writers[name]}))


def definition_digest(table: DerivedTable) -> str:
    """Its SQL, the types it is versioned by and the mirror's schema: a new version of any of
    them rebuilds the table."""
    from stash_pipeline.mirror.evolution import SCHEMA_VERSION, expected_catalog

    text = f"{table.sql}\n{changed_by(table)}\n{SCHEMA_VERSION}\n{expected_catalog().fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refresh(con: duckdb.DuckDBPyConnection, table: DerivedTable, force: bool = False) -> DerivedBuild:
    """Rebuild one derived table unless it is current: recorded in ``derived_builds`` at the
    change version of the types it reads (``changed_by``), with this definition, still present,
    and built after every derived table it reads.  Every write that changes mirror rows moves its
    types' version in its own transaction (``mirror.changes``), so "current" means equal to a
    rebuild, not merely recent; a play (scenes) leaves the image tables alone.  ``force``
    rebuilds it anyway (a table edited by hand: nothing marks that)."""
    version = version_of(con, changed_by(table))
    definition = definition_digest(table)
    row = fetch_row(
        con,
        "SELECT mirror_version, definition, built_at, row_count FROM derived_builds WHERE table_name = ?",
        [table.name],
    )
    if (
        not force
        and row is not None
        and row[:2] == (version, definition)
        and _present_and_newer_than_inputs(con, table, row[2])
    ):
        return DerivedBuild(row[3], False, version, row[2])
    record = BuildRecord(version, definition, datetime.now(UTC))
    return DerivedBuild(rebuild(con, table, record), True, version, record.built_at)


def _present_and_newer_than_inputs(
    con: duckdb.DuckDBPyConnection, table: DerivedTable, built_at: datetime
) -> bool:
    """The table exists and each derived table it reads was last built before it."""
    if not table_exists(con, table.name):
        return False
    needed = DERIVED_DEPENDENCIES.get(table.name, ())
    if not needed:
        return True
    older = fetch_scalar(
        con,
        "SELECT count(*) FROM derived_builds WHERE table_name IN (SELECT unnest(?)) AND built_at <= ?",
        [list(needed), built_at],
    )
    return older == len(needed)


def rebuild(con: duckdb.DuckDBPyConnection, table: DerivedTable, record: BuildRecord | None = None) -> int:
    """Recompute one derived table atomically (with its ``derived_builds`` row, when given);
    returns its row count."""
    needed = DERIVED_DEPENDENCIES.get(table.name, ())
    if needed:
        missing = [name for name in needed if not table_exists(con, name)]
        if missing:
            raise MissingDerivedInput(
                f"{table.name} reads {', '.join(missing)}, not built yet: materialize "
                f"{'it' if len(missing) == 1 else 'them'} first (or every derived asset at once)"
            )
    con.begin()
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table.name} AS {table.sql}")
        rows = fetch_scalar(con, f"SELECT count(*) FROM {table.name}")
        if record is not None:
            con.execute(
                "INSERT OR REPLACE INTO derived_builds VALUES (?, ?, ?, ?, ?)",
                [table.name, record.mirror_version, record.definition, record.built_at, rows],
            )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return rows
