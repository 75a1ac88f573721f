"""Privacy requests: everything held about a contact as one JSON document, and erasure.

Erasure keeps the records that others depend on and removes the person from them:
message texts and case texts are replaced, attachments and raw mails are deleted from
disk, identities and web chat sessions are removed, the name becomes "erased contact
#id" (stored in English; the console shows it in its reader's language). Survey scores
stay, attached to the anonymous contact, so sellers' commission totals do not change.
The erasure is recorded (who, when) in the contact's and each case's history.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.attachments import AttachmentStore
from posventa.core.contacts import history
from posventa.core.contacts.identities import reindex
from posventa.core.domain import OutboxStatus
from posventa.core.errors import ErrorText, NotFound, ValidationError, explain
from posventa.core.persistence.schema import (
    attachments,
    case_events,
    cases,
    contact_events,
    contact_identities,
    contacts,
    message_edits,
    messages,
    outbox,
    rule_instances,
    sales,
    survey_answers,
    survey_questions,
    webchat_sessions,
)

log = logging.getLogger(__name__)

#: What erasure leaves in its cases' titles and descriptions, its messages' texts and its
#: outbox entries' payloads; and why an entry that still waited was failed (its
#: ``last_error``). Stored in English, as the API reads them; the console shows them in its
#: reader's language (``erasure_words`` recognises them).
ERASED = explain("erased_text", "[erased at the customer's request]")
ERASED_TEXT = str(ERASED)
ERASED_UNSENT = explain("erased_unsent", "erased at the customer's request")
_PENDING = (OutboxStatus.QUEUED.value, OutboxStatus.AWAITING_RETRY.value, OutboxStatus.INFLIGHT.value)


def erased_label(contact_id: int) -> ErrorText:
    """What an erased contact is called: its stored name is the English (``erased_name``),
    the console shows it in the reader's language (``is_erased_name`` finds it)."""
    return explain("contact_erased_name", "erased contact #%(id)s", id=contact_id)


def erased_name(contact_id: int) -> str:
    return str(erased_label(contact_id))


def is_erased_name(name: object, contact_id: object) -> bool:
    """Whether ``name`` is the name erasure gave contact ``contact_id``."""
    return isinstance(contact_id, int) and name == erased_name(contact_id)


