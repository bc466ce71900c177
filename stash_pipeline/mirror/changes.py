"""The mirror's change counter (``mirror_changes``): one row per entity type with the version at
which a write last changed its rows, and when.  The versions share one sequence (a write takes the
largest version so far plus one), so ``max(version)`` moves with every write that changes any
entity, link, child or file row, and only with those: a run that finds nothing leaves it alone.

Every writer calls ``mark_changed`` inside its own transaction (``EntityMerger`` when it writes
rows, ``delete_entities``, the membership refresh), so a rolled-back page leaves no mark, and a
derived table recorded at the current version of the types it reads is exact as it stands
(``mirror.derived.refresh``).  A write marks every type whose tables it changed: a delete that
clears references in another type's tables marks that type too, and the gallery-side membership
refresh marks the images, whose table (``image_galleries``) it rewrites.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from functools import cache

import duckdb

from stash_pipeline.mirror.db import fetch_scalar
from stash_pipeline.model import ENTITY_SPECS


def mark_changed(con: duckdb.DuckDBPyConnection, entity_type: str, now: datetime) -> None:
    con.execute(
        "INSERT INTO mirror_changes (entity_type, version, changed_at) "
        "SELECT $type, coalesce(max(version), 0) + 1, $now FROM mirror_changes "
        "ON CONFLICT (entity_type) DO UPDATE SET version = excluded.version, changed_at = excluded.changed_at",
        {"type": entity_type, "now": now},
    )


def version_of(con: duckdb.DuckDBPyConnection, entity_types: Iterable[str]) -> int:
    """The version of the last change to any of these types' rows (0 before the first)."""
    return fetch_scalar(
        con,
        "SELECT coalesce(max(version), 0) FROM mirror_changes WHERE entity_type IN (SELECT unnest(?))",
        [sorted(set(entity_types))],
    )


@cache
def table_writers() -> dict[str, frozenset[str]]:
    """Every mirror table and the types whose marks record a change to it: an entity table and its
    link tables their type's (a link table that both sides refresh, both types'), an embedded
    table (``files``) its own."""
    writers: dict[str, set[str]] = defaultdict(set)
    for spec in ENTITY_SPECS:
        writers[spec.name].add(spec.name)
        for rel in spec.relations:
            writers[rel.table].add(spec.name)
            if rel.embedded is not None:
                writers[rel.embedded.name].add(rel.embedded.name)
    return {table: frozenset(types) for table, types in writers.items()}
