"""Bulk inserts that hand back the new ids, in order, cheaply on both databases."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their ``id``s in the same order.

    PostgreSQL: one ordered ``INSERT … RETURNING`` batch. SQLite: SQLAlchemy can only keep
    RETURNING in order there by sending one statement per row, which dominated the inbox's
    cost. Our SQLite write transactions hold the write lock from BEGIN IMMEDIATE, and SQLite
    gives each new row (without an explicit id) max(rowid)+1, in VALUES order.
    """
    if not rows:
        return []
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
