"""The Telegram adapter's own table: ``case_links``, the case's forum topic and header card.

It lives on core's MetaData so that one Alembic history covers the whole database (the
table was created by core's first migrations; a module's location is not schema), but
only bots/telegram/ reads or writes it (``bots.telegram.store``).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table, UniqueConstraint

from posventa.core import Id, metadata

#: Ids of things in Telegram that belong to a case: the forum topic (``telegram_topic``)
#: and the header card (``telegram_header``), refs ``"<chat id>:<id>"``.
case_links = Table(
    "case_links",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("system", String(40), nullable=False),
    Column("ref", String(300), nullable=False),
    UniqueConstraint("system", "case_id"),
    Index("ix_case_links_system_ref", "system", "ref"),
)