def erasure_words(text: object, *, erased: bool) -> ErrorText | None:
    """Which of erasure's stored words ``text`` is (``ERASED``, ``ERASED_UNSENT``), or None.
    Only for an erased contact's case: a customer may have typed the same words."""
    if not erased:
        return None
    return next((words for words in (ERASED, ERASED_UNSENT) if text == str(words)), None)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def export_contact(conn: AsyncConnection, contact_id: int) -> dict[str, Any]:
    """Everything held about the contact: identities, cases with their messages (agents'
    internal notes included), attachment list, history, sales, survey answers."""
    contact = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
    if contact is None:
        raise NotFound(explain("contact_not_found", "contact %(id)s not found", id=contact_id))
    identities = [{"kind": r.channel, "address": r.address, "verified": bool(r.verified),
                   "created_at": _iso(r.created_at)}
                  for r in await conn.execute(select(contact_identities).where(
                      contact_identities.c.contact_id == contact_id).order_by(contact_identities.c.id))]
    case_rows = (await conn.execute(select(cases).where(cases.c.contact_id == contact_id).order_by(cases.c.id))).all()
    case_ids = [c.id for c in case_rows]
    message_rows = (await conn.execute(select(messages).where(or_(
        messages.c.case_id.in_(case_ids), messages.c.contact_id == contact_id)).order_by(messages.c.id))).all()
    files: dict[int, list[dict[str, Any]]] = {}
    if message_rows:
        for a in await conn.execute(select(attachments).where(
                attachments.c.message_id.in_([m.id for m in message_rows]))):
            files.setdefault(a.message_id, []).append({"filename": a.filename, "content_type": a.content_type,
                                                       "size": a.size, "sha256": a.sha256})
    by_case: dict[int | None, list[dict[str, Any]]] = {}
    for m in message_rows:
        by_case.setdefault(m.case_id if m.case_id in case_ids else None, []).append({
            "id": m.id, "channel": m.channel, "direction": m.direction, "author": m.author,
            "author_name": m.author_name, "text": m.text, "created_at": _iso(m.created_at),
            "attachments": files.get(m.id, [])})
    events: dict[int, list[dict[str, Any]]] = {}
    if case_ids:
        for e in await conn.execute(select(case_events).where(case_events.c.case_id.in_(case_ids))
                                    .order_by(case_events.c.id)):
            events.setdefault(e.case_id, []).append(case_history.read(e))
    answers = [{"sale": r.external_id, "seller": r.seller, "question": r.code, "score": r.score,
                "answered_at": _iso(r.answered_at)}
               for r in await conn.execute(
                   select(sales.c.external_id, sales.c.seller, survey_questions.c.code, survey_answers.c.score,
                          survey_answers.c.answered_at)
                   .select_from(survey_answers.join(rule_instances, rule_instances.c.id == survey_answers.c.instance_id)
                                .join(sales, sales.c.id == rule_instances.c.sale_id)
                                .join(survey_questions, survey_questions.c.id == survey_answers.c.question_id))
                   .where(rule_instances.c.contact_id == contact_id).order_by(survey_answers.c.id))]
    return {
        "contact": {"id": contact.id, "name": contact.name, "email": contact.email, "phone": contact.phone,
                    "language": contact.language, "organization_id": contact.organization_id,
                    "notes": contact.notes, "attributes": contact.attributes or {},
                    "created_at": _iso(contact.created_at), "merged_into_id": contact.merged_into_id,
                    "erased_at": _iso(contact.erased_at)},
        "identities": identities,
        "web_chat_sessions": [{"name": r.name, "email": r.email, "language": r.language,
                               "created_at": _iso(r.created_at), "last_seen_at": _iso(r.last_seen_at)}
                              for r in await conn.execute(select(webchat_sessions).where(
                                  webchat_sessions.c.contact_id == contact_id))],
        "cases": [{"number": c.id, "title": c.title, "description": c.description, "channel": c.channel,
                   "activity": c.activity, "created_at": _iso(c.created_at), "closed_at": _iso(c.closed_at),
                   "messages": by_case.get(c.id, []), "history": events.get(c.id, [])} for c in case_rows],
        "messages_outside_cases": by_case.get(None, []),
        "sales": [{"external_id": r.external_id, "seller": r.seller, "closed_at": _iso(r.closed_at)}
                  for r in await conn.execute(select(sales).where(sales.c.contact_id == contact_id)
                                              .order_by(sales.c.id))],
        "survey_answers": answers,
        "history": [history.read(e) for e in await conn.execute(select(contact_events).where(
            contact_events.c.contact_id == contact_id).order_by(contact_events.c.id))],
    }


