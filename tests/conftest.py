"""Shared fixtures: real databases (a SQLite file per test, a throwaway PostgreSQL
database per test cloned from a migrated template), a settable clock, and the
POSVENTA_REQUIRE_ALL switch that turns "skipped: no PostgreSQL/Chromium" into failures."""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest

from posventa.core.persistence import Database, upgrade
from tests.support import PG_ADMIN_DSN, pg_available, require_or_skip, throwaway_pg_database

DB_KINDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_template() -> str | None:
    """A migrated template database, made once per test session."""
    if not pg_available():
        return None
    import asyncpg

    name = f"pv_tpl_{secrets.token_hex(4)}"

    async def make() -> None:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
        await upgrade(db)
        await db.dispose()

    asyncio.run(make())
    yield name

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


@pytest.fixture(params=DB_KINDS)
async def database_url(request, tmp_path, pg_template):
    """A fresh, migrated database URL: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "posventa.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db)
        await db.dispose()
        yield f"sqlite+aiosqlite:///{path}"
        return
    require_or_skip(pg_template is not None, "PostgreSQL is not reachable on 127.0.0.1:5432")
    async with throwaway_pg_database(template=pg_template) as url:
        yield url


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def require_all() -> bool:
    return os.environ.get("POSVENTA_REQUIRE_ALL") == "1"
