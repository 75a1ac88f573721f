"""Read-only queries only the console needs (the rest comes from ``CaseService``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from core.persistence import Database
from core.persistence.schema import attachments, cases, categories, messages


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    id: int
    case_id: int | None
    filename: str
    content_type: str
    size: int
    sha256: str


async def attachment(db: Database, attachment_id: int) -> StoredAttachment | None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(
            select(attachments, messages.c.case_id).join(messages, messages.c.id == attachments.c.message_id)
            .where(attachments.c.id == attachment_id))).first()
    if row is None:
        return None
    return StoredAttachment(id=row.id, case_id=row.case_id, filename=row.filename, content_type=row.content_type,
                            size=row.size, sha256=row.sha256)


async def known_sectors(db: Database, limit: int = 200) -> list[str]:
    """Sectors already used, offered as suggestions (the field stays free text)."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(cases.c.sector).where(cases.c.sector.is_not(None))
                                  .group_by(cases.c.sector).order_by(cases.c.sector).limit(limit))
        return [r[0] for r in rows]


async def cases_per_type_and_category(db: Database) -> dict[str, Any]:
    """Counts for the manager's chart: {type: {category name: n}}."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(
            select(cases.c.case_type, categories.c.name, func.count())
            .select_from(cases.outerjoin(categories, categories.c.id == cases.c.category_id))
            .group_by(cases.c.case_type, categories.c.name))).all()
    out: dict[str, dict[str, int]] = {}
    for case_type, category, count in rows:
        out.setdefault(case_type, {})[category or "(no category)"] = count
    return out
