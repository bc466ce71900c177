"""The entity assets (group ``stash``), one per entity spec, computed by one subsettable step.

Each asset is partitioned by year (or month) of Stash's ``updated_at``; a run over a partition
range fetches the entities updated in that window, and a run over every partition is the full
sync (one run, thanks to ``BackfillPolicy.single_run()``).  Run config can ask for an incremental sync (from the
stored cursor) or a targeted resync of ids instead.
"""

import time
import uuid
from collections.abc import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from stash_pipeline.assets.metadata import SyncMetadata, report_metadata
from stash_pipeline.assets.partitions import (
    OLD_PARTITIONING,
    entity_partitions,
    partitioning_of,
    repartitioned,
    window_for,
)
from stash_pipeline.mirror.db import is_disk_full
from stash_pipeline.mirror.report import SyncReport
from stash_pipeline.mirror.schema import entity_columns
from stash_pipeline.mirror.sync import EntitySync, SyncOptions, SyncRequest
from stash_pipeline.model import ENTITY_SPECS, EntitySpec
from stash_pipeline.progress import ProgressTracker
from stash_pipeline.resources import StashResource, mirror_connection
from stash_pipeline.settings import Settings
from stash_pipeline.stash.client import StashClient
from stash_pipeline.stash.errors import StashAuthError, StashNotReadyError, StashUnavailableError

STASH_GROUP = "stash"
WRITER_POOL = "duckdb_writer"


class SyncConfig(dg.Config):
    """How to sync; the defaults let the partition range decide (all partitions = full sync)."""

    mode: str = Field(
        default="auto",
        description="auto (the partition range decides: all partitions = full, else that window), "
        "full, incremental (from the stored cursor minus the overlap), or specific (the given ids).",
    )
    since: str | None = Field(
        default=None,
        description="Incremental lower bound (a Stash timestamp or date), instead of the cursor.",
    )
    ids: list[int] = Field(default_factory=list, description="Ids to resync, with mode=specific.")
    allow_mass_delete: bool = Field(
        default=False,
        description="Apply deletes above the safety fraction (after a real mass delete in Stash).",
    )


def sync_options(settings: Settings, config: SyncConfig) -> SyncOptions:
    return SyncOptions(
        page_size=settings.page_size,
        overlap_seconds=settings.overlap_seconds,
        max_delete_fraction=settings.max_delete_fraction,
        allow_mass_delete=config.allow_mass_delete,
        merge_rows=settings.merge_rows,
        commit_rows=settings.commit_rows,
    )


ENTITY_OP = "stash_entities"
# Errors about the server itself: the other types would fail the same way, so the run stops.
_SERVER_ERRORS = (StashAuthError, StashUnavailableError, StashNotReadyError)


def entity_spec(spec: EntitySpec, partitions: dg.TimeWindowPartitionsDefinition) -> dg.AssetSpec:
    """The asset of one entity type: its table, its lineage (the types it references), its page."""
    upstream = sorted(spec.referenced_types, key=_order)
    return dg.AssetSpec(
        key=spec.name,
        group_name=STASH_GROUP,
        partitions_def=partitions,
        deps=[dg.AssetKey(n) for n in upstream if n != spec.name and _order(n) < spec.order],
        kinds={"duckdb", "polars", "graphql"},
        owners=["team:stash-pipeline"],
        tags={"layer": "mirror"},
        metadata={
            "dagster/column_schema": declared_schema(spec),
            "dagster/table_name": f"stash.main.{spec.name}",
            "link_tables": ", ".join(sorted({r.table for r in spec.relations})),
            "keyset_paging": spec.keyset,
        },
        description=f"{spec.description} Mirrors Stash's `{spec.query}` into the DuckDB table "
        f"`{spec.name}` (and its link tables). A run over every partition is the full sync.",
    )


def build_entity_assets(settings: Settings | None = None) -> list[dg.AssetsDefinition]:
    """The entity assets, one per type, computed by ONE step that syncs the selected types in
    order: a step costs Dagster a dozen event-log writes and its own set-up, which was most of
    a small sync's time with a step per type (docs/architecture.md §7).  A type that fails does
    not stop the independent ones; the ones that reference it wait for the next run."""
    settings = settings or Settings.from_env()
    partitions = entity_partitions(settings.partition_start, settings.partition_by)

    @dg.multi_asset(
        name=ENTITY_OP,
        specs=[entity_spec(spec, partitions) for spec in ENTITY_SPECS],
        partitions_def=partitions,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        description="Syncs the selected entity types from Stash into the mirror, in dependency order.",
    )
    def stash_entities(
        context: dg.AssetExecutionContext,
        config: SyncConfig,
        stash: StashResource,
        mirror: DuckDBResource,
    ) -> Iterator[dg.MaterializeResult]:
        selected = {key.path[-1] for key in context.selected_asset_keys}
        failed: dict[str, BaseException] = {}
        with stash.client() as client, mirror_connection(mirror, context.log.warning) as con:
            for spec in ENTITY_SPECS:
                if spec.name not in selected:
                    continue
                missing = sorted(n for n in spec.referenced_types if n in failed and n != spec.name)
                if missing:
                    context.log.warning(f"{spec.name}: not synced, {', '.join(missing)} failed first")
                    failed[spec.name] = failed[missing[0]]
                    continue
                try:
                    yield _sync_one(context, spec, config, partitions, settings, client, con)
                except Exception as exc:
                    failed[spec.name] = exc
                    # Stop: the server or the disk would fail every other type too (a full disk is
                    # turned into its message once, by mirror_connection).
                    stop = isinstance(exc, _SERVER_ERRORS) or is_disk_full(exc)
                    if stop or cancellation_check(context)(force=True):
                        raise
                    context.log.error(f"{spec.name}: sync failed: {exc}")
        if failed:
            first = next(iter(failed.values()))
            if len(failed) > 1:
                context.log.error(f"not synced: {', '.join(failed)}")
            raise first

    return list(dg.with_source_code_references([stash_entities]))


