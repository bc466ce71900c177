"""Shape raw GraphQL pages into Polars frames with an explicit schema, one per table.

Three paths, one result:
- from Arrow (the usual case): the client decoded the page straight into typed columns
  (``stash.arrow_pages``); Polars takes them without a copy and applies the casts and parses;
- from JSON objects, fast: columns extracted with plain list comprehensions, cast strictly by Polars;
- from JSON objects, row by row: if any value in the page is malformed, each row is shaped on its
  own with lenient coercions, so that a bad row is either normalised (``"85"`` → 85) or reported as
  failed with a reason while the rest of the page is stored.
Every fast path falls back to the next on anything unexpected; all produce the same frames (tested).
Duplicate ids within a page are resolved to the last occurrence.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from stash_pipeline.mirror.schema import LINK_TABLES, entity_columns
from stash_pipeline.model import Column, EntitySpec, Relation
from stash_pipeline.model.kinds import TIMESTAMP_FORMAT, Kind, coerce_int, coerce_timestamp
from stash_pipeline.stash.arrow_pages import entity_type

UTC_TS = pl.Datetime("us", "UTC")


@dataclass
class ShapedPage:
    """One page, ready to merge: the entity frame, one frame per link relation, and the failures."""

    entities: pl.DataFrame
    links: dict[str, pl.DataFrame]  # keyed by (relation.table, relation.field) → "table:field"
    failures: list[tuple[int | None, str]] = field(default_factory=list)
    duplicates: int = 0
    max_updated_at: str | None = None
    # Rows of embedded types read inside these entities (a scene's files), by type name.
    embedded: dict[str, "ShapedPage"] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return self.entities["id"].to_list()


def relation_key(rel: Relation) -> str:
    return f"{rel.table}:{rel.field}"


def _dig(value: Any, path: Iterable[str | int]) -> Any:
    for step in path:
        if value is None:
            return None
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value


def _getter(column: Column) -> Callable[[dict], Any]:
    if column.element is None:
        name = column.name
        return lambda row: row.get(name)
    element = column.element
    path = (
        (element.list_field, element.key)
        if element.index is None
        else (element.list_field, element.index, element.key)
    )
    return lambda row: _dig(row, path)


# --------------------------------------------------------------------------- shaping
@dataclass
class _Extracted:
    """Raw values pulled out of the JSON rows, column by column, before any casting."""

    ids: list[Any]
    columns: dict[str, list[Any]]
    refs: dict[str, list[Any]]
    created: list[Any]
    updated: list[Any]
    links: dict[str, "_LinkLists"]

    def extend(self, other: "_Extracted") -> None:
        self.ids += other.ids
        for key, values in other.columns.items():
            self.columns[key] += values
        for key, values in other.refs.items():
            self.refs[key] += values
        self.created += other.created
        self.updated += other.updated
        for key, lists in other.links.items():
            self.links[key].extend(lists)


class PageShaper:
    """Shapes pages of one entity type; built once per spec."""

    def __init__(self, spec: EntitySpec) -> None:
        self.spec = spec
        self.getters = [(c, _getter(c)) for c in spec.columns]
        self.table_columns = [c.name for c in entity_columns(spec)]
        self.relations = spec.relations
        # Columns read inside a list's element (files[0].path ...), grouped by (list, index).
        self.heads: dict[tuple[str, int], list[Column]] = {}
        for column in spec.columns:
            if column.element is not None:
                self.heads.setdefault((column.element.list_field, column.element.index), []).append(column)
        # A relation's lists have the type the client decodes them with (one definition).
        decoded = entity_type(spec)
        self.link_types = {relation_key(rel): decoded.field(rel.field).type for rel in spec.relations}
        # String lists: checked for values Arrow converts without complaint but wrongly (before the
        # fast path), and for null elements (after it).
        self.string_lists = [c.name for c in spec.columns if c.kind.is_list]
        self.element_ints = {
            rel.field: [extra.key for extra in rel.extra if extra.kind.integral]
            for rel in spec.relations
            if any(extra.kind.integral for extra in rel.extra)
        }
        self.maps = [c.name for c in spec.columns if c.kind.is_map and not c.absent]
        # Embedded types' rows (a scene's files) are shaped by their own shaper.
        self.embedded = {rel.field: PageShaper(rel.embedded) for rel in spec.embedded_relations}

        # Columns as extracted (typed, not yet cast or parsed) → the mirror's columns.
        self.casts = [pl.col("id").cast(pl.Int64, strict=True)]
        for column in spec.columns:
            self.casts.extend(_parsed(column))
        self.casts += [pl.col(ref.column).cast(pl.Int64, strict=True) for ref in spec.refs]
        self.casts += [
            pl.col("created_at").str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", strict=True),
            pl.col("updated_at_text")
            .str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", strict=True)
            .alias("updated_at"),
            pl.col("updated_at_text"),
        ]
        # Arrow's columns → the extracted columns (nested values pulled out, renamed).
        self.from_arrow = [pl.col("id"), pl.col("created_at"), pl.col("updated_at").alias("updated_at_text")]
        for column in spec.columns:
            element = column.element
            if column.absent:
                self.from_arrow.append(pl.lit(None, dtype=column.kind.wire).alias(column.name))
            elif element is None:
                self.from_arrow.append(pl.col(column.name))
            elif element.index is None:
                self.from_arrow.append(
                    pl.col(element.list_field).struct.field(element.key).alias(column.name)
                )
            else:
                self.from_arrow.append(
                    pl.col(element.list_field)
                    .list.get(element.index, null_on_oob=True)
                    .struct.field(element.key)
                    .alias(column.name)
                )
        self.from_arrow += [pl.col(ref.field).struct.field("id").alias(ref.column) for ref in spec.refs]

    def shape(self, rows: list[dict] | pa.StructArray, synced_at: Any) -> ShapedPage:
        """``rows``: a page's entities as the client decoded them (``Page.rows``)."""
        if isinstance(rows, pa.StructArray):
            try:
                return self._shape_arrow(rows, synced_at)
            except Exception:
                rows = rows.to_pylist()  # something off: the JSON paths decide, row by row if need be
        unique = _dedupe(rows)
        try:
            page = self._build_columnar(unique, synced_at)
        except Exception:
            page = self._shape_row_by_row(unique, synced_at)
        page.duplicates = len(rows) - len(unique)
        return page

    # ------------------------------------------------------------------ fast path
    def _shape_arrow(self, rows: pa.StructArray, synced_at: Any) -> ShapedPage:
        """The fast path from Arrow: the values already have their declared types, so this is
        Polars' casts and parses over columns it takes without copying."""
        table = pa.Table.from_struct_array(rows)
        if table.column("id").null_count or len(pc.unique(table.column("id"))) != table.num_rows:
            raise ValueError("missing or duplicate ids")  # the JSON path resolves or fails them
        extracted = pl.DataFrame(pl.from_arrow(table)).select(self.from_arrow)
        lists = {relation_key(rel): table.column(rel.field).combine_chunks() for rel in self.relations}
        return self._finish(extracted, lists, synced_at)

    def _element_values(self, rows: list[dict], head: str, index: int | None) -> list[Any]:
        values = _values(rows, head)
        if index is None:
            return values
        return [v[index] if isinstance(v, list) and len(v) > index else None for v in values]

    def _build_columnar(self, rows: list[dict], synced_at: Any) -> ShapedPage:
        """The fast path from JSON objects: one frame built from plain lists (string lists and
        links through Arrow, which converts nested Python lists in C), then the same casts as from
        Arrow.  Anything malformed raises, and ``shape`` falls back to the row-by-row path."""
        self._check_loose_values(rows)
        data: dict[str, Any] = {"id": [r["id"] for r in rows]}
        schema: dict[str, pl.DataType] = {"id": pl.String()}
        elements = {head: self._element_values(rows, head, index) for head, index in self.heads}
        for column in self.spec.columns:
            name, kind, element = column.name, column.kind, column.element
            if element is None:
                values = _values(rows, name)
            else:
                key = element.key
                values = [e.get(key) if isinstance(e, dict) else None for e in elements[element.list_field]]
            if kind.is_list:  # through Arrow, which converts nested Python lists in C
                data[name] = pl.Series(name, pa.array(values, type=kind.arrow))
            elif kind.is_map and not column.absent:
                data[name] = [kind.coerce(v) for v in values]
            else:
                data[name] = values
            schema[name] = kind.wire
        for ref in self.spec.refs:
            data[ref.column] = [
                v.get("id") if isinstance(v, dict) else None for v in _values(rows, ref.field)
            ]
            schema[ref.column] = pl.String()
        data["created_at"] = _values(rows, "created_at")
        data["updated_at_text"] = _values(rows, "updated_at")
        schema["created_at"] = schema["updated_at_text"] = pl.String()
        extracted = pl.DataFrame(data, schema=schema, strict=True)
        lists = {
            relation_key(rel): pa.array(
                [v or None for v in _values(rows, rel.field)], type=self.link_types[relation_key(rel)]
            )
            for rel in self.relations
        }
        return self._finish(extracted, lists, synced_at)

    def _finish(self, extracted: pl.DataFrame, lists: dict[str, pa.Array], synced_at: Any) -> ShapedPage:
        """Both fast paths end here: one select of all casts and parses (not a Series and a small
        query per column), then the link frames from the relations' Arrow lists."""
        updated = extracted["updated_at_text"]
        if updated.null_count():
            raise ValueError("field updated_at: missing")
        entities = extracted.select(*self.casts, pl.lit(synced_at, dtype=UTC_TS).alias("synced_at")).select(
            self.table_columns
        )
        entities = _without_null_elements(entities, self.string_lists)
        owners = entities["id"]
        page = ShapedPage(entities=entities, links={}, max_updated_at=updated.max())
        for rel in self.relations:
            lists_of_rel = lists[relation_key(rel)]
            page.links[relation_key(rel)] = self._links_columnar(rel, lists_of_rel, owners)
            if rel.embedded is not None:
                shaped = self.embedded[rel.field].shape(lists_of_rel.flatten(), synced_at)
                _add_embedded(page, rel.embedded.name, shaped)
        return page

    def _check_loose_values(self, rows: list[dict]) -> None:
        """Raise on what Arrow would take silently but wrongly: a bare string for a list ("abc"
        would become a, b, c) and a fraction in a link's integer extra (2.5 would become 2).  The
        row-by-row path then normalises the first ("x" → ["x"]) and fails the row for the second.
        (Scalar columns go through Polars' strict constructor, which refuses both.)"""
        for name in self.string_lists:
            if str in {type(r.get(name)) for r in rows}:
                raise ValueError(f"field {name}: a string where a list is due")
        for field_name, keys in self.element_ints.items():
            for value in (r.get(field_name) for r in rows):
                for element in value if isinstance(value, list) else ():
                    if isinstance(element, dict) and any(type(element.get(k)) is float for k in keys):
                        raise ValueError(f"relation {field_name}: a fraction in an integer field")

    def _links_columnar(self, rel: Relation, lists: pa.Array, owners: pl.Series) -> pl.DataFrame:
        """One relation's link rows from its lists (one per owner), flattened by Arrow; first
        occurrence of a target per owner kept (as ``_extract_links``) unless every element counts."""
        flat = lists.flatten()
        target: Any = flat
        for step in rel.target_path:
            target = pc.struct_field(target, step)
        parents = pl.from_arrow(pc.list_parent_indices(lists))
        frame = {
            rel.owner_column: owners.gather(parents).alias(rel.owner_column),
            rel.target_column: _target_series(rel, pl.Series(rel.target_column, target)),
        }
        if frame[rel.target_column].null_count():
            raise ValueError(f"relation {rel.field}: element without id")
        for extra in rel.extra:
            if extra.absent:
                frame[extra.column] = pl.Series(extra.column, [None] * len(flat), dtype=extra.kind.wire)
            else:
                frame[extra.column] = pl.Series(extra.column, pc.struct_field(flat, extra.key)).cast(
                    extra.kind.wire, strict=True
                )
        if rel.primary_column:
            offsets = pl.Series(pl.from_arrow(lists.offsets)).cast(pl.Int64)
            starts = (offsets.head(len(lists)) - offsets[0]).gather(parents)
            frame[rel.primary_column] = pl.int_range(len(flat), eager=True) == starts
        links = pl.DataFrame(frame)
        if rel.distinct and _repeats_a_pair(links[rel.owner_column], links[rel.target_column]):
            links = links.unique(
                subset=[rel.owner_column, rel.target_column], keep="first", maintain_order=True
            )
        return _parsed_links(rel, links)

    def _extract(self, rows: list[dict]) -> _Extracted:
        return _Extracted(
            ids=[r["id"] for r in rows],
            columns={c.name: [get(r) for r in rows] for c, get in self.getters},
            refs={ref.column: [_dig(r.get(ref.field), ("id",)) for r in rows] for ref in self.spec.refs},
            created=[r.get("created_at") for r in rows],
            updated=[r.get("updated_at") for r in rows],
            links={relation_key(rel): _extract_links(rel, rows) for rel in self.relations},
        )

    def _build(self, ex: _Extracted, synced_at: Any) -> ShapedPage:
        data: dict[str, pl.Series] = {"id": _ids("id", ex.ids)}
        for column, _get in self.getters:
            data.update(_column_series(column, ex.columns[column.name]))
            if column.absent:
                data.update({name: data[name].clear(len(ex.ids)) for name, _t in column.mirror_columns()})
        for name, values in ex.refs.items():
            data[name] = _ids(name, values)
        if any(v is None for v in ex.updated):
            raise ValueError("field updated_at: missing")
        updated = pl.Series("updated_at_text", ex.updated, dtype=pl.String, strict=True)
        created = pl.Series("created_at", ex.created, dtype=pl.String, strict=True)
        data["created_at"] = created.str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", strict=True)
        data["updated_at"] = updated.str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", strict=True).alias(
            "updated_at"
        )
        data["updated_at_text"] = updated
        data["synced_at"] = pl.Series("synced_at", [synced_at] * len(ex.ids), dtype=UTC_TS)
        entities = pl.DataFrame(data).select(self.table_columns)
        links = {relation_key(rel): ex.links[relation_key(rel)].frame(rel) for rel in self.relations}
        max_updated = max(ex.updated) if ex.updated else None
        page = ShapedPage(entities=entities, links=links, max_updated_at=max_updated)
        for rel in self.spec.embedded_relations:
            elements = ex.links[relation_key(rel)].elements
            _add_embedded(page, rel.embedded.name, self.embedded[rel.field].shape(elements, synced_at))
        return page

    def _shape_row_by_row(self, rows: list[dict], synced_at: Any) -> ShapedPage:
        """Slow path for a page with a bad value: normalise what can be, fail the rest, keep going."""
        good = self._extract([])
        failures: list[tuple[int | None, str]] = []
        for row in rows:
            raw_id = row.get("id") if isinstance(row, dict) else None
            try:
                entity_id = coerce_int(raw_id)
                if entity_id is None:
                    raise ValueError("missing")
            except (ValueError, TypeError) as exc:
                failures.append((None, f"bad id {raw_id!r:.40}: {exc}"))
                continue
            try:
                ex = self._extract([row])
                self._coerce(ex)
                self._build(ex, synced_at)  # proves the row shapes on its own
            except Exception as exc:
                failures.append((entity_id, _reason(exc)))
                continue
            good.extend(ex)
        page = self._build(good, synced_at)
        page.failures = failures
        return page

    def _coerce(self, ex: _Extracted) -> None:
        ex.ids = [str(coerce_int(v)) for v in ex.ids]
        for column, _get in self.getters:
            try:
                ex.columns[column.name] = [column.kind.coerce(v) for v in ex.columns[column.name]]
            except (ValueError, TypeError) as exc:
                raise ValueError(f"field {column.name}: {exc}") from None
        for name, values in ex.refs.items():
            ex.refs[name] = [None if v is None else str(coerce_int(v)) for v in values]
        for key in ("created", "updated"):
            try:
                setattr(ex, key, [coerce_timestamp(v) for v in getattr(ex, key)])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"field {key}_at: {exc}") from None
        for rel in self.relations:
            lists = ex.links[relation_key(rel)]
            lists.owners = [str(coerce_int(v)) for v in lists.owners]
            if rel.target_kind is None:
                lists.targets = [str(coerce_int(v)) for v in lists.targets]
            else:
                lists.targets = [rel.target_kind.coerce(v) for v in lists.targets]
            for i, extra in enumerate(rel.extra):
                lists.extras[i] = [extra.kind.coerce(v) for v in lists.extras[i]]


