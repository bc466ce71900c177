"""Schema evolution: an existing mirror is brought to the current schema in place, on open.

Additive changes need no code: the expected catalog is the DDL of ``mirror.schema`` (generated from
the model), and a table or column the mirror lacks is created.  A column added to an entity table,
or a link table added to a type, is then filled by that type's next sync, which re-reads every row
(``sync_state.refill_columns``), never left silently NULL.  What cannot be applied in place (a type
change, a rename, a drop) is an explicit ``Migration`` with a number; the mirror records the number
it was last brought to (``mirror_schema``), and refuses a mirror written by a newer version.
``sync_runs``, ``sync_log`` and ``sync_state`` are only ever added to.
"""

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import metadata

import duckdb

from stash_pipeline.mirror.db import table_exists
from stash_pipeline.mirror.schema import (
    LINK_TABLES,
    MIRRORED_SPECS,
    OPERATIONAL_DDL,
    entity_ddl,
    link_ddl,
    owning_specs,
)
from stash_pipeline.mirror.state import read_state, update_state

log = logging.getLogger("stash_pipeline.schema")

SCHEMA_VERSION = 2
OPERATIONAL_TABLES = (
    "sync_runs",
    "sync_log",
    "sync_state",
    "mirror_changes",
    "derived_builds",
    "mirror_schema",
)


class MirrorSchemaError(RuntimeError):
    """The mirror cannot be brought to this version's schema in place; nothing was changed."""


@dataclass(frozen=True)
class Migration:
    """A numbered change that additive evolution cannot make (run once, before it)."""

    version: int
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


def _drop_sync_log_index(con: duckdb.DuckDBPyConnection) -> None:
    # An entity's history is a filtered scan of the column store (milliseconds at millions of rows);
    # the ART index early mirrors had grew with the log, in memory, and slowed every insert.
    con.execute("DROP INDEX IF EXISTS sync_log_entity")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "drop the index on sync_log (sync_log_entity)", _drop_sync_log_index),
)


@dataclass(frozen=True)
class ExpectedColumn:
    name: str
    sql_type: str
    default: str | None


@dataclass(frozen=True)
class ExpectedTable:
    name: str
    ddl: str
    columns: tuple[ExpectedColumn, ...]


@dataclass(frozen=True)
class Catalog:
    tables: tuple[ExpectedTable, ...]
    fingerprint: str


@dataclass
class SchemaChanges:
    """What opening the mirror changed (empty when it was current)."""

    from_version: int | None = None
    created_tables: list[str] = field(default_factory=list)
    added_columns: dict[str, list[str]] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)
    refills: dict[str, list[str]] = field(default_factory=dict)  # entity type → columns / link tables

    @property
    def changed(self) -> bool:
        return bool(self.created_tables or self.added_columns or self.migrations)


def _ddl() -> list[tuple[str, str]]:
    tables = [(spec.name, entity_ddl(spec)) for spec in MIRRORED_SPECS]
    tables += [(name, link_ddl(table)) for name, table in LINK_TABLES.items()]
    tables += list(zip(OPERATIONAL_TABLES, OPERATIONAL_DDL, strict=True))
    return tables


_COLUMNS_SQL = (
    "SELECT table_name, column_name, data_type, column_default FROM information_schema.columns "
    "WHERE table_catalog = current_database() AND table_schema = 'main' ORDER BY table_name, ordinal_position"
)


@cache
def expected_catalog() -> Catalog:
    """Every table as this version creates it, read back from DuckDB itself (so that types and
    defaults compare as DuckDB spells them)."""
    tables = _ddl()
    with duckdb.connect(":memory:") as mem:
        for _name, ddl in tables:
            mem.execute(ddl)
        rows = mem.execute(_COLUMNS_SQL).fetchall()
    columns: dict[str, list[ExpectedColumn]] = {}
    for table, column, sql_type, default in rows:
        columns.setdefault(table, []).append(ExpectedColumn(column, sql_type, default))
    expected = tuple(ExpectedTable(name, ddl, tuple(columns[name])) for name, ddl in tables)
    digest = hashlib.sha256(repr([(t.name, t.columns) for t in expected]).encode()).hexdigest()[:16]
    return Catalog(expected, digest)


@cache
def layout_digest() -> str:
    """A digest of the tables this version writes (its schema version and every table's DDL),
    cheap enough for a sensor tick: a sync records it, and a different one means an upgrade the
    mirror has not been brought to yet."""
    return hashlib.sha256(repr((SCHEMA_VERSION, _ddl())).encode()).hexdigest()[:16]


def recorded_schema(con: duckdb.DuckDBPyConnection) -> tuple[int, str] | None:
    if not table_exists(con, "mirror_schema"):
        return None
    row = con.execute(
        "SELECT version, fingerprint FROM mirror_schema ORDER BY upgraded_at DESC LIMIT 1"
    ).fetchall()
    return (row[0][0], row[0][1]) if row else None


