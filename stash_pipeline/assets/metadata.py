"""The sync-metadata record: one typed contract between the entity assets, which write it on every
materialization, and the sensor, the runner and the CLI, which read it back from the Dagster
instance (never opening DuckDB while a run may hold it)."""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any

import dagster as dg
import duckdb

from stash_pipeline.assets.partitions import repartitioned
from stash_pipeline.mirror.activity import mirror_listed_activity
from stash_pipeline.mirror.db import fetch_scalar
from stash_pipeline.mirror.evolution import layout_digest
from stash_pipeline.mirror.links import links_digest, mirror_links
from stash_pipeline.mirror.report import SyncReport
from stash_pipeline.mirror.stamps import mirror_digest, mirror_linked_digest, stamp_digest
from stash_pipeline.mirror.state import read_state
from stash_pipeline.mirror.windows import any_offset_bound, overlap_bound, parse_stash_time, stamp_bound
from stash_pipeline.model import EntitySpec


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in rows])


@dataclass(frozen=True)
class SyncMetadata:
    """What one sync of one type recorded.

    ``stamp_bound``, ``stamp_digest`` and ``local_count`` let the sensor decide from the instance
    alone whether Stash changed (``mirror.stamps``; ``cursor``, ``window_bound`` and
    ``window_count`` when the stamps above the bound are too many to list on every tick); the
    counts are what the UI plots and the history explains.
    """

    sync_type: str = ""
    status: str = ""
    window: str = ""
    skipped: bool = False
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    duplicates: int = 0  # rows Stash sent twice in one page (stored once; the last copy wins)
    repaired: int = 0
    pages: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    cursor: str | None = None
    window_bound: str | None = None
    window_count: int | None = None
    stamp_bound: str | None = None  # the next stamp check lists the rows at or above this text
    stamp_digest: str | None = None  # of the mirror's (id, updated_at) at or above it
    stamp_rows: int | None = None  # how many they are
    stamps_listed: int | None = None  # this run's stamp check: rows listed, and changed among them
    stamps_changed: int | None = None
    activity_totals: dict[str, float] | None = None  # Stash's stats totals when the run began
    activity_changed: int | None = None  # rows with new plays, O counts or activity (no bump)
    links_digest: str | None = None  # of the mirror's unbumped links (addGroupSubGroups)
    links_changed: int | None = None  # rows whose unbumped links this run found changed
    # Of the mirror's rows with a listed activity column above zero (``EntitySpec.listed_activity``:
    # resume points), and how many they are: the sensor lists Stash's and compares.
    listed_activity_digest: str | None = None
    listed_activity_rows: int | None = None
    # Files: the digest of the stamps at or above stamp_bound of the files this type's rows link
    # (renames and rescans bump no owner; the sensor compares it where Stash lists files), files
    # this run found renamed or rescanned, and file rows it wrote.
    file_stamp_digest: str | None = None
    files_changed: int | None = None
    files_written: int | None = None
    stash_count: int | None = None
    local_count: int | None = None
    changed_fields: dict[str, int] | None = None
    failures: list[dict] | None = None
    schema_note: str | None = None  # "scenes: 1 new column (code), re-read all rows to fill it"
    stash_version: str | None = None
    not_offered: list[str] | None = None  # "studios.urls, read from studios.url"
    partitioning: str | None = None  # "year" or "month" (None: written before it was recorded)
    mirror_layout: str | None = None  # the tables' layout it was written with (``layout_digest``)
    # Every row Stash writes after this sync began has a stamp text at or above this: where the
    # next incremental run's partition range starts (``incremental_start``).
    fresh_bound: str | None = None

    @classmethod
    def from_report(
        cls,
        con: duckdb.DuckDBPyConnection,
        spec: EntitySpec,
        report: SyncReport,
        overlap_seconds: float,
        partitioning: str | None = None,
    ) -> "SyncMetadata":
        state = read_state(con, spec.name)
        cursor = state.cursor
        window_bound = overlap_bound(cursor, overlap_seconds) if cursor else None
        bound = stamp_bound(state.server_time, cursor, overlap_seconds)
        stamp_rows, digest = mirror_digest(con, spec, bound) if bound else (None, None)
        window_count = (
            fetch_scalar(con, f"SELECT count(*) FROM {spec.name} WHERE updated_at_text >= ?", [window_bound])
            if window_bound
            else None
        )
        listed = mirror_listed_activity(con, spec) if spec.listed_activity else None
        return cls(
            sync_type=report.sync_type,
            status=report.status,
            window=report.window,
            skipped=report.skipped,
            fetched=report.fetched,
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
            deleted=report.deleted,
            failed=report.failed,
            duplicates=report.duplicates,
            repaired=report.repaired,
            pages=report.pages,
            seconds=round(report.seconds, 3),
            rows_per_second=report.rows_per_second,
            cursor=cursor,
            window_bound=window_bound,
            window_count=window_count,
            stamp_bound=bound,
            stamp_digest=digest,
            stamp_rows=stamp_rows,
            stamps_listed=report.stamps_listed,
            stamps_changed=report.stamps_changed,
            activity_totals=report.activity_totals,
            activity_changed=report.activity_changed,
            links_digest=links_digest(mirror_links(con, spec)) if spec.unbumped_relations else None,
            links_changed=report.links_changed,
            listed_activity_digest=stamp_digest(listed) if listed is not None else None,
            listed_activity_rows=len(listed) if listed is not None else None,
            file_stamp_digest=_file_digest(con, spec, bound) if bound and report.lists_files else None,
            files_changed=report.files_changed,
            files_written=sum(report.embedded_written.values()) if spec.embedded_relations else None,
            stash_count=report.stash_count,
            local_count=fetch_scalar(con, f"SELECT count(*) FROM {spec.name}"),
            changed_fields=report.changed_fields or None,
            failures=[{"id": i, "reason": r} for i, r in report.failures[:20]] or None,
            schema_note=report.schema_note,
            stash_version=report.stash_version,
            not_offered=report.not_offered or None,
            partitioning=partitioning,
            mirror_layout=layout_digest(),
            fresh_bound=any_offset_bound(state.server_time - timedelta(seconds=overlap_seconds))
            if state.server_time
            else None,
        )

    def to_dagster(self) -> dict[str, Any]:
        """Dagster metadata values; absent values are left out (Dagster has no null)."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, bool | str):
                out[name] = value
            elif isinstance(value, int):
                out[name] = dg.MetadataValue.int(value)
            elif isinstance(value, float):
                out[name] = dg.MetadataValue.float(value)
            else:
                out[name] = dg.MetadataValue.json(value)
        if self.local_count is not None:
            out["dagster/row_count"] = dg.MetadataValue.int(self.local_count)
        return out

    @classmethod
    def parse(cls, metadata: Mapping[str, Any]) -> "SyncMetadata":
        """From a materialization's metadata (Dagster's values or plain ones)."""
        known = {f.name for f in fields(cls)}
        values = {k: getattr(v, "value", getattr(v, "data", v)) for k, v in metadata.items() if k in known}
        # Older runs wrote "" for no cursor and -1 for an unknown count.
        for key in ("cursor", "window_bound", "stamp_bound"):
            if values.get(key) == "":
                values[key] = None
        if values.get("stash_count") == -1:
            values["stash_count"] = None
        return cls(**values)

    @classmethod
    def latest(cls, instance: dg.DagsterInstance, entity_type: str) -> "SyncMetadata | None":
        """The record of the latest materialization of an entity asset, if any."""
        return cls.of_event(instance.get_latest_materialization_event(dg.AssetKey(entity_type)))

    @classmethod
    def of_event(cls, event: dg.EventLogEntry | None) -> "SyncMetadata | None":
        """The record a materialization event carries, if it is one."""
        if event is None or event.asset_materialization is None:
            return None
        return cls.parse(event.asset_materialization.metadata)


def _file_digest(con: duckdb.DuckDBPyConnection, spec: EntitySpec, bound: str) -> str:
    """One digest over the file stamps of every embedded relation of the type (it has one)."""
    return "/".join(mirror_linked_digest(con, rel, bound)[1] for rel in spec.embedded_relations)


def report_metadata(
    con: duckdb.DuckDBPyConnection,
    spec: EntitySpec,
    report: SyncReport,
    overlap_seconds: float,
    partitioning: str | None = None,
) -> dict[str, Any]:
    """The materialization metadata of one sync: the record, and the table's schema for the UI."""
    record = SyncMetadata.from_report(con, spec, report, overlap_seconds, partitioning)
    return {**record.to_dagster(), "dagster/column_schema": table_schema(con, spec.name)}


def incremental_start(states: list[SyncMetadata], partitioning: str) -> date | None:
    """The earliest date the types' next incremental runs can write rows into: the partition range
    of such a run starts at its partition (the sensor, the CLI).  Rows changed since a type's last
    sync carry stamps at or after its ``fresh_bound`` (else its stamp bound, the overlap window's, or
    the cursor: records from older releases), so that is where; None (every partition) when some type never synced or synced under
    other partitions."""
    bounds = [s.fresh_bound or s.stamp_bound or s.window_bound or s.cursor for s in states]
    if not bounds or any(b is None for b in bounds):
        return None
    if any(repartitioned(s.partitioning, partitioning) for s in states):
        return None
    return min(parse_stash_time(b).date() for b in bounds if b)
