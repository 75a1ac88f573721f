"""The Alembic history produces exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
import pytest
from sqlalchemy import text

import posventa.bots.telegram.tables  # noqa: F401  (the Telegram adapter's tables live on the same MetaData)
import posventa.kb.tables  # noqa: F401  (kb's tables live on the same MetaData)
import posventa.intake.console.tables  # noqa: F401  (the console's tables live on the same MetaData)
from posventa.core.persistence import Database, metadata
from posventa.core.persistence.migrate import current_revision, upgrade
from posventa.core.persistence.schema import ACTIVITY_TALLY_TRIGGERS, FULLTEXT_TABLES, is_fulltext_object
from tests.support import pg_available, require_or_skip, throwaway_pg_database


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

    from posventa.core.persistence.migrate import alembic_config

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


async def test_activity_tally_triggers_exist(database_url):
    """The per-activity counts are kept by triggers on cases (schema.ACTIVITY_TALLY_TRIGGERS),
    which a SQLite batch migration rebuilding the table would drop without a word."""
    db = Database(database_url)
    try:
        async with db.engine.connect() as conn:
            if db.is_sqlite:
                names = set((await conn.execute(text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'cases'"))).scalars())
            else:
                names = set((await conn.execute(text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'cases'::regclass AND NOT tgisinternal"))).scalars())
        assert set(ACTIVITY_TALLY_TRIGGERS) <= names
    finally:
        await db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_database_url(request, tmp_path):
    """A database with no schema at all (``database_url`` is migrated to head already)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    require_or_skip(pg_available(), "PostgreSQL is not reachable on 127.0.0.1:5432")
    async with throwaway_pg_database() as url:
        yield url


async def test_upgrading_a_database_with_data_keeps_every_row(empty_database_url):
    """Upgrading a live database from the last released revision keeps its cases and messages.

    On SQLite a batch migration that rebuilds ``cases`` drops the old table, and with
    foreign keys on, ``ON DELETE CASCADE`` would empty ``messages`` with it."""
    from datetime import UTC, datetime

    db = Database(empty_database_url)
    try:
        await upgrade(db, "0004")
        now = datetime.now(UTC)
        async with db.transaction() as conn:
            await conn.execute(text(
                "INSERT INTO organizations (id, name, domain, created_at) VALUES (1, 'Acme', 'acme.example', :n)"),
                {"n": now})
            await conn.execute(text(
                "INSERT INTO contacts (id, name, organization_id, created_at) VALUES (1, 'Ana', 1, :n)"), {"n": now})
            await conn.execute(text(
                "INSERT INTO contact_identities (id, contact_id, channel, address, unreachable, created_at) "
                "VALUES (1, 1, 'email', 'ana@acme.example', false, :n)"), {"n": now})
            await conn.execute(text(
                "INSERT INTO cases (id, created_at, updated_at, organization_id, contact_id, case_type, title, "
                "description, channel, language, activity, budget_mode, reply_token, self_served) VALUES "
                "(1, :n, :n, 1, 1, 'request', 't', 'd', 'email', 'es', 'closed', 'not_used', 'tok', false)"),
                {"n": now})
            await conn.execute(text(
                "INSERT INTO messages (case_id, contact_id, identity_id, channel, direction, author, text, created_at) "
                "VALUES (1, 1, 1, 'email', 'in', 'customer', 'hola', :n)"), {"n": now})
        await upgrade(db)
        async with db.engine.connect() as conn:
            counts = {table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
                      for table in ("organizations", "contacts", "contact_identities", "cases", "messages")}
            message = (await conn.execute(text("SELECT case_id, text FROM messages"))).one()
            if db.is_sqlite:  # the upgrade turned them off for itself only
                assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
        assert counts == dict.fromkeys(counts, 1)
        assert tuple(message) == (1, "hola")
    finally:
        await db.dispose()


async def test_contact_history_sentences_become_codes(empty_database_url):
    """The contact history stored as English sentences before codes is read back into
    codes and values (core.contacts.history), so that the console shows it in its reader's
    language; a sentence of another shape stays as it was."""
    from datetime import UTC, datetime

    from posventa.core.contacts import history
    from posventa.core.persistence.schema import contact_events

    old = [("created", None), ("updated", "language, name, organization_id"),
           ("identity_added", "email: ana@x.example"), ("identity_removed", "phone: +5491155551234"),
           ("merged", "absorbed contact #7: 1 identities, 2 cases, 3 messages, 1 webchat sessions"),
           ("merged", "absorbed contact #8"), ("merged_into", "merged into contact #9"),
           ("erased", "2 cases, 5 messages, 1 files"), ("updated", "something an older build wrote")]
    db = Database(empty_database_url)
    try:
        await upgrade(db, "i19_contact_terms_by_contact")
        now = datetime.now(UTC)
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO contacts (id, name, created_at) VALUES (1, 'Ana', :n)"), {"n": now})
            for kind, detail in old:
                await conn.execute(text("INSERT INTO contact_events (contact_id, at, actor, kind, detail) "
                                        "VALUES (1, :n, 'api', :k, :d)"), {"n": now, "k": kind, "d": detail})
        await upgrade(db)
        async with db.engine.connect() as conn:
            read = [history.read(e) for e in await conn.execute(
                contact_events.select().order_by(contact_events.c.id))]
    finally:
        await db.dispose()
    moved = dict.fromkeys(("identities", "cases", "messages", "sales", "survey_instances", "webchat_sessions",
                           "history"), 0)
    assert [(e["kind"], e["code"], e["values"]) for e in read] == [
        ("created", None, {}),
        ("updated", "contact_history_updated", {"fields": ["language", "name", "organization_id"]}),
        ("identity_added", "contact_history_identity_added", {"channel": "email", "address": "ana@x.example"}),
        ("identity_removed", "contact_history_identity_removed", {"channel": "phone", "address": "+5491155551234"}),
        ("merged", "contact_history_merged",
         {**moved, "source": 7, "identities": 1, "cases": 2, "messages": 3, "webchat_sessions": 1}),
        ("merged", "contact_history_merged", {**moved, "source": 8}),
        ("merged_into", "contact_history_merged_into", {"target": 9}),
        ("erased", "contact_history_erased", {"cases": 2, "messages": 5, "files": 1}),
        ("updated", None, {})]
    assert read[1]["detail"] == "changed: language, name, organization_id"
    assert read[-1]["detail"] == "something an older build wrote"


