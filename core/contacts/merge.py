"""Merging two contacts (or two organizations) into one, in one transaction.

Everything of the absorbed contact moves to the kept one: identities, cases (with their
messages and history), survey sales and answers, web chat sessions and the contact's own
history. The absorbed contact stays as a pointer (``merged_into_id``), so old links
still lead somewhere, and both records say who merged what.

Two processes merging at once on PostgreSQL: both contacts are locked (``FOR UPDATE``)
in id order, so two merges over the same pair wait for each other instead of
deadlocking, and the second sees the first's result (READ COMMITTED re-reads a locked
row) and refuses to merge a contact that is gone. SQLite has one writer at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.contacts import history
from posventa.core.contacts.identities import reindex
from posventa.core.errors import NotFound, ValidationError, explain
from posventa.core.persistence.schema import (
    case_events,
    cases,
    contact_events,
    contact_identities,
    contacts,
    messages,
    organization_domains,
    organizations,
    rule_instances,
    sales,
    webchat_sessions,
)


@dataclass(frozen=True, slots=True)
class ContactMoves:
    """What a contact merge moves (or would move, in a preview)."""

    identities: int
    cases: int
    messages: int
    sales: int
    survey_instances: int
    webchat_sessions: int
    history: int


#: (table, its contact column, the ContactMoves field it counts)
_CONTACT_REFERENCES: tuple[tuple[Table, str, str], ...] = (
    (contact_identities, "contact_id", "identities"),
    (cases, "contact_id", "cases"),
    (messages, "contact_id", "messages"),
    (sales, "contact_id", "sales"),
    (rule_instances, "contact_id", "survey_instances"),
    (webchat_sessions, "contact_id", "webchat_sessions"),
    (contact_events, "contact_id", "history"),
)
#: Fields the kept contact takes from the absorbed one where it has none.
_FILLED = ("name", "email", "phone", "language", "organization_id", "notes")


async def merge_contacts(conn: AsyncConnection, *, target_id: int, source_id: int, actor: str, now: datetime,
                         dry_run: bool = False) -> ContactMoves:
    """Move everything of ``source_id`` into ``target_id`` (``dry_run``: only count)."""
    target, source = await _lock_pair(conn, contacts, "contact", target_id, source_id)
    counts = {}
    for table, column, name in _CONTACT_REFERENCES:
        counts[name] = (await conn.execute(select(func.count()).select_from(table).where(
            table.c[column] == source_id))).scalar_one()
    moves = ContactMoves(**counts)
    if dry_run:
        return moves
    moved_cases = list((await conn.execute(select(cases.c.id).where(cases.c.contact_id == source_id))).scalars())
    for table, column, _ in _CONTACT_REFERENCES:
        await conn.execute(update(table).where(table.c[column] == source_id).values({column: target_id}))
    fill = {f: getattr(source, f) for f in _FILLED if getattr(target, f) is None and getattr(source, f) is not None}
    if source.attributes:
        fill["attributes"] = {**source.attributes, **(target.attributes or {})}
    if fill:
        await conn.execute(update(contacts).where(contacts.c.id == target_id).values(**fill))
    await conn.execute(update(contacts).where(contacts.c.id == source_id).values(merged_into_id=target_id))
    await conn.execute(insert(contact_events), [
        {"contact_id": target_id, "at": now, "actor": actor,
         **history.entry("merged", source=source_id, **asdict(moves))},
        {"contact_id": source_id, "at": now, "actor": actor, **history.entry("merged_into", target=target_id)},
    ])
    if moved_cases:
        await conn.execute(insert(case_events), [
            {"case_id": cid, "at": now, "actor": actor, "kind": "contact_merged", "from_value": str(source_id),
             "to_value": str(target_id),
             **case_history.says(case_history.CONTACT_MERGED, source=source_id, target=target_id)}
            for cid in moved_cases])
    await reindex(conn, [target_id, source_id])
    return moves


@dataclass(frozen=True, slots=True)
class OrganizationMoves:
    contacts: int
    cases: int
    domains: int


_ORGANIZATION_REFERENCES: tuple[tuple[Table, str], ...] = (
    (contacts, "contacts"), (cases, "cases"), (organization_domains, "domains"))


async def merge_organizations(conn: AsyncConnection, *, target_id: int, source_id: int, actor: str,
                              now: datetime, dry_run: bool = False) -> OrganizationMoves:
    """Move the contacts, cases and email domains of ``source_id`` into ``target_id``."""
    target, source = await _lock_pair(conn, organizations, "organization", target_id, source_id)
    counts = {name: (await conn.execute(select(func.count()).select_from(table).where(
        table.c.organization_id == source_id))).scalar_one() for table, name in _ORGANIZATION_REFERENCES}
    moves = OrganizationMoves(**counts)
    if dry_run:
        return moves
    moved_cases = list((await conn.execute(select(cases.c.id).where(cases.c.organization_id == source_id))).scalars())
    for table, _ in _ORGANIZATION_REFERENCES:
        await conn.execute(update(table).where(table.c.organization_id == source_id)
                           .values(organization_id=target_id))
    fill = {f: getattr(source, f) for f in ("tax_id", "notes") if getattr(target, f) is None and getattr(source, f)}
    if fill:
        await conn.execute(update(organizations).where(organizations.c.id == target_id).values(**fill))
    await conn.execute(update(organizations).where(organizations.c.id == source_id).values(merged_into_id=target_id))
    if moved_cases:
        await conn.execute(insert(case_events), [
            {"case_id": cid, "at": now, "actor": actor, "kind": "organization_merged", "from_value": str(source_id),
             "to_value": str(target_id),
             **case_history.says(case_history.ORGANIZATION_MERGED, source=source_id, target=target_id)}
            for cid in moved_cases])
    return moves


async def _lock_pair(conn: AsyncConnection, table: Table, noun: str, target_id: int,
                     source_id: int) -> tuple[Any, Any]:
    """The target's and the source's rows of a merge, locked in id order (a fixed order: no
    deadlock between two merges of the same pair, whichever way round they were asked),
    once both may merge: two records, both there, neither merged away nor (where the
    table has ``erased_at``) erased. ``noun`` ("contact" or "organization") names the
    record and its field (``<noun>_id``) in the errors."""
    field = f"{noun}_id"
    # Each refusal is its own sentence per record (es and pt words agree with the noun).
    contact = noun == "contact"
    if target_id == source_id:
        raise ValidationError(explain("merge_contact_itself", "a contact cannot be merged into itself") if contact
                              else explain("merge_organization_itself", "an organization cannot be merged into itself"),
                              field=field)
    rows = {r.id: r for r in await conn.execute(
        select(table).where(table.c.id.in_(sorted((target_id, source_id)))).order_by(table.c.id).with_for_update())}
    target, source = rows.get(target_id), rows.get(source_id)
    if target is None:
        raise NotFound(explain("contact_not_found", "contact %(id)s not found", id=target_id) if contact
                       else explain("organization_not_found", "organization %(id)s not found", id=target_id))
    if source is None:
        raise ValidationError(explain("contact_missing", "contact %(id)s does not exist", id=source_id) if contact
                              else explain("organization_missing", "organization %(id)s does not exist", id=source_id),
                              field=field)
    for row, row_field in ((target, "id"), (source, field)):
        if row.merged_into_id is not None:
            raise ValidationError(
                explain("contact_merged_already", "contact %(id)s was already merged into contact #%(into)s",
                        id=row.id, into=row.merged_into_id) if contact
                else explain("organization_merged_already", "organization %(id)s was already merged into #%(into)s",
                             id=row.id, into=row.merged_into_id), field=row_field)
        if "erased_at" in table.c and row.erased_at is not None:
            raise ValidationError(explain("contact_erased", "contact %(id)s was erased", id=row.id), field=row_field)
    return target, source
