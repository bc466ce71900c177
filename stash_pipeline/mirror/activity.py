"""The activity check: plays, O counts and saved activity, which Stash changes without a bump.

``sceneAddPlay``, ``sceneAddO``, ``sceneSaveActivity``, ``imageIncrementO`` and their resets write
the counters and histories but not ``updated_at`` (docs/stash-behaviour.md §6), so no cursor and no
stamp ever sees them.  What does see them: the rows with any activity, listed with their unbumped
columns (``queries.active_filter``), against the mirror's rows with any activity.  A row that
differs, or is active on one side only (a reset), is re-read by id.  The cost is the number of rows
ever played or O-counted, ids and a few numbers each; Stash's ``stats`` totals, which move with
every such event, tell the sensor when to ask (``EntitySpec.activity_totals``); for a column no
total follows (a resume point), the sensor lists the rows where it is set (``listed_activity``).
"""

import duckdb
import pyarrow as pa

from stash_pipeline.mirror.db import unregister
from stash_pipeline.model import EntitySpec
from stash_pipeline.stash.queries import above_zero_filter


def changed_activity(con: duckdb.DuckDBPyConnection, spec: EntitySpec, server: pa.Table) -> tuple[int, ...]:
    """Ids whose unbumped columns differ between Stash's active rows (``server``, values as text)
    and the mirror's active rows, sorted."""
    columns = spec.unbumped_columns
    numeric = [c.name for c in columns if c.kind.name in ("int", "float")]
    active = " OR ".join(f'coalesce("{n}", 0) > 0' for n in numeric) or "false"
    differs = " OR ".join(
        f'TRY_CAST(s."{c.name}" AS {c.kind.sql}) IS DISTINCT FROM m."{c.name}"' for c in columns
    )
    local = ", ".join(f'"{c.name}"' for c in columns)
    con.register("server_activity", server)
    try:
        rows = con.execute(
            f"WITH m AS (SELECT id, {local} FROM {spec.name} WHERE {active}) "
            "SELECT coalesce(s.id, m.id) AS id FROM server_activity s FULL OUTER JOIN m ON s.id = m.id "
            f"WHERE s.id IS NULL OR m.id IS NULL OR {differs} ORDER BY 1"
        ).fetchall()
    finally:
        unregister(con, "server_activity")
    return tuple(r[0] for r in rows)


# The sensor's view of the activity no ``stats`` total follows (``EntitySpec.listed_activity``: a
# resume point saved without a play): the rows where such a column is above zero, as
# ``(id, values as text)`` pairs, hashed like stamps.  Stash's floats (Go's shortest form) and the
# mirror's DOUBLEs print alike through ``repr(float)``.
def listed_activity_filter(spec: EntitySpec) -> dict | None:
    """Stash's filter for rows where any listed column is above zero (``None``: nothing listed)."""
    return above_zero_filter(spec.listed_activity)


def _text(values: tuple) -> str:
    return "\t".join("" if v is None else repr(float(v)) for v in values)


def server_listed_activity(spec: EntitySpec, items: list[dict]) -> list[tuple[int, str]]:
    """Stash's answer to ``listed_activity_filter`` as sorted pairs."""
    return sorted(
        (int(item["id"]), _text(tuple(item.get(c) for c in spec.listed_activity))) for item in items
    )


def mirror_listed_activity(con: duckdb.DuckDBPyConnection, spec: EntitySpec) -> list[tuple[int, str]]:
    """The mirror's rows where any listed column is above zero, as the same pairs."""
    columns = ", ".join(f'"{c}"' for c in spec.listed_activity)
    above = " OR ".join(f'"{c}" > 0' for c in spec.listed_activity)
    rows = con.execute(f"SELECT id, {columns} FROM {spec.name} WHERE {above} ORDER BY id").fetchall()
    return [(int(r[0]), _text(tuple(r[1:]))) for r in rows]
