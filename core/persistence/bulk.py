"""Bulk inserts that hand back the new ids, in order, cheaply on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their ``id``s in the same order.

    PostgreSQL: one ``INSERT … RETURNING`` batch. SQLite: SQLAlchemy can only keep RETURNING
    in order there by sending one statement per row, which dominated the inbox's cost. Our
    SQLite write transactions hold the write lock from BEGIN IMMEDIATE, and SQLite gives a
    new row (without an explicit id) max(rowid)+1, so one executemany yields the contiguous
    range after the previous maximum; the maximum is checked afterwards to prove it.
    """
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        result = await conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return [r[0] for r in result]
    before = (await conn.execute(select(func.max(table.c.id)))).scalar() or 0
    await conn.execute(insert(table), list(rows))
    after = (await conn.execute(select(func.max(table.c.id)))).scalar()
    if after != before + len(rows):
        raise RuntimeError(f"{table.name}: ids are not contiguous after a bulk insert ({before}→{after}, {len(rows)} rows)")
    return list(range(before + 1, after + 1))
