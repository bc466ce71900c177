"""Materialization metadata for a sync: the numbers the UI plots and the history explains."""

import dagster as dg
import duckdb

from stash_pipeline.mirror.db import fetch_scalar
from stash_pipeline.mirror.state import read_state
from stash_pipeline.mirror.sync import SyncReport
from stash_pipeline.mirror.windows import overlap_bound
from stash_pipeline.model import EntitySpec


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in rows])


def report_metadata(
    con: duckdb.DuckDBPyConnection, spec: EntitySpec, report: SyncReport, overlap_seconds: float = 3600
) -> dict:
    """Metadata of one sync: what the UI plots and what the smart-sync sensor reads back.

    ``cursor``, ``local_count``, ``window_bound`` and ``window_count`` let the sensor decide, from
    the instance alone (never opening DuckDB while a run may hold it), whether Stash changed.
    """
    local = fetch_scalar(con, f"SELECT count(*) FROM {spec.name}")
    cursor = read_state(con, spec.name).cursor
    window_bound = overlap_bound(cursor, overlap_seconds) if cursor else ""
    window_count = (
        fetch_scalar(con, f"SELECT count(*) FROM {spec.name} WHERE updated_at_text >= ?", [window_bound])
        if cursor
        else 0
    )
    metadata: dict = {
        "sync_type": report.sync_type,
        "status": report.status,
        "window": report.window,
        "skipped": report.skipped,
        "fetched": dg.MetadataValue.int(report.fetched),
        "created": dg.MetadataValue.int(report.created),
        "updated": dg.MetadataValue.int(report.updated),
        "unchanged": dg.MetadataValue.int(report.unchanged),
        "deleted": dg.MetadataValue.int(report.deleted),
        "failed": dg.MetadataValue.int(report.failed),
        # Rows Stash sent twice in one page (stored once; the last copy wins).
        "duplicates": dg.MetadataValue.int(report.duplicates),
        "repaired": dg.MetadataValue.int(report.repaired),
        "pages": dg.MetadataValue.int(report.pages),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(report.rows_per_second),
        "cursor": cursor or "",
        "window_bound": window_bound,
        "window_count": dg.MetadataValue.int(window_count),
        "stash_count": dg.MetadataValue.int(report.stash_count if report.stash_count is not None else -1),
        "local_count": dg.MetadataValue.int(local),
        "dagster/row_count": dg.MetadataValue.int(local),
        "dagster/column_schema": table_schema(con, spec.name),
    }
    if report.changed_fields:
        metadata["changed_fields"] = dg.MetadataValue.json(report.changed_fields)
    if report.failures:
        metadata["failures"] = dg.MetadataValue.json(
            [{"id": i, "reason": r} for i, r in report.failures[:20]]
        )
    return metadata
