"""The mirror's DuckDB schema, generated from the entity specs (DESIGN.md §3 is the contract).

Entity tables have ``id BIGINT PRIMARY KEY``; link tables have no key constraint (DuckDB's
constraint checks make delete-then-insert of the same key in one transaction fragile), so their
uniqueness is kept by the merge code and verified by the asset checks.
"""

from dataclasses import dataclass

import duckdb

from stash_pipeline.model import ENTITY_SPECS, EntitySpec, Relation


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
            cols = [TableColumn(rel.owner_column, "BIGINT"), TableColumn(rel.target_column, "BIGINT")]
            cols += [TableColumn(extra.column, extra.kind.sql) for extra in rel.extra]
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
        resume_cursor VARCHAR
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


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every mirror and operational table that does not exist yet (idempotent).

    One catalog query when everything is there already (every sync of every type calls this)."""
    names = [spec.name for spec in ENTITY_SPECS] + list(LINK_TABLES) + ["sync_runs", "sync_log", "sync_state"]
    present = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name IN "
        "(SELECT unnest($names))",
        {"names": names},
    ).fetchall()[0][0]
    legacy_index = con.execute(
        "SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'sync_log_entity'"
    ).fetchall()[0][0]
    if present == len(names) and not legacy_index:
        return
    for spec in ENTITY_SPECS:
        con.execute(entity_ddl(spec))
    for table in LINK_TABLES.values():
        con.execute(link_ddl(table))
    for ddl in OPERATIONAL_DDL:
        con.execute(ddl)
    # No index on sync_log: an entity's history is a filtered scan of the column store (milliseconds
    # at millions of rows), while an ART index grew with the log, in memory, and slowed every insert.
    con.execute("DROP INDEX IF EXISTS sync_log_entity")
