"""Whether the mirror file is as the last syncs left it: the CLI's check before it trusts the
sensor's probe to say that a sync has nothing to do (the probe compares Stash with what the last
syncs recorded in Dagster, and a mirror restored from a backup, replaced, deleted, or left with a
resume or a refill pending would not be what they recorded)."""

from collections.abc import Mapping
from pathlib import Path

import duckdb

from stash_pipeline.mirror.db import table_exists
from stash_pipeline.mirror.evolution import SCHEMA_VERSION, expected_catalog, recorded_schema

_STATE = (
    "SELECT entity_type, last_run_id, last_status, resume_key, refill_columns FROM sync_state "
    "WHERE list_contains(?, entity_type)"
)


def unlike_last_syncs(db_path: str, last_runs: Mapping[str, str | None]) -> str | None:
    """Why the mirror at ``db_path`` is not the one the runs ``last_runs`` (type → run id) left,
    complete and at this version's schema; None when it is.  A read-only look (it waits for no
    one: a file another process holds is a reason too)."""
    if not Path(db_path).is_file():
        return f"no mirror at {db_path}"
    try:
        with duckdb.connect(db_path, read_only=True) as con:
            if recorded_schema(con) != (SCHEMA_VERSION, expected_catalog().fingerprint):
                return "the mirror's tables are not at this version's schema"
            if not table_exists(con, "sync_state"):
                return "the mirror has no sync state"
            rows = con.execute(_STATE, [list(last_runs)]).fetchall()
    except duckdb.Error as exc:
        return f"the mirror could not be read ({str(exc).splitlines()[0]})"
    found = {row[0]: row[1:] for row in rows}
    for name, run_id in last_runs.items():
        if name not in found:
            return f"{name}: never synced into this mirror"
        last_run, status, resume_key, refill = found[name]
        if last_run != run_id:
            return f"{name}: the mirror was last synced by another run than Dagster's last ({last_run})"
        if status not in ("success", "skipped"):
            return f"{name}: its last sync into this mirror ended {status}"
        if resume_key or refill:
            return f"{name}: a sync left work pending (a resume or a refill)"
    return None
