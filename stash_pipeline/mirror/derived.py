"""SQL for the derived tables (docs/architecture.md §3): recomputed from the mirror, never written into it.

Each table is rebuilt whole with ``CREATE OR REPLACE TABLE … AS`` in one transaction: on a
million images this is a few seconds of DuckDB, cheaper and simpler than incremental upkeep, and
it can never drift from its inputs.
"""

from dataclasses import dataclass

import duckdb

from stash_pipeline.mirror.db import fetch_scalar


@dataclass(frozen=True)
class DerivedTable:
    name: str
    description: str
    inputs: tuple[str, ...]  # mirror tables (entity asset names first) it reads
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

ENTITY_COUNTS = DerivedTable(
    name="entity_counts",
    description="Scenes, images and galleries per performer, tag, studio and gallery; image counts "
    "include images inherited from galleries.",
    inputs=("scenes", "images", "galleries", "performers", "tags", "studios"),
    sql="""
    WITH
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
    SELECT 'performer' AS entity_type, id AS entity_id, scene_count, image_count, gallery_count FROM perf
    UNION ALL SELECT 'tag', id, scene_count, image_count, gallery_count FROM tag
    UNION ALL SELECT 'studio', id, scene_count, image_count, gallery_count FROM stu
    UNION ALL SELECT 'gallery', id, scene_count, image_count, gallery_count FROM gal
    """,
)

DERIVED_TABLES: tuple[DerivedTable, ...] = (
    IMAGES_EFFECTIVE,
    IMAGE_PERFORMERS_EFFECTIVE,
    IMAGE_TAGS_EFFECTIVE,
    SCENE_INHERITED_TAGS,
    TAG_ANCESTORS,
    ENTITY_COUNTS,
)
DERIVED_BY_NAME = {d.name: d for d in DERIVED_TABLES}
# entity_counts reads three other derived tables.
DERIVED_DEPENDENCIES = {
    "entity_counts": ("images_effective", "image_performers_effective", "image_tags_effective"),
}


class MissingDerivedInput(RuntimeError):
    """A derived table reads another derived table that has not been built yet."""


def rebuild(con: duckdb.DuckDBPyConnection, table: DerivedTable) -> int:
    """Recompute one derived table atomically; returns its row count."""
    needed = DERIVED_DEPENDENCIES.get(table.name, ())
    if needed:
        present = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        }
        missing = [name for name in needed if name not in present]
        if missing:
            raise MissingDerivedInput(
                f"{table.name} reads {', '.join(missing)}, not built yet: materialize "
                f"{'it' if len(missing) == 1 else 'them'} first (or every derived asset at once)"
            )
    con.begin()
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table.name} AS {table.sql}")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return fetch_scalar(con, f"SELECT count(*) FROM {table.name}")