def _values(rows: list[dict], key: str) -> list[Any]:
    return [r.get(key) for r in rows]


def _parsed(column: Column) -> list[pl.Expr]:
    """A column's parse; NULL for a column the server does not offer (its parse may make an empty
    list of a missing one, which would claim Stash has none)."""
    exprs = column.kind.parse(column.name)
    if column.absent:
        return [pl.when(pl.lit(False)).then(e).otherwise(None) for e in exprs]
    return exprs


def _dedupe(rows: list[dict]) -> list[dict]:
    """Resolve duplicate ids within a page: the last occurrence wins."""
    by_id: dict[Any, dict] = {}
    for row in rows:
        key = row.get("id") if isinstance(row, dict) else id(row)
        by_id.pop(key, None)
        by_id[key] = row
    return list(by_id.values())


@dataclass
class _LinkLists:
    """One relation's link rows of some owners, as plain lists (the JSON paths)."""

    owners: list[Any]
    targets: list[Any]
    extras: list[list[Any]]
    primaries: list[bool]
    elements: list[dict]  # the whole elements, for an embedded type

    def extend(self, other: "_LinkLists") -> None:
        self.owners += other.owners
        self.targets += other.targets
        for mine, theirs in zip(self.extras, other.extras, strict=True):
            mine += theirs
        self.primaries += other.primaries
        self.elements += other.elements

    def frame(self, rel: Relation) -> pl.DataFrame:
        data = {
            rel.owner_column: _ids(rel.owner_column, self.owners),
            rel.target_column: (
                _ids(rel.target_column, self.targets)
                if rel.target_kind is None
                else pl.Series(rel.target_column, self.targets, dtype=rel.target_kind.wire, strict=True)
            ),
        }
        for i, extra in enumerate(rel.extra):
            data[extra.column] = pl.Series(extra.column, self.extras[i], dtype=extra.kind.wire, strict=True)
        if rel.primary_column:
            data[rel.primary_column] = pl.Series(rel.primary_column, self.primaries, dtype=pl.Boolean)
        return _parsed_links(rel, pl.DataFrame(data))


