"""The Alembic history produces exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

import kb.tables  # noqa: F401  (kb's tables live on the same MetaData)
from core.persistence import Database, metadata
from core.persistence.migrate import current_revision, upgrade
from core.persistence.schema import FULLTEXT_TABLES, is_fulltext_object


async def test_upgraded_database_matches_the_declared_schema(database_url):
    db = Database(database_url)
    try:
        await upgrade(db)  # idempotent on an already migrated database
        assert await current_revision(db) is not None

        def diff(sync_conn):
            context = MigrationContext.configure(sync_conn, opts={
                "compare_type": True,
                "include_name": lambda name, type_, _parents: not is_fulltext_object(name, type_)})
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


def test_the_history_has_one_head():
    """Several people add migrations at once: each must chain onto the last, never fork."""
    from alembic.script import ScriptDirectory

    from core.persistence.migrate import alembic_config

    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


async def test_full_text_objects_exist(database_url):
    """The full-text index lives outside the declared metadata (see schema.FULLTEXT_TABLES):
    a later migration that rebuilds a table (SQLite batch mode) would drop its triggers
    silently, so check every one is there at head."""
    db = Database(database_url)
    try:
        async with db.engine.connect() as conn:
            if db.is_sqlite:
                names = set((await conn.execute(text(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')"))).scalars())
                assert {f"{t}_{s}" for t in FULLTEXT_TABLES for s in ("ai", "ad", "au")} <= names
                assert set(FULLTEXT_TABLES) <= names
            else:
                columns = set((await conn.execute(text(
                    "SELECT table_name FROM information_schema.columns WHERE column_name = 'search_vector'"))).scalars())
                assert columns == {"cases", "messages", "contacts", "contact_identities"}
                triggers = set((await conn.execute(text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'cases'::regclass AND NOT tgisinternal"))).scalars())
                assert "cases_search_vector" in triggers
    finally:
        await db.dispose()
