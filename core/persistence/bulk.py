"""Bulk inserts that hand back the new ids, in order, cheaply on both databases."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, DateTime, Dialect, Float, Insert, Integer, String, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their ``id``s in the same order.

    One ``INSERT … SELECT … RETURNING id`` with the rows as one JSON text: from
    ``jsonb_array_elements($1)`` on PostgreSQL, ``json_each(?)`` on SQLite; on PostgreSQL,
    a table with a column JSON cannot carry exactly (``NUMERIC``) gets one array parameter
    per column through ``unnest`` instead (``_fast_insert_ids``). SQLAlchemy can
    only keep RETURNING in order on SQLite by sending one statement per row, which
    dominated the inbox's cost. Our SQLite write transactions hold the write lock from
    BEGIN IMMEDIATE, and SQLite gives each new row (without an explicit id)
    max(rowid)+1, in the order the SELECT yields them.
    """
    if not rows:
        return []
    keys = rows[0].keys()
    if conn.dialect.name in ("postgresql", "sqlite") and all(row.keys() == keys for row in rows):
        ids = await _fast_insert_ids(conn, table, rows, tuple(keys))
        if ids is not None:
            return ids
    if conn.dialect.name != "sqlite":
        result = await conn.execute(_insert_returning_id(table, ordered=True), rows)
        return [r[0] for r in result]
    # One multi-row INSERT … RETURNING. SQLite does not promise RETURNING's row order, but
    # the ids themselves come in VALUES order (max(rowid)+1 under our write lock), so the
    # sorted ids are the insertion order once they are shown to be one contiguous range.
    result = await conn.execute(_insert_returning_id(table, ordered=False), list(rows))
    return _sqlite_ids_in_order(table, [r[0] for r in result], len(rows))


def _processed(process: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """``[process(v) for v in values]``, running ``process`` once per distinct value.

    A batch's rows share most of their values (one ``created_at``, one ``extra``: null),
    and the bind processors of those columns (timestamps formatted in Python, JSON) were
    the largest part of preparing an inbox batch. The key holds the type, so ``1``,
    ``1.0`` and ``True`` (equal, same hash) never share a result; unhashable values
    (a JSON dict) are processed each time."""
    done: dict[tuple[type, Any], Any] = {}
    out = []
    for v in values:
        key = (type(v), v)
        try:
            out.append(done[key])
        except KeyError:
            out.append(done.setdefault(key, process(v)))
        except TypeError:  # unhashable
            out.append(process(v))
    return out


#: orjson would encode these as JSON itself; the stdlib refuses them, and so must we
#: (the caller then falls back to SQLAlchemy's insert, which binds them properly).
_ORJSON_AS_STDLIB = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_ORJSON_TIMES = orjson.OPT_NAIVE_UTC | orjson.OPT_PASSTHROUGH_DATACLASS


def _json_rows(columns: list[list[Any]], may_be_float: list[bool], *, times: bool = False) -> str | None:
    """The rows (``zip`` of ``columns``) as one JSON text, or None when a value cannot be
    carried exactly (bytes, Decimal, NaN or infinity, ints past 64 bits, lone surrogates).
    ``times``: datetimes as ISO 8601 text with their offset (naive ones as UTC, as asyncpg
    binds them), for PostgreSQL's casts; otherwise a datetime is refused.

    orjson encodes in C, several times faster than the stdlib; it writes NaN as null
    where the stdlib (``allow_nan=False``) refuses, so columns that may hold floats are
    checked first, and whatever orjson refuses the stdlib decides."""
    for column, check in zip(columns, may_be_float, strict=True):
        if check and any(isinstance(v, float) and not math.isfinite(v) for v in column):
            return None
    rows = list(zip(*columns, strict=True))
    try:
        return orjson.dumps(rows, option=_ORJSON_TIMES if times else _ORJSON_AS_STDLIB).decode()
    except orjson.JSONEncodeError:
        if times:
            return None  # the stdlib knows no datetimes either
    try:
        return json.dumps(rows, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _sqlite_ids_in_order(table: Table, ids: list[int], expected: int) -> list[int]:
    ids.sort()
    if len(ids) != expected or ids[-1] - ids[0] != expected - 1:
        raise RuntimeError(f"{table.name}: ids are not contiguous after a bulk insert ({expected} rows)")
    return ids


@functools.lru_cache(maxsize=64)
def _insert_returning_id(table: Table, *, ordered: bool) -> Insert:
    # One statement object per table: a new one per call costs its cache key and the
    # adaptation of the cached compiled form to it, on every inbox batch.
    return insert(table).returning(table.c.id, sort_by_parameter_order=ordered)


async def _fast_insert_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]],
                           names: tuple[str, ...]) -> list[int] | None:
    """The rows as one JSON text (or, on PostgreSQL, one array parameter per column);
    None when this table or these values need SQLAlchemy's own insert.

    SQLAlchemy's multi-row ``VALUES`` binds every cell as its own parameter (3,000 for 250
    messages), each through Python, and the database parses them all: together the
    largest part of an inbox batch. Here orjson encodes them in C. Arrays cost more:
    asyncpg checks every element of every array in Python's protocols (is it a nested
    sequence?), about four times the client CPU of one JSON text for a batch of
    messages, which PostgreSQL also reads faster. Each cell still goes through its column
    type's bind processor (UTC check, JSON, booleans), exactly as SQLAlchemy would.

    PostgreSQL's ids come back in row order once sorted: the function scan yields the
    rows in array order and the sequence hands each one a larger id than the one before
    (another transaction's ids may fall in between, never out of order)."""
    dialect = conn.dialect
    plan = _fast_insert_plan(table, names, dialect)
    if plan is None:
        return None
    columns = []
    for name, process in zip(names, plan.processors, strict=True):
        values = [row[name] for row in rows]
        columns.append(_processed(process, values) if process is not None else values)
    columns.extend([value] * len(rows) for value in plan.defaults)
    if plan.arrays:
        result = await conn.exec_driver_sql(plan.sql, tuple(columns))
    else:
        text = _json_rows(columns, plan.may_be_float, times=dialect.name == "postgresql")
        if text is None:
            return None
        result = await conn.exec_driver_sql(plan.sql, (text,))
    if dialect.name == "sqlite":
        return _sqlite_ids_in_order(table, [r[0] for r in result], len(rows))
    ids = sorted(r[0] for r in result)
    if len(ids) != len(rows):
        raise RuntimeError(f"{table.name}: {len(ids)} ids for {len(rows)} rows after a bulk insert")
    return ids


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    #: Each given column's bind processor (None: the value goes as it is).
    processors: list[Any]
    #: The scalar defaults of the columns not given, processed, as SQLAlchemy fills them in.
    defaults: list[Any]
    #: Per column (given, then defaulted): may it carry a float (see ``_json_rows``)?
    may_be_float: list[bool]
    #: PostgreSQL with a column JSON cannot carry exactly: one array parameter per column.
    arrays: bool