def _extract_links(rel: Relation, rows: list[dict]) -> _LinkLists:
    out = _LinkLists([], [], [[] for _ in rel.extra], [], [])
    path = rel.target_path
    for row in rows:
        elements = row.get(rel.field) or ()
        if not isinstance(elements, list | tuple):
            raise ValueError(f"relation {rel.field}: not a list")
        owner = row["id"]
        seen: set[Any] = set()
        for position, element in enumerate(elements):
            target = _dig(element, path)
            if target is None:
                raise ValueError(f"relation {rel.field}: element without id")
            if rel.distinct:
                if target in seen:
                    continue
                seen.add(target)
            out.owners.append(owner)
            out.targets.append(target)
            for i, extra in enumerate(rel.extra):
                out.extras[i].append(None if extra.absent else element.get(extra.key))
            out.primaries.append(position == 0)
            if rel.embedded is not None:
                out.elements.append(element)
    return out


def _target_series(rel: Relation, values: pl.Series) -> pl.Series:
    """Link targets as the mirror stores them: ids as BIGINT, other values in their kind."""
    if rel.target_kind is None:
        return values.cast(pl.Int64, strict=True)
    return values.cast(rel.target_kind.wire, strict=True)


def _parse_first(kind: Kind, name: str) -> pl.Expr:
    return kind.parse(name)[0].alias(name)


