"""The mirror's change counter (``mirror_changes``): one row per entity type with the version at
which a write last changed its rows, and when.  The versions share one sequence (a write takes the
largest version so far plus one), so ``max(version)`` moves with every write that changes any
entity, link, child or file row, and only with those: a run that finds nothing leaves it alone.

Every writer calls ``mark_changed`` inside its own transaction (``EntityMerger`` when it writes
rows, ``delete_entities``, the membership refresh), so a rolled-back page leaves no mark, and a
derived table recorded at the current version is exact as it stands (``mirror.derived.refresh``).
"""

from datetime import datetime

import duckdb

from stash_pipeline.mirror.db import fetch_scalar


def mark_changed(con: duckdb.DuckDBPyConnection, entity_type: str, now: datetime) -> None:
    con.execute(
        "INSERT INTO mirror_changes (entity_type, version, changed_at) "
        "SELECT $type, coalesce(max(version), 0) + 1, $now FROM mirror_changes "
        "ON CONFLICT (entity_type) DO UPDATE SET version = excluded.version, changed_at = excluded.changed_at",
        {"type": entity_type, "now": now},
    )


def mirror_version(con: duckdb.DuckDBPyConnection) -> int:
    """The version of the mirror's last change (0 before the first)."""
    return fetch_scalar(con, "SELECT coalesce(max(version), 0) FROM mirror_changes")
