"""Jobs: the targeted resync of given ids (``stash-pipeline sync-ids`` does the same from the CLI)."""

import uuid

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from stash_pipeline.assets.entities import WRITER_POOL
from stash_pipeline.assets.metadata import SyncMetadata, report_metadata
from stash_pipeline.assets.partitions import partitioning_of
from stash_pipeline.mirror.sync import EntitySync, SyncOptions, SyncRequest
from stash_pipeline.model import spec_for
from stash_pipeline.resources import StashResource, mirror_connection
from stash_pipeline.settings import Settings


class ResyncIdsConfig(dg.Config):
    entity_type: str = Field(description="scenes, images, galleries, performers, studios, tags or groups")
    ids: list[int] = Field(description="Stash ids to re-read; ids Stash no longer has are deleted locally.")


def build_resync_ids_job(
    partitions: dg.TimeWindowPartitionsDefinition, settings: Settings
) -> dg.JobDefinition:
    @dg.op(
        name="resync_ids_op",
        pool=WRITER_POOL,
        description="Re-read the given ids from Stash into the mirror.",
    )
    def resync_ids_op(
        context: dg.OpExecutionContext, config: ResyncIdsConfig, stash: StashResource, mirror: DuckDBResource
    ) -> None:
        try:
            spec = spec_for(config.entity_type)
        except KeyError as exc:
            raise dg.Failure(str(exc.args[0])) from None
        if not config.ids:
            raise dg.Failure("ids is empty: give at least one id")
        run_id = context.run_id or uuid.uuid4().hex
        options = SyncOptions(page_size=settings.page_size, overlap_seconds=settings.overlap_seconds)
        with stash.client() as client, mirror_connection(mirror, context.log.warning) as con:
            report = EntitySync(spec, client, con, options).run(
                SyncRequest(spec.name, "specific", run_id, ids=list(config.ids))
            )
            # Materializes no partition of its own: it keeps the scheme the last sync recorded.
            last = SyncMetadata.latest(context.instance, spec.name)
            scheme = last.partitioning if last else partitioning_of(partitions)
            metadata = report_metadata(con, spec, report, settings.overlap_seconds, scheme)
        # Recorded as a materialization of the entity asset (latest partition), so lineage and the
        # derived assets' automation see the change like any other sync.
        context.log_event(
            dg.AssetMaterialization(
                asset_key=dg.AssetKey(spec.name),
                partition=partitions.get_last_partition_key(),
                metadata=metadata,
                tags={"stash/sync_type": "specific"},
            )
        )

    @dg.job(name="resync_ids", description="Targeted resync: re-read given ids of one entity type.")
    def resync_ids_job() -> None:
        resync_ids_op()

    return resync_ids_job
