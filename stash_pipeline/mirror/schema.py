"""The mirror's DuckDB schema, generated from the entity model (docs/architecture.md, "The mirror's
tables", is the contract).

Entity tables have ``id BIGINT PRIMARY KEY``; link tables have no key constraint (DuckDB's
constraint checks make delete-then-insert of the same key in one transaction fragile), so their
uniqueness is kept by the merge code and verified by the asset checks.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from stash_pipeline.model import EMBEDDED_SPECS, ENTITY_SPECS, EntitySpec, Relation

MIRRORED_SPECS: tuple[EntitySpec, ...] = (*ENTITY_SPECS, *EMBEDDED_SPECS)
"""Every type with a table of its own: the synced types and those read inside them (files)."""


@dataclass(frozen=True)
class TableColumn:
    name: str
    sql_type: str
    compared: bool = True  # part of change detection


def entity_columns(spec: EntitySpec) -> list[TableColumn]:
    """Columns of an entity table, in order."""
    cols = [TableColumn("id", "BIGINT")]
    for column in spec.columns:
        cols += [TableColumn(name, sql_type) for name, sql_type in column.mirror_columns()]
    cols += [TableColumn(ref.column, "BIGINT") for ref in spec.refs]
    cols += [
        TableColumn("created_at", "TIMESTAMPTZ"),
        TableColumn("updated_at", "TIMESTAMPTZ"),
        # Verbatim server string: the incremental cursor is built from it, never re-formatted.
        TableColumn("updated_at_text", "VARCHAR", compared=False),  # follows updated_at
        TableColumn("synced_at", "TIMESTAMPTZ", compared=False),
    ]
    return cols


@dataclass(frozen=True)
class LinkTable:
    name: str
    columns: tuple[TableColumn, ...]


def link_tables() -> dict[str, LinkTable]:
    """Every link table, keyed by name, with columns taken from its owning (non-reverse) relation."""
    tables: dict[str, LinkTable] = {}
    for spec in ENTITY_SPECS:
        for rel in spec.relations:
            if rel.reverse:
                continue
            target_sql = "BIGINT" if rel.target_kind is None else rel.target_kind.sql
            cols = [TableColumn(rel.owner_column, "BIGINT"), TableColumn(rel.target_column, target_sql)]
            cols += [TableColumn(extra.column, extra.kind.sql) for extra in rel.extra]
            if rel.primary_column:
                cols.append(TableColumn(rel.primary_column, "BOOLEAN"))
            tables[rel.table] = LinkTable(rel.table, tuple(cols))
    return tables


LINK_TABLES = link_tables()


def link_columns(rel: Relation) -> list[str]:
    return [c.name for c in LINK_TABLES[rel.table].columns]


OPERATIONAL_DDL = [
    """CREATE TABLE IF NOT EXISTS sync_runs (
        run_id VARCHAR NOT NULL,
        entity_type VARCHAR NOT NULL,
        sync_type VARCHAR NOT NULL,          -- full | incremental | window | specific
        status VARCHAR NOT NULL,             -- running | success | partial | failed | cancelled | skipped | interrupted
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        window_start VARCHAR,
        window_end VARCHAR,
        fetched BIGINT DEFAULT 0,
        created BIGINT DEFAULT 0,
        updated BIGINT DEFAULT 0,
        unchanged BIGINT DEFAULT 0,
        deleted BIGINT DEFAULT 0,
        failed BIGINT DEFAULT 0,
        repaired BIGINT DEFAULT 0,
        pages BIGINT DEFAULT 0,
        stash_count BIGINT,
        local_count BIGINT,
        cursor_before VARCHAR,
        cursor_after VARCHAR,
        error VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS sync_log (
        run_id VARCHAR NOT NULL,
        entity_type VARCHAR NOT NULL,
        entity_id BIGINT NOT NULL,
        action VARCHAR NOT NULL,             -- created | updated | deleted | failed
        sync_type VARCHAR NOT NULL,
        changed_fields VARCHAR[],
        error VARCHAR,
        updated_at_text VARCHAR,
        logged_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sync_state (
        entity_type VARCHAR PRIMARY KEY,
        cursor VARCHAR,                      -- largest updated_at string received, verbatim
        last_full_sync_at TIMESTAMPTZ,
        last_incremental_sync_at TIMESTAMPTZ,
        last_run_id VARCHAR,
        last_status VARCHAR,
        last_error VARCHAR,
        local_count BIGINT,
        stash_count BIGINT,
        -- Resume position of an interrupted run: its run kind/window and the last committed id.
        resume_key VARCHAR,
        resume_after_id BIGINT,
        resume_cursor VARCHAR,
        -- Columns added to this type's table by an upgrade: its next sync re-reads every row.
        refill_columns VARCHAR[],
        -- What the server of the last run was, and the columns it did not offer (stored NULL).
        stash_version VARCHAR,
        not_offered VARCHAR[],
        -- The server's clock (HTTP Date) when the last complete full or incremental read began:
        -- the next incremental run's stamp check starts there (docs/architecture.md §6).
        server_time TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS mirror_changes (
        entity_type VARCHAR PRIMARY KEY,
        version BIGINT NOT NULL,             -- of the last write that changed this type's rows
        changed_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS derived_builds (
        table_name VARCHAR PRIMARY KEY,
        mirror_version BIGINT NOT NULL,      -- max(mirror_changes.version) of the types it reads
        definition VARCHAR NOT NULL,         -- digest of its SQL, those types and the schema
        built_at TIMESTAMPTZ NOT NULL,
        row_count BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS mirror_schema (
        version INTEGER NOT NULL,            -- SCHEMA_VERSION of the code that last upgraded it
        fingerprint VARCHAR NOT NULL,        -- of every table's columns, to skip the catalog check
        upgraded_at TIMESTAMPTZ NOT NULL,
        upgraded_by VARCHAR                  -- stash-pipeline version
    )""",
]


def entity_ddl(spec: EntitySpec) -> str:
    cols = ",\n  ".join(
        f"{c.name} {c.sql_type}{' PRIMARY KEY' if c.name == 'id' else ''}" for c in entity_columns(spec)
    )
    return f"CREATE TABLE IF NOT EXISTS {spec.name} (\n  {cols}\n)"


def link_ddl(table: LinkTable) -> str:
    cols = ", ".join(
        f"{c.name} {c.sql_type} NOT NULL" if i < 2 else f"{c.name} {c.sql_type}"
        for i, c in enumerate(table.columns)
    )
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({cols})"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> "SchemaChanges":
    """Bring the mirror to the current schema in place (``mirror.evolution``)."""
    from stash_pipeline.mirror.evolution import evolve  # it builds on this module's DDL

    return evolve(con)


def owning_specs(table: str) -> list[EntitySpec]:
    """The entity types whose fetch writes ``table`` (the table itself, or a link table they own)."""
    return [
        spec
        for spec in ENTITY_SPECS
        if spec.name == table
        or any(
            (rel.table == table and not rel.reverse)
            or (rel.embedded is not None and rel.embedded.name == table)
            for rel in spec.relations
        )
    ]


if TYPE_CHECKING:
    from stash_pipeline.mirror.evolution import SchemaChanges