def evolve(con: duckdb.DuckDBPyConnection) -> SchemaChanges:
    """Create, migrate and extend the mirror's tables as needed; one small catalog read when the
    mirror is current (every sync of every type opens it)."""
    catalog = expected_catalog()
    recorded = recorded_schema(con)
    if recorded == (SCHEMA_VERSION, catalog.fingerprint):
        return SchemaChanges()
    existing: dict[str, dict[str, str]] = {}
    for table, column, sql_type, _default in con.execute(_COLUMNS_SQL).fetchall():
        existing.setdefault(table, {})[column] = sql_type
    fresh = not existing
    version = recorded[0] if recorded else (SCHEMA_VERSION if fresh else 1)
    if version > SCHEMA_VERSION:
        raise MirrorSchemaError(
            f"the mirror was written by a newer stash-pipeline (mirror schema {version}; this version "
            f"knows up to {SCHEMA_VERSION}): upgrade stash-pipeline, or sync into a new mirror file"
        )
    changes = SchemaChanges(from_version=None if fresh else version)
    con.execute("BEGIN TRANSACTION")
    try:
        for migration in MIGRATIONS:
            if version < migration.version:
                migration.apply(con)
                changes.migrations.append(f"{migration.version}: {migration.description}")
        for table in catalog.tables:
            _evolve_table(con, table, existing.get(table.name), changes, fresh)
        _record_refills(con, changes)
        # Another version had the mirror (an upgrade, or a run of an older release in between,
        # which writes without moving ``mirror_changes``): no derived table counts as current.
        con.execute("DELETE FROM derived_builds")
        con.execute("DELETE FROM mirror_schema")
        con.execute(
            "INSERT INTO mirror_schema VALUES (?, ?, ?, ?)",
            [SCHEMA_VERSION, catalog.fingerprint, datetime.now(UTC), _our_version()],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if changes.changed and not fresh:
        log.info("mirror upgraded from schema %s to %s: %s", version, SCHEMA_VERSION, describe(changes))
    return changes


def _evolve_table(
    con: duckdb.DuckDBPyConnection,
    table: ExpectedTable,
    present: dict[str, str] | None,
    changes: SchemaChanges,
    fresh: bool,
) -> None:
    if present is None:
        con.execute(table.ddl)
        if fresh:
            return
        changes.created_tables.append(table.name)
        if table.name in LINK_TABLES:  # an existing type gained a link table: its owners fill it
            for spec in owning_specs(table.name):
                changes.refills.setdefault(spec.name, []).append(table.name)
        return
    for column in table.columns:
        found = present.get(column.name)
        if found is None:
            default = f" DEFAULT {column.default}" if column.default is not None else ""
            con.execute(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {column.sql_type}{default}')
            changes.added_columns.setdefault(table.name, []).append(column.name)
            if table.name not in OPERATIONAL_TABLES:
                for spec in owning_specs(table.name):
                    label = column.name if spec.name == table.name else f"{table.name}.{column.name}"
                    changes.refills.setdefault(spec.name, []).append(label)
        elif found != column.sql_type:
            raise MirrorSchemaError(
                f"mirror column {table.name}.{column.name} is {found}, but this version stores "
                f"{column.sql_type} there and has no migration that converts it; nothing was changed"
            )


def _record_refills(con: duckdb.DuckDBPyConnection, changes: SchemaChanges) -> None:
    for entity_type, added in changes.refills.items():
        pending = read_state(con, entity_type).refill_columns or []
        update_state(con, entity_type, refill_columns=list(dict.fromkeys([*pending, *added])))


def refill_message(entity_type: str, columns: list[str]) -> str:
    """``scenes: 1 new column (code), re-read all rows to fill it``."""
    links = [c for c in columns if c in LINK_TABLES]
    plain = [c for c in columns if c not in LINK_TABLES]
    parts = []
    if plain:
        parts.append(f"{len(plain)} new column{'s' if len(plain) > 1 else ''} ({', '.join(plain)})")
    if links:
        parts.append(f"{len(links)} new link table{'s' if len(links) > 1 else ''} ({', '.join(links)})")
    them = "it" if len(columns) == 1 else "them"
    return f"{entity_type}: {' and '.join(parts)}, re-read all rows to fill {them}"


def describe(changes: SchemaChanges) -> str:
    parts = [f"migration {m}" for m in changes.migrations]
    parts += [f"new table {t}" for t in changes.created_tables]
    parts += [f"new column {t}.{c}" for t, cols in changes.added_columns.items() for c in cols]
    return "; ".join(parts) or "no change"


def _our_version() -> str:
    try:
        return metadata.version("stash-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"
