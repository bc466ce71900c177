"""The link check: relations Stash changes without bumping either side (``Relation.unbumped``).

``addGroupSubGroups`` and ``removeGroupSubGroups`` write the link and bump no group (docs/stash-
behaviour.md §6), so neither a cursor nor a stamp sees them.  Such relations belong to small types
(groups), so every incremental run lists them for all rows in one answer and compares with the
mirror's link table; owners whose links differ are re-read by id.  The sensor compares a digest of
the same rows with the one the last sync recorded.
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import duckdb

from stash_pipeline.mirror.windows import parse_stash_time
from stash_pipeline.model import EntitySpec, Kind
from stash_pipeline.model.kinds import TIMESTAMP

JSON = dict[str, Any]


class LinkRow(NamedTuple):
    table: str
    owner: int
    target: int
    extras: tuple[Any, ...]


def _plain(value: Any, kind: Kind) -> Any:
    """An extra in one form on both sides: an empty string is NULL, and a timestamp (Stash's text
    in its local offset, the mirror's TIMESTAMPTZ) is the UTC instant as ISO text.  Compared as
    they come, a chapter's ``created_at`` would differ from the mirror's on every run."""
    if value is None or value == "":
        return None
    if kind is TIMESTAMP:
        moment = parse_stash_time(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        return moment.astimezone(UTC).isoformat()
    return value


def server_links(spec: EntitySpec, items: Iterable[JSON]) -> list[LinkRow]:
    """The unbumped relations' rows of Stash's answer (``queries.links_query``), sorted."""
    rows: list[LinkRow] = []
    for item in items:
        owner = int(item["id"])
        for rel in spec.unbumped_relations:
            for element in item.get(rel.field) or ():
                target: Any = element
                for step in rel.target_path:
                    target = target.get(step) if isinstance(target, dict) else None
                if target is None:
                    continue
                extras = tuple(
                    _plain(element.get(e.key), e.kind) for e in rel.extra if e.key != rel.target_path[0]
                )
                rows.append(LinkRow(rel.table, owner, int(target), extras))
    return sorted(rows, key=_key)


def mirror_links(con: duckdb.DuckDBPyConnection, spec: EntitySpec) -> list[LinkRow]:
    """The mirror's rows of the same relations, sorted."""
    rows: list[LinkRow] = []
    for rel in spec.unbumped_relations:
        extras = [e for e in rel.extra if e.key != rel.target_path[0]]
        columns = ", ".join([rel.owner_column, rel.target_column, *(e.column for e in extras)])
        for owner, target, *rest in con.execute(f"SELECT {columns} FROM {rel.table}").fetchall():
            values = tuple(_plain(v, e.kind) for v, e in zip(rest, extras, strict=True))
            rows.append(LinkRow(rel.table, owner, target, values))
    return sorted(rows, key=_key)


def _key(row: LinkRow) -> tuple:
    return (row.table, row.owner, row.target, tuple(str(v) for v in row.extras))


def links_digest(rows: Iterable[LinkRow]) -> str:
    """A fingerprint of sorted link rows (equal sets, equal digests)."""
    text = "\n".join(f"{r.table}\t{r.owner}\t{r.target}\t{r.extras!r}" for r in rows)
    return hashlib.md5(text.encode()).hexdigest()


def changed_owners(server: list[LinkRow], mirror: list[LinkRow]) -> tuple[int, ...]:
    """Owners whose rows differ between the two sides, sorted."""
    by_owner: dict[int, list[set[LinkRow]]] = defaultdict(lambda: [set(), set()])
    for row in server:
        by_owner[row.owner][0].add(row)
    for row in mirror:
        by_owner[row.owner][1].add(row)
    return tuple(sorted(owner for owner, (ours, theirs) in by_owner.items() if ours != theirs))
