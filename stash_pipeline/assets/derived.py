"""Derived assets (group ``derived``): SQL inside DuckDB over the mirror tables.

They declare their real upstream entity assets, so lineage shows them and the automation
condition recomputes them after ANY upstream materialization, however it was launched (UI, sensor,
schedule, CLI, targeted resync).  ``eager()`` would wait forever while any upstream month
partition is missing, so that clause is dropped (DAGSTER_NOTES.md §0 item 9).
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from stash_pipeline.assets.entities import WRITER_POOL
from stash_pipeline.assets.metadata import table_schema
from stash_pipeline.mirror.derived import DERIVED_DEPENDENCIES, DERIVED_TABLES, DerivedTable, rebuild
from stash_pipeline.mirror.schema import ensure_schema

DERIVED_GROUP = "derived"

DERIVED_AUTOMATION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def build_derived_asset(table: DerivedTable) -> dg.AssetsDefinition:
    deps = [dg.AssetKey(name) for name in table.inputs]
    deps += [dg.AssetKey(name) for name in DERIVED_DEPENDENCIES.get(table.name, ())]

    @dg.asset(
        name=table.name,
        group_name=DERIVED_GROUP,
        deps=deps,
        pool=WRITER_POOL,
        automation_condition=DERIVED_AUTOMATION,
        kinds={"duckdb", "sql"},
        owners=["team:stash-pipeline"],
        tags={"layer": "derived"},
        description=table.description,
        metadata={"dagster/table_name": f"stash.main.{table.name}"},
    )
    def derived_asset(context: dg.AssetExecutionContext, mirror: DuckDBResource) -> dg.MaterializeResult:
        with mirror.get_connection() as con:
            ensure_schema(con)
            rows = rebuild(con, table)
            schema = table_schema(con, table.name)
        context.log.info(f"{table.name}: {rows} rows")
        return dg.MaterializeResult(
            metadata={"dagster/row_count": dg.MetadataValue.int(rows), "dagster/column_schema": schema}
        )

    return derived_asset


def build_derived_assets() -> list[dg.AssetsDefinition]:
    return list(dg.with_source_code_references([build_derived_asset(table) for table in DERIVED_TABLES]))
