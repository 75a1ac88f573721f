"""The Alembic history produces exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

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
