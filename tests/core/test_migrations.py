"""The Alembic history produces exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

import kb.tables  # noqa: F401  (kb's tables live on the same MetaData)
from core.persistence import Database, metadata
from core.persistence.migrate import current_revision, upgrade


async def test_upgraded_database_matches_the_declared_schema(database_url):
    db = Database(database_url)
    try:
        await upgrade(db)  # idempotent on an already migrated database
        assert await current_revision(db) is not None

        def diff(sync_conn):
            context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
            return compare_metadata(context, metadata)

        async with db.engine.connect() as conn:
            differences = await conn.run_sync(diff)
        assert differences == []
    finally:
        await db.dispose()


async def test_postgresql_storage_settings_the_migrations_make(database_url):
    """Table settings that compare_metadata cannot see: HOT room on cases, and autovacuum
    following the survey scheduler's ticks on rule_instances."""
    db = Database(database_url)
    try:
        await upgrade(db)
        if db.is_sqlite:
            return  # SQLite has neither setting
        async with db.engine.connect() as conn:
            options = dict((await conn.execute(text(
                "SELECT relname, reloptions FROM pg_class WHERE relname IN ('cases', 'rule_instances')"))).all())
        assert options == {
            "cases": ["fillfactor=70"],
            "rule_instances": ["autovacuum_vacuum_scale_factor=0.005", "autovacuum_analyze_scale_factor=0.01"],
        }
    finally:
        await db.dispose()
