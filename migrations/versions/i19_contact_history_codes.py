"""contact history as message codes and values

``contact_events`` gains ``code`` and ``params``: an entry says what happened as a code
and the values that fill its sentence (core.contacts.history), so that the console shows
it in the reader's language; the English sentence in ``detail`` is then left empty.
The sentences stored before are read back into codes where they have the shape this
version wrote; one that does not keeps its text in ``detail``, shown as it is.

The codes and the old shapes are written out here, not imported: a migration must keep
doing what it did when core changes.

Revision ID: i19_contact_history_codes
Revises: i19_contact_terms_by_contact
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "i19_contact_history_codes"
down_revision = "i19_contact_terms_by_contact"
branch_labels = None
depends_on = None

_events = sa.table("contact_events", sa.column("id", sa.BigInteger), sa.column("kind", sa.String),
                   sa.column("code", sa.String), sa.column("params", sa.JSON), sa.column("detail", sa.Text))
#: What a merge moved, in the order ContactMoves had them.
_MOVES = ("identities", "cases", "messages", "sales", "survey_instances", "webchat_sessions", "history")
_ABSORBED = re.compile(r"absorbed contact #(\d+)(?:: (.+))?")
_MOVED = re.compile(r"(\d+) ([a-z ]+)")
_MERGED_INTO = re.compile(r"merged into contact #(\d+)")
_ERASED = re.compile(r"(\d+) cases, (\d+) messages, (\d+) files")
_IDENTITY = re.compile(r"(email|phone|telegram|webchat): (.+)", re.DOTALL)
_FIELDS = frozenset({"name", "language", "notes", "attributes", "organization_id"})


def _coded(kind: str, detail: str) -> tuple[str, dict[str, Any]] | None:
    """The code and values of a sentence the previous version stored, if it has its shape."""
    if kind in ("identity_added", "identity_removed") and (m := _IDENTITY.fullmatch(detail)):
        return f"contact_history_{kind}", {"channel": m[1], "address": m[2]}
    if kind == "updated":
        fields = detail.split(", ")
        if fields and set(fields) <= _FIELDS:
            return "contact_history_updated", {"fields": fields}
    if kind == "merged_into" and (m := _MERGED_INTO.fullmatch(detail)):
        return "contact_history_merged_into", {"target": int(m[1])}
    if kind == "erased" and (m := _ERASED.fullmatch(detail)):
        return "contact_history_erased", {"cases": int(m[1]), "messages": int(m[2]), "files": int(m[3])}
    if kind == "merged" and (m := _ABSORBED.fullmatch(detail)):
        moved = dict.fromkeys(_MOVES, 0)
        for part in (m[2].split(", ") if m[2] else []):
            n = _MOVED.fullmatch(part)
            name = n[2].replace(" ", "_") if n else None
            if name not in moved:
                return None
            moved[name] = int(n[1])
        return "contact_history_merged", {"source": int(m[1]), **moved}
    return None


def upgrade() -> None:
    op.add_column("contact_events", sa.Column("code", sa.String(length=60), nullable=True))
    op.add_column("contact_events", sa.Column("params", sa.JSON(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_events.c.id, _events.c.kind, _events.c.detail)
                        .where(_events.c.detail.is_not(None))).all()
    for row in rows:
        coded = _coded(row.kind, row.detail)
        if coded is not None:
            conn.execute(sa.update(_events).where(_events.c.id == row.id)
                         .values(code=coded[0], params=coded[1], detail=None))


def downgrade() -> None:
    # The sentences in English again, as the previous version wrote them.
    conn = op.get_bind()
    for row in conn.execute(sa.select(_events.c.id, _events.c.code, _events.c.params)
                            .where(_events.c.code.is_not(None))).all():
        conn.execute(sa.update(_events).where(_events.c.id == row.id).values(detail=_sentence(row.code, row.params)))
    with op.batch_alter_table("contact_events") as batch:
        batch.drop_column("params")
        batch.drop_column("code")


def _sentence(code: str, values: dict[str, Any]) -> str | None:
    if code in ("contact_history_identity_added", "contact_history_identity_removed"):
        return f"{values['channel']}: {values['address']}"
    if code == "contact_history_updated":
        return ", ".join(values["fields"])
    if code == "contact_history_merged_into":
        return f"merged into contact #{values['target']}"
    if code == "contact_history_erased":
        return f"{values['cases']} cases, {values['messages']} messages, {values['files']} files"
    if code == "contact_history_merged":
        summary = ", ".join(f"{values[k]} {k.replace('_', ' ')}" for k in _MOVES if values.get(k))
        return f"absorbed contact #{values['source']}" + (f": {summary}" if summary else "")
    return None
