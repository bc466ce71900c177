"""Run real Dagster materializations of the entity assets against a fake Stash and a DuckDB file."""

from collections.abc import Sequence
from datetime import date, timedelta

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from stash_pipeline.assets.entities import build_entity_assets
from stash_pipeline.assets.partitions import monthly_partitions
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline.resources import StashResource
from stash_pipeline.settings import Settings

# Tests start the partitions a few months back: older rows fall into the first partition (open
# below), and each run records fewer per-partition events.
PARTITION_START = (date.today().replace(day=1) - timedelta(days=95)).replace(day=1)
TEST_SETTINGS = Settings(partition_start=PARTITION_START, page_size=100)


def all_partition_tags() -> dict[str, str]:
    keys = monthly_partitions(PARTITION_START).get_partition_keys()
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def run_sync(
    *,
    url: str,
    db_path: str,
    instance: dg.DagsterInstance,
    mode: str = "auto",
    types: Sequence[str] | None = None,
    since: str | None = None,
    ids: Sequence[int] = (),
    tags: dict[str, str] | None = None,
    api_key: str | None = None,
    allow_mass_delete: bool = False,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize the entity assets (all or ``types``) in one run; a full sync by default."""
    assets = build_entity_assets(TEST_SETTINGS)
    selected = [a for a in assets if types is None or a.key.path[-1] in types]
    config = {"mode": mode, "allow_mass_delete": allow_mass_delete}
    if since:
        config["since"] = since
    if ids:
        config["ids"] = list(ids)
    run_config = {"ops": {a.key.path[-1]: {"config": config} for a in selected}}
    return dg.materialize(
        selected,
        instance=instance,
        resources={
            "stash": StashResource(url=url, api_key=api_key, retries=2, timeout=10),
            "mirror": DuckDBResource(database=db_path),
        },
        run_config=run_config,
        tags=tags if tags is not None else all_partition_tags(),
        raise_on_error=raise_on_error,
    )


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = result.asset_materializations_for_node(asset)
    assert events, f"no materialization for {asset}"
    return {k: getattr(v, "value", v) for k, v in events[-1].metadata.items()}


def open_db(db_path: str) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(db_path, read_only=True)


ENTITY_NAMES = [s.name for s in ENTITY_SPECS]
