"""Run real Dagster materializations of the entity assets against a fake Stash and a DuckDB file."""

from collections.abc import Sequence
from datetime import date

import dagster as dg
import duckdb

from stash_pipeline.assets.entities import ENTITY_OP, build_entity_assets
from stash_pipeline.assets.partitions import entity_partitions
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline.resources import StashResource
from stash_pipeline.resources.stash_resource import MirrorResource
from stash_pipeline.settings import Settings

# Tests start the (yearly) partitions two years back: three partitions, older rows fall into the
# first one (open below), and each run records few per-partition events.
PARTITION_START = date(date.today().year - 2, 1, 1)
TEST_SETTINGS = Settings(partition_start=PARTITION_START, page_size=100)


def all_partition_tags() -> dict[str, str]:
    keys = entity_partitions(PARTITION_START).get_partition_keys()
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
    retries: int | None = 2,
    retry_seconds: float = 60.0,
    lock_wait_seconds: float = 60.0,
) -> dg.ExecuteInProcessResult:
    """Materialize the entity assets (all or ``types``) in one run; a full sync by default."""
    assets = build_entity_assets(TEST_SETTINGS)
    names = [s.name for s in ENTITY_SPECS if types is None or s.name in types]
    config = {"mode": mode, "allow_mass_delete": allow_mass_delete}
    if since:
        config["since"] = since
    if ids:
        config["ids"] = list(ids)
    run_config = {"ops": {ENTITY_OP: {"config": config}}}
    return dg.materialize(
        assets,
        selection=[dg.AssetKey(n) for n in names],
        instance=instance,
        resources={
            "stash": StashResource(
                url=url, api_key=api_key, retries=retries, retry_seconds=retry_seconds, timeout=10
            ),
            "mirror": MirrorResource(database=db_path, lock_wait_seconds=lock_wait_seconds),
        },
        run_config=run_config,
        tags=tags if tags is not None else all_partition_tags(),
        raise_on_error=raise_on_error,
    )


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = [e for e in result.asset_materializations_for_node(ENTITY_OP) if e.asset_key.path[-1] == asset]
    assert events, f"no materialization for {asset}"
    return {k: getattr(v, "value", v) for k, v in events[-1].metadata.items()}


def open_db(db_path: str) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(db_path, read_only=True)


ENTITY_NAMES = [s.name for s in ENTITY_SPECS]
