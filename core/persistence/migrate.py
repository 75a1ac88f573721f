"""Apply the Alembic migrations programmatically, on the service's own engine."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from posventa.core.errors import ConfigError
from posventa.core.persistence import sqlite_driver
from posventa.core.persistence.database import Database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; idempotent.

    On SQLite, foreign keys are off while the migrations run: a batch migration rebuilds a
    table by copying it and dropping the old one, and with foreign keys on that DROP would
    cascade (``ON DELETE CASCADE``) and empty every child table, e.g. all messages of all
    cases. ``PRAGMA foreign_key_check`` then proves nothing was left dangling before commit,
    and the pool is emptied so that every later connection has them on again."""

    def run(sync_conn) -> None:
        if db.is_sqlite:
            sqlite_driver.run_before_pending_begin(
                sync_conn.connection.dbapi_connection,
                lambda: sync_conn.exec_driver_sql("PRAGMA foreign_keys=OFF"))
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)
        if db.is_sqlite:
            dangling = sync_conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise RuntimeError(f"migration to {revision} left rows without their parent: {dangling[:5]}")

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        if db.is_sqlite:
            await db.engine.dispose()


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def prepare(db: Database, *, source: str | None = None) -> None:
    """Make the schema current before anything reads it: every command and ``serve``
    call this. SQLite upgrades itself (one process owns the file); PostgreSQL, shared by
    many processes, is upgraded explicitly, so an old schema there is one line saying what
    to run, never a confusing SQL error."""
    head = head_revision()
    current = await current_revision(db)
    if current == head:
        return
    if db.is_sqlite:
        await upgrade(db)
        # Alembic's own lines are quiet unless --verbose: this one says what happened.
        log.info("database schema upgraded from %s to %s", current or "nothing", head)
        return
    raise ConfigError(f"database schema is at {current or 'nothing'}, expected {head}: "
                      "run `posventa db upgrade` first", key="database.url", file=source)
