"""Decode a page answer straight into Arrow, every field with the type the entity spec declares.

Why: parsing a page of 1,000 scenes into Python objects (orjson) and then building columns from them
took most of a full sync's CPU, all of it holding the GIL.  Arrow's JSON reader parses the answer
into typed columns in C++, without the GIL, about 1.5x faster than orjson alone; shaping then starts
from columns (``mirror.frames``).

The reader is strict where it matters: a value that is not of its declared type (``"85"`` or ``5.5``
for an integer, ``1`` for a boolean, a bare string for a list, a number for a string, an integer out
of range) makes it refuse the whole answer.  ``decode_page`` then returns ``None`` and the client
parses the answer as JSON objects, the path that normalises or fails each bad row on its own
(docs/architecture.md, "Bad input").  Answers that carry GraphQL ``errors``, have no data, hold null or duplicate
entities are also left to that path, which knows how to report them.
"""

import re
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

from stash_pipeline.model import EntitySpec, Relation
from stash_pipeline.stash.queries import Selection


def _element_type(rel: Relation) -> pa.DataType:
    """Arrow type of one element of a relation's list: a whole entity for an embedded type (a
    file), the value itself for a list of scalars (a play's time), else a struct of the target at
    ``target_path`` (a string id, as Stash sends ids, or the target's kind) and the extra keys."""
    if rel.embedded is not None:
        return entity_type(rel.embedded)
    leaf: pa.DataType = pa.string() if rel.target_kind is None else rel.target_kind.arrow
    if not rel.target_path:
        return leaf
    inner = leaf
    for step in reversed(rel.target_path[1:]):
        inner = pa.struct([(step, inner)])
    fields = [(rel.target_path[0], inner)]
    fields += [
        (extra.key, extra.kind.arrow)
        for extra in rel.extra
        if extra.key != rel.target_path[0] and not extra.absent
    ]
    return pa.struct(fields)


@cache
def entity_type(spec: EntitySpec) -> pa.StructType:
    """Arrow type of one entity as ``spec.selection`` asks for it."""
    fields: dict[str, pa.DataType] = {"id": pa.string(), "created_at": pa.string(), "updated_at": pa.string()}
    nested: dict[str, list[tuple[str, pa.DataType]]] = {}
    single: set[str] = set()
    for column in spec.columns:
        if column.absent:  # not selected: the shaper fills NULL
            continue
        if column.element is None:
            fields[column.name] = column.kind.arrow
        else:  # files[0].path, parent_folder.path
            nested.setdefault(column.element.list_field, []).append((column.element.key, column.kind.arrow))
            if column.element.index is None:
                single.add(column.element.list_field)
    for head, keys in nested.items():
        fields[head] = pa.struct(keys) if head in single else pa.list_(pa.struct(keys))
    for ref in spec.refs:
        fields[ref.field] = pa.struct([("id", pa.string())])
    for rel in spec.relations:
        fields[rel.field] = pa.list_(_element_type(rel))
    return pa.struct(list(fields.items()))


@cache
def _takes_arrow(spec: EntitySpec) -> bool:
    """Whether Arrow's reader can type this spec's pages (a free-form map it cannot)."""
    specs = [spec, *(rel.embedded for rel in spec.relations if rel.embedded is not None)]
    return not any(c.kind.is_map and not c.absent for s in specs for c in s.columns)


_LIGHT_TYPES = {
    Selection.IDS: pa.struct([("id", pa.string())]),
    Selection.STAMPS: pa.struct([("id", pa.string()), ("updated_at", pa.string())]),
}


@cache
def _parse_options(spec: EntitySpec, selection: Selection) -> pa_json.ParseOptions:
    entity = entity_type(spec) if selection is Selection.FULL else _LIGHT_TYPES[selection]
    result = pa.struct([("count", pa.int64()), (spec.result_key, pa.list_(entity))])
    answer = pa.schema(
        [
            ("data", pa.struct([(spec.query, result)])),
            ("errors", pa.list_(pa.struct([("message", pa.string())]))),
        ]
    )
    return pa_json.ParseOptions(explicit_schema=answer, unexpected_field_behavior="ignore")


def decode_page(
    body: bytes, spec: EntitySpec, selection: Selection = Selection.FULL
) -> tuple[int | None, pa.StructArray] | None:
    """``(count or None, entities)`` of a page answer for ``spec`` (full entities, ids or stamps),
    or ``None`` when Arrow cannot take the answer exactly as typed (the caller then parses it as
    JSON objects)."""
    if selection is Selection.FULL and not _takes_arrow(spec):
        return None
    try:
        table = pa_json.read_json(
            # An Arrow buffer, not a Python file: Arrow reads a Python file on its own I/O thread,
            # which needs the GIL for every read (with other threads busy: 20 ms a page, not 1.5).
            pa.BufferReader(body),
            # One block holds the whole answer, so line breaks inside it (pretty-printing) do not matter.
            read_options=pa_json.ReadOptions(block_size=len(body) + 1, use_threads=False),
            parse_options=_parse_options(spec, selection),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Invalid: malformed JSON or a value off its declared type (see the module docstring);
        # NotImplemented: a conversion the reader does not offer.  Either way the JSON path decides.
        return None
    if table.num_rows != 1:
        return None
    answer: Any = table.to_batches()[0]
    errors = answer.column(1)
    if errors.null_count == 0 and len(errors[0]) > 0:
        return None
    data = answer.column(0)
    if data.null_count:
        return None
    result = data.field(0)
    if result.null_count:
        return None
    entities = result.field(1)
    if entities.null_count:
        return None
    rows = entities.flatten()
    ids = rows.field("id")
    if rows.null_count or ids.null_count:
        return None
    if len(ids) and len(ids.unique()) != len(ids):
        return None
    count = result.field(0)[0].as_py()
    return count, rows


# Every entity's first fields are its id and created_at (``EntitySpec.selection``'s order, which a
# GraphQL answer keeps), and a JSON string cannot hold an unescaped quote: this pattern is found only
# where an entity begins.  Nested objects ({"id":"18"}) are not followed by created_at.
_ENTITY_START = re.compile(rb'\{"id":"(\d+)","created_at":')


def last_entity_id(body: bytes) -> int | None:
    """The id of the last entity in a raw page answer, found from the end without parsing it, or
    ``None``.  Used only to ask for the next keyset page early: the client uses that reply only if
    the decoded page really ends with this id."""
    end = len(body)
    while (start := body.rfind(b'{"id":"', 0, end)) >= 0:
        match = _ENTITY_START.match(body, start)
        if match:
            return int(match.group(1))
        end = start
    return None
