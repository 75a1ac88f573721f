"""Bulk inserts that hand back the new ids, in order, cheaply on both databases."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Dialect, Insert, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their ``id``s in the same order.

    PostgreSQL: one ``INSERT … SELECT FROM unnest($1, $2, …) RETURNING id`` with a column
    per array parameter (``_pg_insert_ids``). SQLite: SQLAlchemy can only keep
    RETURNING in order there by sending one statement per row, which dominated the inbox's
    cost. Our SQLite write transactions hold the write lock from BEGIN IMMEDIATE, and SQLite
    gives each new row (without an explicit id) max(rowid)+1, in VALUES order.
    """
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        keys = rows[0].keys()
        if all(row.keys() == keys for row in rows):
            return await _pg_insert_ids(conn, table, rows, tuple(keys))
    if conn.dialect.name != "sqlite":
        result = await conn.execute(_insert_returning_id(table, ordered=True), rows)
        return [r[0] for r in result]
    # One multi-row INSERT … RETURNING. SQLite does not promise RETURNING's row order, but
    # the ids themselves come in VALUES order (max(rowid)+1 under our write lock), so the
    # sorted ids are the insertion order once they are shown to be one contiguous range.
    result = await conn.execute(_insert_returning_id(table, ordered=False), list(rows))
    ids = sorted(r[0] for r in result)
    if len(ids) != len(rows) or ids[-1] - ids[0] != len(rows) - 1:
        raise RuntimeError(f"{table.name}: ids are not contiguous after a bulk insert ({len(rows)} rows)")
    return ids


@functools.lru_cache(maxsize=64)
def _insert_returning_id(table: Table, *, ordered: bool) -> Insert:
    # One statement object per table: a new one per call costs its cache key and the
    # adaptation of the cached compiled form to it, on every inbox batch.
    return insert(table).returning(table.c.id, sort_by_parameter_order=ordered)


async def _pg_insert_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]],
                         names: tuple[str, ...]) -> list[int]:
    """SQLAlchemy's ordered multi-row ``VALUES`` binds every cell as its own parameter
    (3,000 of them for 250 messages), each through Python, and PostgreSQL parses them
    all: together the largest part of an inbox batch. Arrays are one parameter per
    column, encoded by asyncpg in C. Each cell still goes through its column type's bind
    processor (UTC check, JSON), exactly as SQLAlchemy would.

    The ids come back in row order once sorted: the function scan yields the rows in
    array order and the sequence hands each one a larger id than the one before (another
    transaction's ids may fall in between, never out of order)."""
    plan = _pg_unnest_insert(table, names, conn.dialect)
    if plan is None:  # a column left out has a default computed in Python
        result = await conn.execute(_insert_returning_id(table, ordered=True), rows)
        return [r[0] for r in result]
    sql, processors, defaults = plan
    params = []
    for name, process in zip(names, processors, strict=True):
        values = [row[name] for row in rows]
        params.append([process(v) for v in values] if process is not None else values)
    params.extend([value] * len(rows) for value in defaults)
    result = await conn.exec_driver_sql(sql, tuple(params))
    ids = sorted(r[0] for r in result)
    if len(ids) != len(rows):
        raise RuntimeError(f"{table.name}: {len(ids)} ids for {len(rows)} rows after a bulk insert")
    return ids


@functools.lru_cache(maxsize=64)
def _pg_unnest_insert(table: Table, names: tuple[str, ...],
                      dialect: Dialect) -> tuple[str, list[Any], list[Any]] | None:
    """The statement, each given column's bind processor, and the scalar defaults of the
    columns not given (as SQLAlchemy fills them in); None when one of those defaults is
    not a plain value."""
    missing = [c for c in table.c if c.name not in names and c.default is not None]
    if any(not c.default.is_scalar for c in missing):  # type: ignore[union-attr]
        return None
    defaults = [c.default.arg for c in missing]  # type: ignore[union-attr]
    columns = [table.c[name] for name in names] + missing
    preparer = dialect.identifier_preparer
    arrays = ", ".join(f"${n}::{col.type.compile(dialect=dialect)}[]" for n, col in enumerate(columns, start=1))
    sql = (f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.format_column(c) for c in columns)}) "
           f"SELECT * FROM unnest({arrays}) RETURNING {preparer.format_column(table.c.id)}")
    processors = [col.type.dialect_impl(dialect).bind_processor(dialect) for col in columns]
    defaults = [value if process is None else process(value)
                for value, process in zip(defaults, processors[len(names):], strict=True)]
    return sql, processors[:len(names)], defaults
