"""Column kinds: everything the pipeline knows about one kind of value, in one object.

A kind says how a value travels (its Arrow type when a page is decoded, its Polars type once
extracted), how it is parsed into the mirror's type (Polars expressions), how a malformed value is
normalised or refused on the lenient row-by-row path, and its DuckDB type.  The decoder
(``stash.arrow_pages``), the shaper (``mirror.frames``) and the DDL (``mirror.schema``) ask the
kind; none of them branches on a kind's name.  A new kind is one object here.

Polars and Arrow are imported where a kind first needs them, not at import: the CLI's no-change
check imports the model but never shapes a page, and importing Polars costs it about 0.17 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

# Stash writes RFC 3339 with the server's offset ("2024-03-01T10:00:00+01:00").
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%#z"


# --------------------------------------------------------------------------- lenient coercions
def coerce_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if isinstance(value, str) and value.strip() == "":
        return None
    raise ValueError(f"not an integer: {value!r:.60}")


def _coerce_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return None if value.strip() == "" else float(value)
    raise ValueError(f"not a number: {value!r:.60}")


def _coerce_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"not a boolean: {value!r:.60}")


def _coerce_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value)
    raise ValueError(f"not a string: {value!r:.60}")


def _coerce_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [_coerce_str(v) for v in value if v is not None]
    raise ValueError(f"not a list: {value!r:.60}")


def _coerce_date(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r:.60}")
    text = value.strip()
    if text == "":
        return None
    padded = {10: text, 7: text + "-01", 4: text + "-01-01"}.get(len(text))
    if padded is None:
        raise ValueError(f"not a date (YYYY-MM-DD, YYYY-MM or YYYY): {value!r:.60}")
    date.fromisoformat(padded)  # raises ValueError with a clear message
    return text


def coerce_timestamp(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r:.60}")
    import polars as pl

    try:
        pl.Series([value]).str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", strict=True)
    except Exception:
        raise ValueError(f"not an RFC3339 timestamp: {value!r:.60}") from None
    return value


def json_text(value: Any) -> str | None:
    """A map (Stash's ``Map`` scalar) as canonical JSON text: keys sorted, as Go writes them."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    raise ValueError(f"not a map: {value!r:.60}")


# --------------------------------------------------------------------------- parses
def _as_is(name: str) -> list[pl.Expr]:
    import polars as pl

    return [pl.col(name)]


def _empty_is_null(name: str) -> list[pl.Expr]:
    import polars as pl

    return [pl.col(name).replace("", None)]


def _missing_list_is_empty(name: str) -> list[pl.Expr]:
    import polars as pl

    # Null elements are dropped separately, only where there are any (``frames``).
    return [pl.col(name).fill_null(pl.lit([], dtype=pl.List(pl.String)))]


def _parse_timestamp(name: str) -> list[pl.Expr]:
    import polars as pl

    return [pl.col(name).replace("", None).str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", strict=True)]


def precision_column(name: str) -> str:
    """The companion column of a partial date: ``date`` → ``date_precision``."""
    return f"{name}_precision"


def _parse_partial_date(name: str) -> list[pl.Expr]:
    """Stash dates may be ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``: stored as the first day of the
    period, with the precision in a companion column, so no information is lost."""
    import polars as pl

    text = pl.col(name).replace("", None)
    length = text.str.len_chars()
    padded = pl.when(length == 4).then(text + "-01-01").when(length == 7).then(text + "-01").otherwise(text)
    precision = (
        pl.when(text.is_null())
        .then(None)
        .when(length == 4)
        .then(pl.lit("year"))
        .when(length == 7)
        .then(pl.lit("month"))
        .otherwise(pl.lit("day"))
    )
    return [padded.str.to_date("%Y-%m-%d", strict=True).alias(name), precision.alias(precision_column(name))]


@dataclass(frozen=True)
class Companion:
    """An extra mirror column a kind writes beside the value (a partial date's precision)."""

    suffix: str
    sql: str


@dataclass(frozen=True, eq=False)
class Kind:
    """One kind of column value (compared by identity: there is one object per kind)."""

    name: str
    arrow_type: Callable[[], pa.DataType]  # as the page decoder reads it from the answer
    wire_type: Callable[[], pl.DataType]  # as extracted from a page, before parsing
    sql: str  # the mirror's DuckDB type
    coerce: Callable[[Any], Any]  # lenient normalisation of one value, or ValueError
    parse: Callable[[str], list[pl.Expr]]  # extracted column → mirror column(s)
    companions: tuple[Companion, ...] = ()
    is_list: bool = False  # a list of strings: checked for bare strings and null elements
    integral: bool = False  # a fraction in it is refused, not truncated
    # A free-form object (``Map``): Arrow's reader cannot type it, so pages carrying one are read
    # as JSON objects and the value kept as canonical JSON text.
    is_map: bool = False

    def __repr__(self) -> str:
        return f"Kind({self.name})"

    @cached_property
    def arrow(self) -> pa.DataType:
        return self.arrow_type()

    @cached_property
    def wire(self) -> pl.DataType:
        return self.wire_type()

    def mirror_columns(self, name: str) -> list[tuple[str, str]]:
        """(column, DuckDB type) this kind writes for a column called ``name``."""
        return [(name, self.sql)] + [(f"{name}{c.suffix}", c.sql) for c in self.companions]


def _pa() -> ModuleType:
    import pyarrow

    return pyarrow


def _pl() -> ModuleType:
    import polars

    return polars


STR = Kind("str", lambda: _pa().string(), lambda: _pl().String(), "VARCHAR", _coerce_str, _empty_is_null)
INT = Kind("int", lambda: _pa().int64(), lambda: _pl().Int64(), "BIGINT", coerce_int, _as_is, integral=True)
FLOAT = Kind("float", lambda: _pa().float64(), lambda: _pl().Float64(), "DOUBLE", _coerce_float, _as_is)
BOOL = Kind("bool", lambda: _pa().bool_(), lambda: _pl().Boolean(), "BOOLEAN", _coerce_bool, _as_is)
# Dates and timestamps travel as text and are parsed by the shaper; a timestamp's text is also
# kept verbatim where it is a cursor (``updated_at_text``).
DATE = Kind(
    "date",
    lambda: _pa().string(),
    lambda: _pl().String(),
    "DATE",
    _coerce_date,
    _parse_partial_date,
    companions=(Companion("_precision", "VARCHAR"),),
)
TIMESTAMP = Kind(
    "timestamp",
    lambda: _pa().string(),
    lambda: _pl().String(),
    "TIMESTAMPTZ",
    coerce_timestamp,
    _parse_timestamp,
)
STR_LIST = Kind(
    "str_list",
    lambda: _pa().list_(_pa().string()),
    lambda: _pl().List(_pl().String()),
    "VARCHAR[]",
    _coerce_list,
    _missing_list_is_empty,
    is_list=True,
)

MAP = Kind("map", lambda: _pa().string(), lambda: _pl().String(), "JSON", json_text, _as_is, is_map=True)

KINDS: tuple[Kind, ...] = (STR, INT, FLOAT, BOOL, DATE, TIMESTAMP, STR_LIST, MAP)

__all__ = [
    "BOOL",
    "DATE",
    "FLOAT",
    "INT",
    "KINDS",
    "MAP",
    "STR",
    "STR_LIST",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "Companion",
    "Kind",
    "coerce_int",
    "coerce_timestamp",
    "json_text",
    "precision_column",
]