#: Column types whose processed values JSON carries exactly, and PostgreSQL reads back
#: from JSON text with a cast to the column's type (timestamps as ISO 8601 with offset).
_JSON_SAFE = (String, Integer, Boolean, Float, DateTime, JSON)


@functools.lru_cache(maxsize=64)
def _fast_insert_plan(table: Table, names: tuple[str, ...], dialect: Dialect) -> _Plan | None:
    """None when one of the defaults of the columns not given is not a plain value."""
    missing = [c for c in table.c if c.name not in names and c.default is not None]
    if any(not c.default.is_scalar for c in missing):  # type: ignore[union-attr]
        return None
    defaults = [c.default.arg for c in missing]  # type: ignore[union-attr]
    columns = [table.c[name] for name in names] + missing
    preparer = dialect.identifier_preparer
    into = f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.format_column(c) for c in columns)})"
    returning = f"RETURNING {preparer.format_column(table.c.id)}"
    impls = [col.type.dialect_impl(dialect) for col in columns]
    # A TypeDecorator (UTCDateTime) is judged by the type it stores as.
    stored = [getattr(t, "impl", t) for t in impls]
    arrays = False
    if dialect.name == "postgresql":
        arrays = not all(isinstance(t, _JSON_SAFE) for t in stored)
        if arrays:
            params = ", ".join(f"${n}::{col.type.compile(dialect=dialect)}[]" for n, col in enumerate(columns, start=1))
            sql = f"{into} SELECT * FROM unnest({params}) {returning}"
        else:
            # Text stays text: a cast to VARCHAR(n) would cut an overlong value silently,
            # where the insert's own assignment refuses it. JSON null reads as SQL NULL.
            cells = ", ".join(f"r ->> {n}" if isinstance(t, String) else
                              f"(r ->> {n})::{col.type.compile(dialect=dialect)}"
                              for n, (col, t) in enumerate(zip(columns, stored, strict=True)))
            sql = f"{into} SELECT {cells} FROM jsonb_array_elements($1::jsonb) AS r {returning}"
    else:
        cells = ", ".join(f"value ->> {n}" for n in range(len(columns)))
        sql = f"{into} SELECT {cells} FROM json_each(?) {returning}"
    processors = [t.bind_processor(dialect) for t in impls]
    defaults = [value if process is None else process(value)
                for value, process in zip(defaults, processors[len(names):], strict=True)]
    return _Plan(sql, processors[:len(names)], defaults, [_may_be_float(col) for col in columns], arrays)


def _may_be_float(column: Any) -> bool:
    try:
        return issubclass(column.type.python_type, float)
    except NotImplementedError:  # a type that does not say: check its values
        return True
