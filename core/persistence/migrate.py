"""Apply the Alembic migrations programmatically, on the service's own engine."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from core.errors import ConfigError
from core.persistence.database import Database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; idempotent."""

    def run(sync_conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


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