async def test_case_history_sentences_become_codes(empty_database_url):
    """The case history stored as English sentences before codes is read back into codes
    and values (core.case_history), so that the console shows it in its reader's language;
    a KB URL, and a sentence of another shape, stay as they were. The downgrade writes the
    sentences back."""
    from datetime import UTC, datetime

    from alembic import command

    from posventa.core import case_history
    from posventa.core.persistence import sqlite_driver
    from posventa.core.persistence.migrate import alembic_config
    from posventa.core.persistence.schema import case_events

    def downgrade(sync_conn) -> None:  # as migrate.upgrade runs one: SQLite's foreign keys off
        if db.is_sqlite:
            sqlite_driver.run_before_pending_begin(sync_conn.connection.dbapi_connection,
                                                   lambda: sync_conn.exec_driver_sql("PRAGMA foreign_keys=OFF"))
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, "i19_contact_history_codes")

    old = [("opened", None), ("reopened", "reopened by the customer"), ("activity", "the customer wrote"),
           ("activity", "self-served"), ("activity", "sector: Taller, planta 2"),
           ("opened", "dated 2026-11-30T09:00:00+00:00"), ("customer_told", "closed"),
           ("budget", "the process's mode"), ("assign", "automatic (least_open)"),
           ("assign", "reassigned: ana away"), ("assign", "among the rule's operators (ana, beto)"),
           ("erased", "contact erased"), ("contact_merged", "contact #7 merged into contact #9"),
           ("organization_merged", "organization #3 merged into #4"),
           ("detractor_answer", "¿Funciona el equipo? → no (weight -100)"),
           ("opened", "detractor answer in survey 12 (sale ERP-9)"),
           ("delivery_failed", "Delivery by email to ana@x.example failed: relay refused: 550 no such user"),
           ("kb_action", "https://kb.example/t/12"), ("activity", "something an older build wrote")]
    db = Database(empty_database_url)
    try:
        await upgrade(db, "i19_contact_history_codes")
        now = datetime.now(UTC)
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO contacts (id, name, created_at) VALUES (1, 'Ana', :n)"), {"n": now})
            await conn.execute(text(
                "INSERT INTO cases (id, created_at, updated_at, contact_id, case_type, title, description, channel, "
                "language, activity, budget_mode, reply_token, self_served) VALUES "
                "(1, :n, :n, 1, 'request', 't', 'd', 'email', 'es', 'closed', 'not_used', 'tok', false)"), {"n": now})
            for kind, detail in old:
                await conn.execute(text("INSERT INTO case_events (case_id, at, actor, kind, detail) "
                                        "VALUES (1, :n, 'system', :k, :d)"), {"n": now, "k": kind, "d": detail})
        await upgrade(db)
        async with db.engine.connect() as conn:
            read = [case_history.read(e) for e in await conn.execute(case_events.select().order_by(case_events.c.id))]
        async with db.engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with db.engine.connect() as conn:
            back = list((await conn.execute(text("SELECT detail FROM case_events ORDER BY id"))).scalars())
    finally:
        await db.dispose()
    assert [(e["kind"], e["code"], e["values"]) for e in read] == [
        ("opened", None, {}),
        ("reopened", "case_history_reopened", {}),
        ("activity", "case_history_customer_wrote", {}),
        ("activity", "case_history_self_served", {}),
        ("activity", "case_history_sector", {"sector": "Taller, planta 2"}),
        ("opened", "case_history_dated", {"at": "2026-11-30T09:00:00+00:00"}),
        ("customer_told", "case_history_customer_told", {"activity": "closed"}),
        ("budget", "case_history_process_budget_mode", {}),
        ("assign", "case_history_assigned", {"strategy": "least_open"}),
        ("assign", "case_history_reassigned", {"previous": "ana"}),
        ("assign", "case_history_detractor_assigned", {"operators": ["ana", "beto"]}),
        ("erased", "case_history_contact_erased", {}),
        ("contact_merged", "case_history_contact_merged", {"source": 7, "target": 9}),
        ("organization_merged", "case_history_organization_merged", {"source": 3, "target": 4}),
        ("detractor_answer", "case_history_detractor_answer",
         {"question": "¿Funciona el equipo?", "score": "no", "weight": -100}),
        ("opened", "case_history_detractor_opened", {"survey": 12, "sale": "ERP-9"}),
        ("delivery_failed", "case_history_delivery_failed",
         {"channel": "email", "recipient": "ana@x.example", "error": "relay refused: 550 no such user"}),
        ("kb_action", None, {}),
        ("activity", None, {})]
    # The English the API reads is the sentence that was stored, word for word.
    assert [e["detail"] for e in read] == [detail for _, detail in old]
    assert back == [detail for _, detail in old]