def _sync_one(
    context: dg.AssetExecutionContext,
    spec: EntitySpec,
    config: SyncConfig,
    partitions: dg.TimeWindowPartitionsDefinition,
    settings: Settings,
    client: StashClient,
    con: duckdb.DuckDBPyConnection,
) -> dg.MaterializeResult:
    last = SyncMetadata.latest(context.instance, spec.name)
    request = _request(context, spec, config, partitions, last)
    # A resync of ids materializes no partition: it keeps the scheme the last sync recorded.
    scheme = partitioning_of(partitions)
    if request.mode == "specific" and last is not None:
        scheme = last.partitioning
    tracker = ProgressTracker(spec.name, context.log.info)

    def progress(report: SyncReport, expected: int | None) -> None:
        tracker.update(report.fetched, expected, report.pages)

    sync = EntitySync(
        spec,
        client,
        con,
        sync_options(settings, config),
        progress=progress,
        should_stop=cancellation_check(context),
    )
    report = sync.run(request)
    if report.schema_note:
        context.log.info(report.schema_note)
    tracker.update(report.fetched, report.fetched, report.pages, done=True)
    context.log.info(
        f"{spec.name}: {report.sync_type} sync ({report.window}), "
        + ("nothing changed" if report.skipped else f"{report.fetched:,} rows in {report.pages} pages")
        + f": {report.created:,} new, {report.updated:,} updated, {report.deleted:,} deleted"
        + (f", {report.failed:,} failed" if report.failed else "")
        + f" in {report.seconds:.1f} s"
    )
    metadata = report_metadata(con, spec, report, settings.overlap_seconds, scheme)
    if report.failed:
        context.log.warning(
            f"{spec.name}: {report.failed} rows could not be stored (see sync_log, action 'failed'); "
            f"first: {report.failures[:3]}"
        )
    return dg.MaterializeResult(
        asset_key=spec.name, metadata=metadata, tags={"stash/sync_type": report.sync_type}
    )


def cancellation_check(context: dg.AssetExecutionContext, every_seconds: float = 2.0):
    """Between pages: has someone asked Dagster to terminate this run?  (Checked every few seconds
    unless ``force``; the page in flight is committed whole or rolled back, and the next run
    resumes.)  The sync also asks with ``force`` when it failed: a termination can surface as a
    plain exception from inside a library call, and it is still a cancellation."""
    last = [0.0]

    def should_stop(force: bool = False) -> bool:
        now = time.monotonic()
        if context.run is None or (not force and now - last[0] < every_seconds):
            return False
        last[0] = now
        run = context.instance.get_run_by_id(context.run.run_id)
        return run is not None and run.status == dg.DagsterRunStatus.CANCELING

    return should_stop


def _order(name: str) -> int:
    return next(s.order for s in ENTITY_SPECS if s.name == name)


def _request(
    context: dg.AssetExecutionContext,
    spec: EntitySpec,
    config: SyncConfig,
    partitions: dg.PartitionsDefinition,
    last: SyncMetadata | None,
) -> SyncRequest:
    run_id = context.run.run_id if context.run else uuid.uuid4().hex
    mode = config.mode
    if mode == "specific":
        if not config.ids:
            raise dg.Failure("mode=specific needs ids")
        return SyncRequest(spec.name, "specific", run_id, ids=list(config.ids))
    if mode in ("auto", "incremental"):
        scheme = partitioning_of(partitions)
        if last and repartitioned(last.partitioning, scheme):
            context.log.info(
                f"{spec.name}: the partitions are by {scheme} now (the last sync's were by "
                f"{last.partitioning or OLD_PARTITIONING}): this run is a full sync, so that every "
                f"{scheme} partition is materialized"
            )
            return SyncRequest(spec.name, "full", run_id)
    if mode in ("full", "incremental"):
        return SyncRequest(spec.name, mode, run_id, since=config.since)
    if mode != "auto":
        raise dg.Failure(f"unknown mode {mode!r}: expected auto, full, incremental or specific")
    keys = context.partition_keys if context.has_partition_key or context.has_partition_key_range else []
    window = window_for(partitions, keys, context.instance)
    return SyncRequest(spec.name, "window", run_id, window=window)


def declared_schema(spec: EntitySpec) -> dg.TableSchema:
    """The table's columns as declared by the spec (shown on the asset page before any run)."""
    return dg.TableSchema(columns=[dg.TableColumn(c.name, c.sql_type) for c in entity_columns(spec)])
