"""The SQLite handle: transactions begin in their first statement's trip, and the WAL
is checkpointed beside the writers, never inside their commits."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from posventa.core.persistence import Database, upgrade
from posventa.core.persistence.database import json_text
from posventa.core.persistence.schema import contacts


async def test_sqlite_checkpoints_run_beside_the_writers_and_leave_the_wal_copied(tmp_path):
    path = tmp_path / "posventa.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await upgrade(db)
    try:
        async with db.engine.connect() as conn:
            # The pool's connections never checkpoint inside a commit.
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
        for n in range(20):
            async with db.transaction() as conn:
                await conn.execute(contacts.insert().values(name=f"c{n}", created_at=datetime.now(UTC)))
        async with asyncio.timeout(10):
            while not db.checkpointer.done:  # a moment after the writes, on its own thread
                await asyncio.sleep(0.05)
        async with db.engine.connect() as conn:
            assert (await conn.execute(select(contacts.c.name).order_by(contacts.c.id))).scalars().all() == \
                [f"c{n}" for n in range(20)]
    finally:
        await db.dispose()
    # Closing the last connection folded the WAL into the file: a plain open sees it all.
    with sqlite3.connect(path) as again:
        assert again.execute("SELECT count(*) FROM contacts").fetchone() == (20,)


async def test_sqlite_transaction_that_runs_nothing_begins_nothing(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await upgrade(db)
    try:
        async with db.transaction():
            pass  # no statement: no BEGIN IMMEDIATE, so another writer is never held up
        with sqlite3.connect(tmp_path / "x.db", timeout=0) as other:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        async with db.transaction() as conn:
            await conn.execute(contacts.insert().values(name="x", created_at=datetime.now(UTC)))
            # Inside a write transaction the write lock is ours from its first statement.
            with sqlite3.connect(tmp_path / "x.db", timeout=0) as other:
                try:
                    other.execute("BEGIN IMMEDIATE")
                    raise AssertionError("another writer got in while a write transaction was open")
                except sqlite3.OperationalError as exc:
                    assert "locked" in str(exc)
    finally:
        await db.dispose()


def test_json_columns_are_written_as_the_stdlib_would_read_them():
    """orjson writes JSON columns; what comes back is what the stdlib encoder gave."""
    for value in [{"a": 1, "ñ": ["😀", 1.5, None, True]}, {1: "int keys become text"}, [2**70, -(2**63)], "x", None]:
        assert json.loads(json_text(value)) == json.loads(json.dumps(value))
    with pytest.raises(TypeError):  # as the stdlib: a time is not JSON
        json_text({"at": datetime.now(UTC)})
