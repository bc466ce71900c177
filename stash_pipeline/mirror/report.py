"""What one entity's sync did: the counts, cursors and checks a run reports.

Its own module, free of Polars and DuckDB, because the CLI's no-change check reads the last
reports back (``assets.metadata``) without ever running a sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from stash_pipeline.mirror.evolution import refill_message

if TYPE_CHECKING:
    from stash_pipeline.mirror.merge import PageOutcome


@dataclass
class SyncReport:
    entity_type: str
    sync_type: str
    run_id: str
    window: str = ""
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    repaired: int = 0
    duplicates: int = 0
    pages: int = 0
    seconds: float = 0.0
    cursor_before: str | None = None
    cursor_after: str | None = None
    stash_count: int | None = None
    local_count: int | None = None
    skipped: bool = False
    status: str = "success"
    error: str | None = None
    failures: list[tuple[int | None, str]] = field(default_factory=list)
    changed_fields: dict[str, int] = field(default_factory=dict)
    stash_version: str | None = None
    # Columns this server does not offer (stored NULL), or reads from an older field.
    not_offered: list[str] = field(default_factory=list)
    # Columns an upgrade added, filled by this (full) run: "scenes: 1 new column (code), ...".
    filled_columns: list[str] = field(default_factory=list)
    # The server's clock when the run began (HTTP Date): the next stamp check starts there.
    server_time: datetime | None = None
    # The stamp check of an incremental run: rows listed above its bound, and changed among them.
    stamps_listed: int | None = None
    stamps_changed: int | None = None
    # Stash's activity totals when the run began, and rows whose activity changed (no bump).
    activity_totals: dict[str, float] | None = None
    activity_changed: int | None = None
    links_changed: int | None = None  # rows whose unbumped links changed
    # Files changed without a bump of their owner (renames, rescans), found and written by the
    # file check; None where the server cannot list them (before v0.29.3).
    files_changed: int | None = None
    lists_files: bool = False  # the server has findFiles: the sensor can compare file stamps
    embedded_written: dict[str, int] = field(default_factory=dict)  # files created/updated

    @property
    def schema_note(self) -> str | None:
        return refill_message(self.entity_type, self.filled_columns) if self.filled_columns else None

    @property
    def rows_per_second(self) -> float:
        return round(self.fetched / self.seconds, 1) if self.seconds > 0 else 0.0

    def add(self, outcome: PageOutcome) -> None:
        for name, rows in outcome.embedded.items():
            self.embedded_written[name] = self.embedded_written.get(name, 0) + rows
        self.created += len(outcome.created)
        self.updated += len(outcome.updated)
        self.unchanged += outcome.unchanged
        self.failed += len(outcome.failed)
        self.failures.extend(outcome.failed[: max(0, 50 - len(self.failures))])
        for name, owners in outcome.changed_relations.items():
            self.changed_fields[name] = self.changed_fields.get(name, 0) + len(owners)