def _parsed_links(rel: Relation, links: pl.DataFrame) -> pl.DataFrame:
    """The link frame in the table's column order, values parsed by their kinds (a time's text to
    an instant, an empty string to NULL)."""
    exprs = []
    for column in LINK_TABLES[rel.table].columns:
        name = column.name
        if name == rel.target_column and rel.target_kind is not None:
            exprs.append(_parse_first(rel.target_kind, name))
        elif (extra := next((e for e in rel.extra if e.column == name), None)) is not None:
            exprs.append(_parse_first(extra.kind, name))
        else:
            exprs.append(pl.col(name))
    return links.select(exprs)


def _add_embedded(page: ShapedPage, name: str, shaped: ShapedPage) -> None:
    """Embedded rows of one more relation (two relations may embed the same type)."""
    if name in page.embedded:
        mine = page.embedded[name]
        mine.entities = pl.concat([mine.entities, shaped.entities]).unique(
            "id", keep="last", maintain_order=True
        )
        mine.failures += shaped.failures
    else:
        page.embedded[name] = shaped


def _ids(name: str, values: list[Any]) -> pl.Series:
    """Stash ids arrive as JSON strings ("123"); the mirror stores BIGINT."""
    return pl.Series(name, values, dtype=pl.String, strict=True).cast(pl.Int64, strict=True)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _repeats_a_pair(owners: pl.Series, targets: pl.Series) -> bool:
    """Whether some (owner, target) pair occurs twice.  An order-keeping ``unique`` of 160k scene
    tags costs ~10 ms, and there is almost never anything to drop: counting distinct values of one
    combined key costs ~1.5 ms (ids outside 0..2^31 are left to ``unique``)."""
    if len(owners) < 2:
        return False
    if owners.min() < 0 or targets.min() < 0 or owners.max() >= 1 << 31 or targets.max() >= 1 << 32:
        return True
    return (owners * (1 << 32) + targets).n_unique() != len(owners)


def _without_null_elements(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Null elements of string lists dropped (as the lenient coercion of ``STR_LIST`` does).  Polars' ``list.drop_nulls``
    costs as much as all other casts of an images page together even when there is nothing to drop
    (there almost never is), so it runs only on a column whose elements include a null."""
    dirty = [n for n in names if pc.list_flatten(frame[n].to_arrow()).null_count]
    return frame.with_columns(pl.col(n).list.drop_nulls() for n in dirty) if dirty else frame


def _column_series(column: Column, values: list[Any]) -> dict[str, pl.Series]:
    """One column for the row-by-row path, parsed by the fast path's own expressions."""
    name, kind = column.name, column.kind
    if kind.is_list:
        values = [v if v is not None else [] for v in values]
    frame = pl.DataFrame({name: pl.Series(name, values, dtype=kind.wire, strict=True)}).select(
        kind.parse(name)
    )
    return {col: frame[col] for col in frame.columns}
