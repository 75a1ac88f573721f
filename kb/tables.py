"""kb's own cache tables: a rebuildable copy of the Discourse knowledge base.

They live on core's MetaData so that one Alembic history covers the whole database,
but only kb/ reads or writes them.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Integer, LargeBinary, String, Table, Text

from posventa.core import Id, UTCDateTime, metadata

kb_articles = Table(
    "kb_articles",
    metadata,
    #: "discourse-<topic id>" for synced topics; kept as a string so other KB types fit.
    Column("id", String(100), primary_key=True),
    Column("topic_id", Integer),
    Column("title", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("accepted_answer", Text),
    Column("tags", JSON, nullable=False),
    Column("category_id", Integer),
    Column("url", String(1000), nullable=False),
    Column("lang", String(5)),
    Column("updated_at", UTCDateTime()),
    Column("bumped_at", UTCDateTime()),
    Column("deleted", Boolean, nullable=False, default=False),
)

#: Customer phrasings that a KB article answered (LINK action, "yes, this solved it").
kb_phrasings = Table(
    "kb_phrasings",
    metadata,
    Column("id", Id, primary_key=True),
    Column("article_id", String(100), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("source", String(40), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

kb_sync_state = Table(
    "kb_sync_state",
    metadata,
    Column("key", String(60), primary_key=True),
    Column("value", String(200), nullable=False),
)

#: Sentence vectors of KB passages, content-addressed (``kb.semantic.passage_key``: a digest
#: of the model and the passage text), so a restart or another process encodes nothing twice.
#: Rows are never updated: a changed passage has a new key.  Stale rows only cost space.
kb_vectors = Table(
    "kb_vectors",
    metadata,
    Column("key", LargeBinary(32), primary_key=True),
    Column("vector", LargeBinary, nullable=False),
)
