"""The Dagster code location: assets, checks, jobs, sensors, schedules and resources."""

import dagster as dg

from stash_pipeline.assets.entities import build_entity_assets
from stash_pipeline.resources import StashResource, mirror_database_resource
from stash_pipeline.settings import Settings, load_env_file


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    entity_assets = build_entity_assets(settings)
    return dg.Definitions(
        assets=[*entity_assets],
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
