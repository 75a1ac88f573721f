"""The console's own table: ``console_sessions``, who is signed in.

It lives on core's MetaData so that one Alembic history covers the whole database (the
table was created by core's migrations; a module's location is not schema), but only the
console reads or writes it (``intake.console.auth``). The accounts it points at are
core's (``core.accounts``).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String, Table

from posventa.core import Id, UTCDateTime, metadata

#: Web console logins. Kept in the database, not in a process, so any of several
#: ``posventa serve`` processes behind a load balancer can serve the next request.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", Id, primary_key=True),
    #: sha256 of the cookie value; the cookie itself is never stored, so a leaked
    #: database dump cannot be replayed as a login.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    #: The synchronizer token every form of this session must echo.
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)
