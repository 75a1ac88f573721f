"""Autogenerate an Alembic revision from the schema (developer tool).

    .venv/bin/python scripts/make_migration.py "add foo"          # new revision on top of head
    .venv/bin/python scripts/make_migration.py --initial          # rewrite 0001 from scratch (before first release only)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic import command  # noqa: E402

from posventa.core.persistence import Database  # noqa: E402
from posventa.core.persistence.migrate import MIGRATIONS_DIR, alembic_config, upgrade  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("message", nargs="?", default="initial schema")
    parser.add_argument("--initial", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/gen.db")
        if args.initial:
            for f in (MIGRATIONS_DIR / "versions").glob("0001_*.py"):
                f.unlink()
        else:
            await upgrade(db)

        def run(sync_conn) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = sync_conn
            existing = sorted((MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
            rev = f"{len(existing) + 1:04d}"
            slug = args.message.lower().replace(" ", "_")[:40]
            command.revision(cfg, message=args.message, autogenerate=True, rev_id=rev)
            for f in (MIGRATIONS_DIR / "versions").glob(f"{rev}_*.py"):
                f.rename(f.with_name(f"{rev}_{slug}.py"))

        async with db.engine.begin() as conn:
            await conn.run_sync(run)
        await db.dispose()


asyncio.run(main())
