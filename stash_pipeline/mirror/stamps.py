"""The stamp check: which rows changed, found by comparing ``(id, updated_at)`` pairs, not text order.

Stash compares ``updated_at`` as text in the offset the server had when it wrote each row, so once
that offset moves west (a restart with another ``TZ``, a container given its zone) later edits sort
*below* the cursor for as many hours as it moved (docs/stash-behaviour.md §4).  Every row written
since an instant ``t`` still has text at or above ``windows.any_offset_bound(t)``; listing the stamps
above that bound and comparing them with the mirror's finds every change since ``t``, whatever the
offsets did (docs/architecture.md §6).

The same pairs, hashed, are the sensor's fingerprint of a type: the digest of the mirror's rows
above the bound is recorded with each sync, and a tick that lists the server's stamps above it and
gets another digest knows something changed, in one request.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from stash_pipeline.mirror.db import unregister
from stash_pipeline.model import EntitySpec, Relation


@dataclass(frozen=True)
class StampCheck:
    """What the stamp check of one type found above ``bound``."""

    bound: str
    listed: int  # rows Stash has above the bound
    changed: tuple[int, ...]  # their ids whose stamp the mirror does not have, or cannot trust
    below: tuple[int, ...]  # those of them whose text is below ``window`` (a read of it misses them)
    unsure: tuple[int, ...] = ()  # those of them with the mirror's stamp, too recent to trust

    @property
    def differing(self) -> int:
        """Rows whose stamp differs from the mirror's (the ones known to be new or edited)."""
        return len(self.changed) - len(self.unsure)


@dataclass(frozen=True)
class LinkedCheck:
    """Embedded rows (files) to read again: all of them, and those only unsure (``_CHANGED``)."""

    changed: tuple[int, ...]
    unsure: tuple[int, ...]


def stamp_digest(pairs: Iterable[tuple[int, str | None]]) -> str:
    """A fingerprint of ``(id, updated_at)`` pairs sorted by id (equal sets, equal digests): the MD5
    of ``id<TAB>updated_at`` lines, as ``mirror_digest`` computes it inside DuckDB."""
    return hashlib.md5("\n".join(f"{i}\t{t or ''}" for i, t in pairs).encode()).hexdigest()


def mirror_digest(con: duckdb.DuckDBPyConnection, spec: EntitySpec, bound: str) -> tuple[int, str]:
    """(rows, ``stamp_digest``) of the mirror's rows at or above ``bound``, computed by DuckDB (a
    million rows cost one aggregate, not a million Python tuples)."""
    rows, digest = con.execute(
        "SELECT count(*), md5(coalesce(string_agg(CAST(id AS VARCHAR) || chr(9) || "
        f"coalesce(updated_at_text, ''), chr(10) ORDER BY id), '')) FROM {spec.name} "
        "WHERE updated_at_text >= ?",
        [bound],
    ).fetchone()
    return int(rows), str(digest)


# A stamp has whole seconds.  A row read in the second it was written may be written again in that
# same second, after the read, and keep its stamp: equal stamps prove nothing for a row stamped at
# or after the second the previous run began reading (``read_since``), so such a row counts as
# changed and is read again (by id: a handful of rows, those written while that run ran).
_CHANGED = (
    "s.updated_at IS NULL OR m.updated_at_text IS DISTINCT FROM s.updated_at "
    "OR try_cast(s.updated_at AS TIMESTAMPTZ) >= $read_since"
)
_SAME = "coalesce(m.updated_at_text = s.updated_at, false)"


def compare_stamps(
    con: duckdb.DuckDBPyConnection,
    spec: EntitySpec,
    bound: str,
    stamps: pa.Table,
    window: str,
    read_since: datetime | None = None,
) -> StampCheck:
    """The rows among ``stamps`` (Stash's, above ``bound``) the mirror lacks or holds another
    stamp of; a NULL stamp (unknown) counts as changed, and so does one at or after ``read_since``
    (the previous run's start: see ``_CHANGED``)."""
    con.register("server_stamps", stamps)
    try:
        rows = con.execute(
            f"SELECT s.id, s.updated_at, {_SAME} FROM server_stamps s LEFT JOIN {spec.name} m ON m.id = s.id "
            f"WHERE {_CHANGED} ORDER BY s.id",
            {"read_since": read_since},
        ).fetchall()
    finally:
        unregister(con, "server_stamps")
    return StampCheck(
        bound=bound,
        listed=stamps.num_rows,
        changed=tuple(r[0] for r in rows),
        below=tuple(r[0] for r in rows if r[1] is None or r[1] < window),
        unsure=tuple(r[0] for r in rows if r[2]),
    )


def mirror_linked_digest(con: duckdb.DuckDBPyConnection, rel: Relation, bound: str) -> tuple[int, str]:
    """(rows, ``stamp_digest``) of the embedded rows (files) the owner links through ``rel`` whose
    stamp is at or above ``bound``: what the sensor compares with the server's file stamps."""
    embedded = rel.embedded
    assert embedded is not None
    rows, digest = con.execute(
        "SELECT count(*), md5(coalesce(string_agg(CAST(id AS VARCHAR) || chr(9) || "
        f"coalesce(updated_at_text, ''), chr(10) ORDER BY id), '')) FROM {embedded.name} "
        f"WHERE updated_at_text >= ? AND id IN (SELECT {rel.target_column} FROM {rel.table})",
        [bound],
    ).fetchone()
    return int(rows), str(digest)


def owned_files_filter(owner: EntitySpec, updated: dict) -> dict:
    """Files updated per ``updated`` that belong to rows of ``owner`` (``scene_count > 0``)."""
    return {"updated_at": updated, f"{owner.singular}_count": {"modifier": "GREATER_THAN", "value": 0}}


def changed_linked(
    con: duckdb.DuckDBPyConnection, rel: Relation, stamps: pa.Table, read_since: datetime | None = None
) -> LinkedCheck:
    """Ids among ``stamps`` (an embedded type's, e.g. files) that rows of the owner link through
    ``rel`` and whose stamp the mirror does not have (or cannot trust: ``_CHANGED``).  Files no row
    links yet are left to the owner's own read (attaching a file bumps the owner)."""
    embedded = rel.embedded
    assert embedded is not None
    con.register("server_stamps", stamps)
    try:
        rows = con.execute(
            f"SELECT DISTINCT s.id, {_SAME} FROM server_stamps s JOIN {rel.table} l ON l.{rel.target_column} = s.id "
            f"LEFT JOIN {embedded.name} m ON m.id = s.id WHERE {_CHANGED} ORDER BY s.id",
            {"read_since": read_since},
        ).fetchall()
    finally:
        unregister(con, "server_stamps")
    return LinkedCheck(tuple(r[0] for r in rows), tuple(r[0] for r in rows if r[1]))


def owners_of(con: duckdb.DuckDBPyConnection, rel: Relation, ids: list[int]) -> list[int]:
    """The owners linking any of ``ids`` through ``rel`` (the scenes of some files)."""
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    rows = con.execute(
        f"SELECT DISTINCT {rel.owner_column} FROM {rel.table} WHERE {rel.target_column} IN ({marks}) ORDER BY 1",
        ids,
    ).fetchall()
    return [r[0] for r in rows]
