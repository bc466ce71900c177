"""The Dagster code location: assets, checks, jobs, sensors, schedules and resources."""

import atexit
import gc
import warnings

import dagster as dg

from stash_pipeline.assets.checks import build_asset_checks, build_checks_job
from stash_pipeline.assets.derived import DERIVED_GROUP, build_derived_assets
from stash_pipeline.assets.entities import STASH_GROUP, build_entity_assets
from stash_pipeline.assets.partitions import entity_partitions
from stash_pipeline.automation.jobs import build_resync_ids_job
from stash_pipeline.automation.schedules import build_schedules
from stash_pipeline.automation.sensors import build_smart_sync_sensor
from stash_pipeline.resources import StashResource, mirror_database_resource
from stash_pipeline.settings import Settings, load_env_file

# BackfillPolicy is beta in dagster 1.13; the single-run backfill is exactly what we rely on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    partitions = entity_partitions(settings.partition_start, settings.partition_by)
    entity_assets = build_entity_assets(settings)
    sync_job = dg.define_asset_job(
        "stash_sync",
        selection=dg.AssetSelection.groups(STASH_GROUP),
        description="Sync entity assets from Stash (mode and types set by the sensor or schedule).",
    )
    derived_assets = build_derived_assets()
    automation = dg.AutomationConditionSensorDefinition(
        "derived_automation",
        target=dg.AssetSelection.groups(DERIVED_GROUP),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Recomputes the derived tables after any upstream materialization.",
    )
    return dg.Definitions(
        assets=[*entity_assets, *derived_assets],
        asset_checks=build_asset_checks(),
        jobs=[sync_job, build_resync_ids_job(partitions, settings), build_checks_job()],
        sensors=[
            automation,
            build_smart_sync_sensor(
                sync_job, partitions, settings.sensor_interval_seconds, settings.sensor_stamp_rows
            ),
        ],
        schedules=build_schedules(sync_job, partitions, settings),
        resources={
            "stash": StashResource.from_settings(settings),
            "mirror": mirror_database_resource(settings),
        },
        # Steps share one DuckDB file and one writer pool: running them in the run's own process
        # avoids a subprocess per step (seconds each) and changes nothing about concurrency.
        executor=dg.in_process_executor,
    )


load_env_file()
defs = build_definitions()
# A run's process (launched by the daemon, a backfill or the UI) loads these and exits after its
# run: no full collections over its heap at exit (the CLI's reason, stash_pipeline/cli.py).
atexit.register(gc.freeze)
