"""fulltext: each engine's own full-text index over cases, messages, notes and contacts

SQLite: FTS5 tables over the existing rows (external content: the text is stored once,
in its table), tokenised ``unicode61 remove_diacritics 2`` so "licenca" matches
"licença", kept in step by triggers in the writing transaction itself.

PostgreSQL: a ``tsvector`` column per table under a ``posventa_search`` text search
configuration (``simple`` after ``unaccent``: no stemming, since a case may be in es, pt
or en), with a GIN index each. Messages, contacts and identities are rarely updated, so
theirs is a generated column; ``cases`` is updated by every message (``updated_at``) and
PostgreSQL 15 recomputes every generated column on any update, so its vector is set by a
trigger that only fires when the title or description change.

These objects cannot be declared in SQLAlchemy's metadata; ``core.persistence.schema.
FULLTEXT`` names them so the schema comparison (and autogenerate) leaves them alone.

Revision ID: i21_fulltext
Revises: i22_detractors
Create Date: 2026-12-07 02:00:00
"""

from alembic import op


revision = "i21_fulltext"
down_revision = "i22_detractors"
branch_labels = None
depends_on = None

#: FTS5 table -> (content table, indexed columns). The FTS rowid is the content row's id.
_SQLITE = {
    "cases_fts": ("cases", ("title", "description")),
    "messages_fts": ("messages", ("text",)),
    "contacts_fts": ("contacts", ("name", "email", "phone")),
    "identities_fts": ("contact_identities", ("address",)),
}

# An email address also indexed as its parts, so "ana" finds "ana@example.com" (the
# PostgreSQL parser keeps an address as one token; SQLite's unicode61 splits it anyway).
_PG_SPLIT = "translate(coalesce({0}, ''), '@.+-_', '     ')"
_PG_GENERATED = {
    "messages": "to_tsvector('posventa_search'::regconfig, text)",
    "contacts": ("to_tsvector('posventa_search'::regconfig, coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || "
                 + _PG_SPLIT.format("email") + " || ' ' || coalesce(phone, ''))"),
    "contact_identities": ("to_tsvector('posventa_search'::regconfig, address || ' ' || "
                           + _PG_SPLIT.format("address") + ")"),
}


def _sqlite_upgrade() -> None:
    for fts, (table, columns) in _SQLITE.items():
        cols = ", ".join(columns)
        new = ", ".join(f"new.{c}" for c in columns)
        old = ", ".join(f"old.{c}" for c in columns)
        op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{table}', content_rowid='id', "
                   "tokenize='unicode61 remove_diacritics 2')")
        op.execute(f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
                   f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new}); END")
        op.execute(f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
                   f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old}); END")
        # Only when an indexed column changes: cases.updated_at moves with every message.
        op.execute(f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {cols} ON {table} BEGIN "
                   f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old}); "
                   f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new}); END")
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _pg_upgrade() -> None:
    # unaccent is a trusted extension (PostgreSQL 13+): the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    op.execute("CREATE TEXT SEARCH CONFIGURATION posventa_search (COPY = simple)")
    op.execute("ALTER TEXT SEARCH CONFIGURATION posventa_search ALTER MAPPING FOR "
               "asciihword, asciiword, hword, hword_asciipart, hword_part, word, numword, numhword "
               "WITH unaccent, simple")
    for table, expression in _PG_GENERATED.items():
        op.execute(f"ALTER TABLE {table} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({expression}) STORED")
    op.execute("ALTER TABLE cases ADD COLUMN search_vector tsvector")
    op.execute("""
        CREATE FUNCTION cases_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.search_vector :=
                setweight(to_tsvector('posventa_search'::regconfig, coalesce(NEW.title, '')), 'A') ||
                setweight(to_tsvector('posventa_search'::regconfig, coalesce(NEW.description, '')), 'B');
            RETURN NEW;
        END $$""")
    op.execute("CREATE TRIGGER cases_search_vector BEFORE INSERT OR UPDATE OF title, description ON cases "
               "FOR EACH ROW EXECUTE FUNCTION cases_search_vector()")
    op.execute("UPDATE cases SET title = title")
    for table in ("cases", *_PG_GENERATED):
        op.execute(f"CREATE INDEX ix_{table}_search_vector ON {table} USING gin (search_vector)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_upgrade()
    else:
        _pg_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for fts in _SQLITE:
            for suffix in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {fts}")
        return
    op.execute("DROP TRIGGER IF EXISTS cases_search_vector ON cases")
    op.execute("DROP FUNCTION IF EXISTS cases_search_vector()")
    for table in ("cases", *_PG_GENERATED):
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
    op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS posventa_search")
