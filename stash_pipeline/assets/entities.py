"""The seven entity assets (group ``stash``), built by one factory from the entity specs.

Each asset is partitioned by month of Stash's ``updated_at``; a run over a partition range fetches
the entities updated in that window, and a run over every partition is the full sync (one run,
thanks to ``BackfillPolicy.single_run()``).  Run config can ask for an incremental sync (from the
stored cursor) or a targeted resync of ids instead.
"""

import time
import uuid

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from stash_pipeline.assets.metadata import report_metadata
from stash_pipeline.assets.partitions import monthly_partitions, window_for
from stash_pipeline.mirror.schema import entity_columns
from stash_pipeline.mirror.sync import EntitySync, SyncOptions, SyncReport, SyncRequest
from stash_pipeline.model import ENTITY_SPECS, EntitySpec
from stash_pipeline.progress import ProgressTracker
from stash_pipeline.resources import StashResource, mirror_connection
from stash_pipeline.settings import Settings

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


def build_entity_asset(
    spec: EntitySpec, partitions: dg.TimeWindowPartitionsDefinition, settings: Settings
) -> dg.AssetsDefinition:
    upstream = sorted(
        spec.referenced_types,
        key=lambda name: next(s.order for s in ENTITY_SPECS if s.name == name),
    )
    deps = [dg.AssetKey(name) for name in upstream if name != spec.name and _order(name) < spec.order]

    @dg.asset(
        name=spec.name,
        group_name=STASH_GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        deps=deps,
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
    def entity_asset(
        context: dg.AssetExecutionContext,
        config: SyncConfig,
        stash: StashResource,
        mirror: DuckDBResource,
    ) -> dg.MaterializeResult:
        request = _request(context, spec, config, partitions)
        context.log.info(f"{spec.name}: {request.mode} sync, window {request.window.describe()}")

        tracker = ProgressTracker(spec.name, context.log.info)

        def progress(report: SyncReport, expected: int | None) -> None:
            tracker.update(report.fetched, expected, report.pages)

        with stash.client() as client, mirror_connection(mirror) as con:
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
            metadata = report_metadata(con, spec, report, settings.overlap_seconds)
        if report.failed:
            context.log.warning(
                f"{spec.name}: {report.failed} rows could not be stored (see sync_log, action 'failed'); "
                f"first: {report.failures[:3]}"
            )
        return dg.MaterializeResult(metadata=metadata, tags={"stash/sync_type": report.sync_type})

    return entity_asset


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
) -> SyncRequest:
    run_id = context.run.run_id if context.run else uuid.uuid4().hex
    mode = config.mode
    if mode == "specific":
        if not config.ids:
            raise dg.Failure("mode=specific needs ids")
        return SyncRequest(spec.name, "specific", run_id, ids=list(config.ids))
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


def build_entity_assets(settings: Settings | None = None) -> list[dg.AssetsDefinition]:
    settings = settings or Settings.from_env()
    partitions = monthly_partitions(settings.partition_start)
    assets = [build_entity_asset(spec, partitions, settings) for spec in ENTITY_SPECS]
    return list(dg.with_source_code_references(assets))
