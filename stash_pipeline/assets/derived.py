"""Derived assets (group ``derived``): SQL inside DuckDB over the mirror tables.

They declare their real upstream entity assets, so lineage shows them and the automation
condition recomputes them after ANY upstream materialization, however it was launched (UI, sensor,
schedule, CLI, targeted resync); see ``_derived_automation`` for why it is not ``eager()``.
"""

from collections.abc import Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from stash_pipeline.assets.entities import WRITER_POOL
from stash_pipeline.assets.metadata import table_schema
from stash_pipeline.mirror.derived import DERIVED_DEPENDENCIES, DERIVED_TABLES, DerivedTable, refresh
from stash_pipeline.mirror.schema import ensure_schema
from stash_pipeline.resources import mirror_connection

DERIVED_GROUP = "derived"


def _derived_automation() -> dg.AutomationCondition:
    """Recompute when an input was materialized after this table was last materialized AND after
    it was last requested; never while an input or the table itself is being written.

    Not ``eager()``: (1) its ``~any_deps_missing()`` clause waits forever while any upstream month
    partition is missing (measured with dagster 1.13: `eager()` never fires on an unpartitioned asset while some upstream partition was never materialized); (2) in dagster 1.13 its trigger and reset
    are OR/AND compositions, which drop the timestamps ``since`` uses to order two events seen in
    the same tick, so an input materialized after a derived run finished but before the next tick
    (another sync's run, queued behind it on the writer pool) was swallowed: the table stayed stale
    until the next upstream change.  Here both ``since`` operands are single timed conditions:
    ``newly_updated`` of an input vs of the table itself (a CLI run that wrote the inputs and then
    the table resets it: the table is later), and vs ``newly_requested`` (a failed run is not
    retried every tick, only after the next input change).  A table whose input (another derived
    table) will be requested in the same tick is requested with it, so one run recomputes both;
    one whose derived input was never materialized waits for it (its SQL reads that table).
    """
    ac = dg.AutomationCondition
    input_updated = ac.any_deps_match(ac.newly_updated())
    stale = input_updated.since(ac.newly_updated()) & input_updated.since(ac.newly_requested())
    # Entity tables exist (empty) before their first sync, derived ones only once materialized:
    # wait for a derived input that is missing and not requested in this same tick.
    derived_input_missing = ac.any_deps_match(ac.missing() & ~ac.will_be_requested()).allow(
        dg.AssetSelection.groups(DERIVED_GROUP)
    )
    return (
        (stale | ac.any_deps_match(ac.will_be_requested()))
        & ~derived_input_missing
        & ~ac.any_deps_in_progress()
        & ~ac.in_progress()
    ).with_label("an input was updated after this table")


DERIVED_AUTOMATION = _derived_automation()


DERIVED_OP = "derived_tables"


def derived_spec(table: DerivedTable) -> dg.AssetSpec:
    deps = [dg.AssetKey(name) for name in table.inputs]
    deps += [dg.AssetKey(name) for name in DERIVED_DEPENDENCIES.get(table.name, ())]
    return dg.AssetSpec(
        key=table.name,
        group_name=DERIVED_GROUP,
        deps=deps,
        automation_condition=DERIVED_AUTOMATION,
        kinds={"duckdb", "sql"},
        owners=["team:stash-pipeline"],
        tags={"layer": "derived"},
        description=table.description,
        metadata={"dagster/table_name": f"stash.main.{table.name}"},
    )


class DerivedConfig(dg.Config):
    """By default a table already computed from its inputs as they are is left alone."""

    rebuild: bool = Field(
        default=False,
        description="Rebuild every selected table even if none of its inputs changed since its "
        "last build (after a table was edited or damaged by hand).",
    )


def build_derived_assets() -> list[dg.AssetsDefinition]:
    """Every derived table, one asset each, computed by ONE subsettable step (in the order of
    ``DERIVED_TABLES``, which puts a table after the derived tables it reads): the automation
    sensor and the CLI ask for the tables they need, and one step costs Dagster one set-up."""

    @dg.multi_asset(
        name=DERIVED_OP,
        specs=[derived_spec(table) for table in DERIVED_TABLES],
        can_subset=True,
        pool=WRITER_POOL,
        description="Recomputes the selected derived tables inside DuckDB.",
    )
    def derived_tables(
        context: dg.AssetExecutionContext, config: DerivedConfig, mirror: DuckDBResource
    ) -> Iterator[dg.MaterializeResult]:
        selected = {key.path[-1] for key in context.selected_asset_keys}
        built: list[str] = []
        current: list[str] = []
        with mirror_connection(mirror, context.log.warning) as con:
            ensure_schema(con)
            for table in DERIVED_TABLES:
                if table.name not in selected:
                    continue
                build = refresh(con, table, force=config.rebuild)
                (built if build.rebuilt else current).append(f"{table.name} {build.rows:,}")
                yield dg.MaterializeResult(
                    asset_key=table.name,
                    metadata={
                        "dagster/row_count": dg.MetadataValue.int(build.rows),
                        "dagster/column_schema": table_schema(con, table.name),
                        "rebuilt": build.rebuilt,
                        "mirror_version": build.mirror_version,
                        "built_at": dg.MetadataValue.timestamp(build.built_at),
                    },
                )
        if built:
            context.log.info(f"rebuilt (rows): {', '.join(built)}")
        if current:
            context.log.info(
                f"already computed from their inputs as they are (no change since their build; rows): "
                f"{', '.join(current)}"
            )

    return list(dg.with_source_code_references([derived_tables]))
