"""Bulk inserts that hand back the new ids, in order, cheaply on both databases."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import Dialect, Insert, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their ``id``s in the same order.

    PostgreSQL: one ``INSERT … SELECT FROM unnest($1, $2, …) RETURNING id`` with a column
    per array parameter. SQLite: one ``INSERT … SELECT value ->> 0, … FROM json_each(?)
    RETURNING id`` with the rows as one JSON text (``_fast_insert_ids``). SQLAlchemy can
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


def _json_rows(columns: list[list[Any]], may_be_float: list[bool]) -> str | None:
    """The rows (``zip`` of ``columns``) as one JSON text, or None when a value cannot be
    carried exactly (bytes, Decimal, NaN or infinity, ints past 64 bits, lone surrogates).

    orjson encodes in C, several times faster than the stdlib; it writes NaN as null
    where the stdlib (``allow_nan=False``) refuses, so columns that may hold floats are
    checked first, and whatever orjson refuses the stdlib decides."""
    for column, check in zip(columns, may_be_float, strict=True):
        if check and any(isinstance(v, float) and not math.isfinite(v) for v in column):
            return None
    rows = list(zip(*columns, strict=True))
    try:
        return orjson.dumps(rows, option=_ORJSON_AS_STDLIB).decode()
    except orjson.JSONEncodeError:
        pass
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
    """The rows as one parameter per column (PostgreSQL arrays) or one in all (a SQLite
    JSON text); None when this table or these values need SQLAlchemy's own insert.

    SQLAlchemy's multi-row ``VALUES`` binds every cell as its own parameter (3,000 for 250
    messages), each through Python, and the database parses them all: together the
    largest part of an inbox batch. Here the driver (asyncpg) or orjson encodes
    them in C. Each cell still goes through its column type's bind processor (UTC check,
    JSON, booleans), exactly as SQLAlchemy would.

    PostgreSQL's ids come back in row order once sorted: the function scan yields the
    rows in array order and the sequence hands each one a larger id than the one before
    (another transaction's ids may fall in between, never out of order)."""
    dialect = conn.dialect
    plan = _fast_insert_plan(table, names, dialect)
    if plan is None:
        return None
    sql, processors, defaults, may_be_float = plan
    columns = []
    for name, process in zip(names, processors, strict=True):
        values = [row[name] for row in rows]
        columns.append(_processed(process, values) if process is not None else values)
    columns.extend([value] * len(rows) for value in defaults)
    if dialect.name == "postgresql":
        result = await conn.exec_driver_sql(sql, tuple(columns))
        ids = sorted(r[0] for r in result)
        if len(ids) != len(rows):
            raise RuntimeError(f"{table.name}: {len(ids)} ids for {len(rows)} rows after a bulk insert")
        return ids
    text = _json_rows(columns, may_be_float)
    if text is None:
        return None
    result = await conn.exec_driver_sql(sql, (text,))
    return _sqlite_ids_in_order(table, [r[0] for r in result], len(rows))


@functools.lru_cache(maxsize=64)
def _fast_insert_plan(table: Table, names: tuple[str, ...],
                      dialect: Dialect) -> tuple[str, list[Any], list[Any], list[bool]] | None:
    """The statement, each given column's bind processor, the scalar defaults of the
    columns not given (as SQLAlchemy fills them in), and which of all those columns may
    carry a float (see ``_json_rows``); None when one of those defaults is not a plain
    value."""
    missing = [c for c in table.c if c.name not in names and c.default is not None]
    if any(not c.default.is_scalar for c in missing):  # type: ignore[union-attr]
        return None
    defaults = [c.default.arg for c in missing]  # type: ignore[union-attr]
    columns = [table.c[name] for name in names] + missing
    preparer = dialect.identifier_preparer
    into = f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.format_column(c) for c in columns)})"
    returning = f"RETURNING {preparer.format_column(table.c.id)}"
    if dialect.name == "postgresql":
        arrays = ", ".join(f"${n}::{col.type.compile(dialect=dialect)}[]" for n, col in enumerate(columns, start=1))
        sql = f"{into} SELECT * FROM unnest({arrays}) {returning}"
    else:
        cells = ", ".join(f"value ->> {n}" for n in range(len(columns)))
        sql = f"{into} SELECT {cells} FROM json_each(?) {returning}"
    processors = [col.type.dialect_impl(dialect).bind_processor(dialect) for col in columns]
    defaults = [value if process is None else process(value)
                for value, process in zip(defaults, processors[len(names):], strict=True)]
    return sql, processors[:len(names)], defaults, [_may_be_float(col) for col in columns]


def _may_be_float(column: Any) -> bool:
    try:
        return issubclass(column.type.python_type, float)
    except NotImplementedError:  # a type that does not say: check its values
        return True