async def erase_contact(conn: AsyncConnection, contact_id: int, *, actor: str, now: datetime) -> tuple[list[str], list[str]]:
    """Erase the contact inside the caller's transaction. Returns the attachment hashes and
    raw payload references to delete from disk once it has committed (a rollback must
    not leave rows pointing at deleted files)."""
    row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id).with_for_update())).first()
    if row is None:
        raise NotFound(explain("contact_not_found", "contact %(id)s not found", id=contact_id))
    if row.erased_at is not None:
        raise ValidationError(explain("contact_erased_already", "contact %(id)s was already erased", id=contact_id),
                              field="id")
    if row.merged_into_id is not None:
        raise ValidationError(explain("erase_merged_contact", "contact %(id)s was merged into contact #%(into)s: "
                                      "erase that one", id=contact_id, into=row.merged_into_id), field="id")
    case_ids = list((await conn.execute(select(cases.c.id).where(cases.c.contact_id == contact_id))).scalars())
    addresses = list((await conn.execute(select(contact_identities.c.address).where(
        contact_identities.c.contact_id == contact_id))).scalars())
    mine = or_(messages.c.case_id.in_(case_ids), messages.c.contact_id == contact_id)
    message_rows = (await conn.execute(select(messages.c.id, messages.c.raw_path).where(mine))).all()
    message_ids = [m.id for m in message_rows]
    raw_refs = [m.raw_path for m in message_rows if m.raw_path]
    hashes: list[str] = []
    if message_ids:
        hashes = sorted(set((await conn.execute(select(attachments.c.sha256).where(
            attachments.c.message_id.in_(message_ids)))).scalars()))
        await conn.execute(delete(attachments).where(attachments.c.message_id.in_(message_ids)))
        await conn.execute(delete(message_edits).where(message_edits.c.message_id.in_(message_ids)))
        await conn.execute(update(messages).where(messages.c.id.in_(message_ids)).values(
            text=ERASED_TEXT, author_name=None, extra=None, raw_path=None))
        # Files whose content another customer's attachment shares stay on disk.
        if hashes:
            shared = set((await conn.execute(select(attachments.c.sha256).where(
                attachments.c.sha256.in_(hashes)))).scalars())
            hashes = [h for h in hashes if h not in shared]
    if case_ids:
        await conn.execute(update(cases).where(cases.c.id.in_(case_ids)).values(
            title=ERASED_TEXT, description=ERASED_TEXT, kb_problem=None, kb_answer=None, kb_hotfix=None,
            kb_application=None, updated_at=now))
        # A failed delivery's entry names the address it went to, and the channel's
        # error may quote it: kept as an entry of its kind, without what it said.
        await conn.execute(update(case_events).where(
            case_events.c.case_id.in_(case_ids), case_events.c.kind == "delivery_failed").values(
            **case_history.NOTHING_MORE))
        await conn.execute(insert_events(case_ids, actor, now))
    # What waits in the outbox for this customer is not sent any more; what was sent
    # keeps its delivery record without the text.
    in_outbox = or_(outbox.c.case_id.in_(case_ids), outbox.c.recipient.in_(addresses)) if addresses \
        else outbox.c.case_id.in_(case_ids)
    await conn.execute(update(outbox).where(in_outbox, outbox.c.status.in_(_PENDING)).values(
        status=OutboxStatus.FAILED.value, last_error=str(ERASED_UNSENT), lease_until=None))
    await conn.execute(update(outbox).where(in_outbox).values(payload={"text": ERASED_TEXT}, recipient="[erased]"))
    await conn.execute(delete(webchat_sessions).where(webchat_sessions.c.contact_id == contact_id))
    await conn.execute(delete(contact_identities).where(contact_identities.c.contact_id == contact_id))
    await conn.execute(update(contacts).where(contacts.c.id == contact_id).values(
        name=erased_name(contact_id), email=None, phone=None, notes=None, attributes=None, organization_id=None,
        erased_at=now))
    # Earlier history entries may name addresses (an identity added: "email: ana@..."): kept
    # as events of their kind, without what they said.
    await conn.execute(update(contact_events).where(contact_events.c.contact_id == contact_id).values(
        code=None, params=None, detail=None))
    await conn.execute(contact_events.insert().values(
        contact_id=contact_id, at=now, actor=actor[:160],
        **history.entry("erased", cases=len(case_ids), messages=len(message_ids),
                      # the files deleted after commit: attachments and raw mails, as the CLI and API say
                      files=len(hashes) + len(raw_refs))))
    await reindex(conn, [contact_id])
    return hashes, raw_refs


def insert_events(case_ids: list[int], actor: str, now: datetime):
    return case_events.insert().values([
        {"case_id": cid, "at": now, "actor": actor[:160], "kind": "erased",
         **case_history.says(case_history.CONTACT_ERASED)}
        for cid in case_ids])


def delete_files(store: AttachmentStore, hashes: list[str], raw_refs: list[str]) -> int:
    """After commit: the files of an erased contact. Returns how many were removed."""
    removed = 0
    for digest in hashes:
        try:
            removed += store.delete(digest)
        except (OSError, ValueError) as exc:
            log.warning("erasure: attachment %s not deleted: %s", digest[:12], type(exc).__name__)
    for ref in raw_refs:
        try:
            store.erase_raw(ref)
            removed += 1
        except (OSError, ValueError) as exc:
            log.warning("erasure: raw payload not deleted: %s", type(exc).__name__)
    return removed
