"""The inbox pipeline's steps: small functions over one batch, inside its transaction.

``core.inbox.InboxService`` runs them in this order for each group-commit batch:

1. ``dedupe``: drop messages already stored (``existing_messages``) or repeated in the batch;
2. ``identify``: who wrote (creating contacts and identities on first contact);
3. ``hooked_contacts`` / ``hand_to_hooks``: a conversation a hook owns (a running survey)
   may consume the message;
4. thread: which case each message joins (``core.case_threading``), ``new_case_row`` for
   the ones it opens, ``message_row`` for every message;
5. write: ``write_new_cases`` (with ``start_clocks``), the reopened cases, the messages,
   ``write_attachments``, ``touch_cases``;
6. replies: ``ack`` of a new case, ``reopened_notice``, ``desk_mirror``, and
   ``answer_choice`` for buttons the bot asked (answered by ``core.inbox_hooks.ChoiceAnswers``);
7. ``share_receipts``: copies of a message within the batch get the first copy's receipt.

Every step works on the whole batch or one message of it; none commits.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, Update, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.budget import FOLLOW_PROCESS
from posventa.core.business_hours import CONTACT_TIMEZONE_ATTRIBUTE, customer_zone, opening_notice
from posventa.core.case_threading import CaseRef, JoinableCases
from posventa.core.case_type_question import CASE_TYPE_QUESTION, case_type_choices
from posventa.core.contacts.identities import KnownIdentity, Newcomer, identify as identify_contacts
from posventa.core.domain import Activity, Author, CaseType, ChannelName, Choice, Direction, InboundMessage, Receipt
from posventa.core.inbox_hooks import AnsweredCase, ChoiceAnswers, ChoiceContext, ConversationHook, HookContext
from posventa.core.outgoing import ComposedMessage, Recipient
from posventa.core.persistence.bulk import insert_ids
from posventa.core.persistence.lookup import Match, any_key, by_unique_key, key_values
from posventa.core.persistence.schema import attachments, case_events, cases, contacts, messages
from posventa.core.sla import SlaPolicy, opened
from posventa.core.sla_store import CaseClockStore
from posventa.core.texts import pick_language, text

MAX_TITLE = 300
MAX_TEXT = 200_000

_IN = Direction.IN.value
_CUSTOMER = Author.CUSTOMER.value


def ident_key(m: InboundMessage) -> tuple[str, str]:
    """Who sent ``m``: (channel, sender)."""
    # ``_value_``: the enum's ``value`` is a property, and this runs several times per message.
    return (m.channel._value_, m.sender)


# --- 1. dedupe ---------------------------------------------------------------------------------

def _inbound_messages_query(match: Match) -> Select[Any]:
    return select(messages.c.id, messages.c.case_id, messages.c.external_id).where(
        messages.c.channel == bindparam("channel"), messages.c.direction == Direction.IN.value,
        match(messages.c.external_id))


async def existing_messages(conn: AsyncConnection,
                            batch: Sequence[InboundMessage]) -> dict[tuple[str, str], tuple[int, int | None]]:
    """(channel, external id) → (message id, case id) of the batch's messages already stored."""
    by_channel: dict[str, set[str]] = {}
    for m in batch:
        by_channel.setdefault(m.channel.value, set()).add(m.external_id[:500])
    found: dict[tuple[str, str], tuple[int, int | None]] = {}
    for ch, ids in by_channel.items():
        rows = await by_unique_key(conn, ids, _inbound_messages_query, channel=ch)
        for message_id, case_id, external_id in rows:
            found[(ch, external_id)] = (message_id, case_id)
    return found


def dedupe(batch: Sequence[InboundMessage], existing: Mapping[tuple[str, str], tuple[int, int | None]],
           ) -> tuple[list[Receipt | None], dict[tuple[str, str], int], list[int]]:
    """The receipts of messages already stored, the index of each message's first copy in
    the batch, and the indexes of the fresh messages (first copies not stored yet)."""
    receipts: list[Receipt | None] = [None] * len(batch)
    first_seen: dict[tuple[str, str], int] = {}
    fresh: list[int] = []
    for i, m in enumerate(batch):
        key = (m.channel._value_, m.external_id)
        if key in existing:
            mid, case_id = existing[key]
            receipts[i] = Receipt(message_id=mid, case_number=case_id, duplicate=True)
        elif key in first_seen:
            continue  # answered with the first copy's receipt (``share_receipts``)
        else:
            first_seen[key] = i
            fresh.append(i)
    return receipts, first_seen, fresh


# --- 2. identify -------------------------------------------------------------------------------

async def identify(conn: AsyncConnection, batch: Sequence[InboundMessage], now: datetime, *,
                   default_language: str) -> dict[tuple[str, str], KnownIdentity]:
    """Each sender's identity (``ident_key``), creating contacts on first contact."""
    wanted: dict[tuple[str, str], Newcomer] = {}
    for m in batch:
        key = ident_key(m)
        if key not in wanted:
            language = pick_language(m.language, default=default_language) if m.language else None
            wanted[key] = Newcomer(name=m.sender_name, language=language)
    return await identify_contacts(conn, wanted, now=now)


# --- 3. conversation hooks -----------------------------------------------------------------------

async def hooked_contacts(conn: AsyncConnection, hooks: Sequence[ConversationHook],
                          contact_ids: set[int]) -> list[set[int]]:
    """Per hook, the contacts in a conversation it owns (a running survey)."""
    return [await hook.active_contacts(conn, contact_ids) if contact_ids else set() for hook in hooks]


async def hand_to_hooks(conn: AsyncConnection, hooks: Sequence[ConversationHook], hooked: Sequence[set[int]],
                        m: InboundMessage, ident: KnownIdentity, language: str, now: datetime,
                        outgoing: list[tuple[ComposedMessage, CaseRef | None]]) -> tuple[bool, int | None]:
    """Whether a hook consumed ``m``, and the case it filed it under (if any)."""
    for hook, contacts in zip(hooks, hooked, strict=True):
        if ident.contact_id in contacts:
            ctx = HookContext(conn=conn, message=m, contact_id=ident.contact_id, identity_id=ident.id,
                              language=language, now=now)
            consumed = await hook.handle(ctx)
            outgoing.extend((o, None) for o in ctx.outgoing)
            if consumed:
                return True, ctx.case_id
    return False, None


# --- 4. rows -----------------------------------------------------------------------------------

def message_row(m: InboundMessage, ident: KnownIdentity, now: datetime) -> dict[str, Any]:
    """The ``messages`` row of a customer's message (its case id is set once known)."""
    return {
        "contact_id": ident.contact_id,
        "identity_id": ident.id,
        "channel": m.channel._value_,
        "direction": _IN,
        "author": _CUSTOMER,
        "author_name": (m.sender_name or "")[:200] or None,
        "external_id": m.external_id[:500],
        "text": m.text[:MAX_TEXT],
        "extra": _message_extra(m),
        "raw_path": m.raw_path,
        "created_at": m.received_at or now,
    }


def new_case_row(m: InboundMessage, ident: KnownIdentity, hints: JoinableCases, now: datetime,
                 new_cases: list[dict[str, Any]], language: str, follow_up_of: int | None) -> CaseRef:
    """Add the row of the case ``m`` opens (written in bulk by ``write_new_cases``)."""
    title = _title_for(m)
    new_cases.append(
        {
            "created_at": now,
            "updated_at": now,
            "organization_id": hints.organization_of.get(ident.contact_id),
            "contact_id": ident.contact_id,
            "case_type": CaseType.UNCLASSIFIED.value,
            "title": title,
            "description": m.text[:MAX_TEXT],
            "channel": m.channel.value,
            "language": language,
            "activity": Activity.PRELIMINARY_ANALYSIS.value,
            "budget_mode": FOLLOW_PROCESS,  # [cases] budget_mode (core/budget.py)
            "kb_problem": m.text[:MAX_TEXT],
            "reply_token": secrets.token_urlsafe(18),
            "self_served": False,
            "follow_up_of": follow_up_of,
        }
    )
    ref = CaseRef(new_index=len(new_cases) - 1, title=title, reply_token=new_cases[-1]["reply_token"])
    hints.opened(m, ident.contact_id, ref, follow_up_of)
    return ref


# --- 5. writes ---------------------------------------------------------------------------------

async def start_clocks(conn: AsyncConnection, sla: CaseClockStore, new_cases: list[dict[str, Any]],
                       now: datetime) -> list[SlaPolicy | None]:
    """Each new case's SLA policy and due times (one computation per policy per batch:
    every case of a batch opens at the same ``now``)."""
    setup = sla.setup
    org_names = await sla.organization_names(conn, {r["organization_id"] for r in new_cases
                                                    if r["organization_id"] is not None})
    columns_of: dict[str, dict[str, Any]] = {}
    policies: list[SlaPolicy | None] = []
    for row in new_cases:
        policy = setup.match(case_type=row["case_type"], channel=row["channel"],
                             organization=org_names.get(row["organization_id"]))
        columns = columns_of.get(policy.name)
        if columns is None:
            columns = columns_of[policy.name] = opened(policy, now, row["activity"])
        row.update(columns)
        policies.append(policy)
    return policies


async def write_new_cases(conn: AsyncConnection, new_cases: list[dict[str, Any]], now: datetime) -> list[int]:
    """Insert the new cases (bulk, ids in order) with their "opened" history entries."""
    if not new_cases:
        return []
    new_ids = await insert_ids(conn, cases, new_cases)
    events = [{"case_id": cid, "at": now, "actor": "customer", "kind": "opened", "to_value": row["channel"]}
              for cid, row in zip(new_ids, new_cases, strict=True)]
    if any(row["follow_up_of"] is not None for row in new_cases):
        # A follow-up's entry says which case it follows. Every row of the batch then has
        # the same columns (one bulk shape); a batch without follow-ups, the usual one,
        # carries none of them.
        for event, row in zip(events, new_cases, strict=True):
            event.update(case_history.says(case_history.FOLLOW_UP, case=row["follow_up_of"])
                         if row["follow_up_of"] is not None else case_history.NOTHING_MORE)
    # insert_ids for its one-parameter bulk insert (the ids themselves are not needed).
    await insert_ids(conn, case_events, events)
    return new_ids


async def write_messages(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the customer's messages (bulk, ids in order)."""
    return await insert_ids(conn, messages, rows) if rows else []


async def write_attachments(conn: AsyncConnection, message_ids: Sequence[int], indexes: Iterable[int],
                            batch: Sequence[InboundMessage]) -> None:
    """The files of each stored message (``indexes``: its position in the batch)."""
    rows = [
        {"message_id": mid, "filename": a.filename[:300], "content_type": a.content_type[:200], "size": a.size,
         "sha256": a.sha256, "inline": a.inline}
        for mid, i in zip(message_ids, indexes, strict=True)
        for a in batch[i].attachments
    ]
    if rows:
        await conn.execute(insert(attachments), rows)


@functools.cache
def _touch_cases_statement(dialect: str) -> Update:
    return update(cases).where(any_key(dialect, cases.c.id, "case_ids")).values(updated_at=bindparam("now"))


async def touch_cases(conn: AsyncConnection, sla: CaseClockStore | None, case_ids: set[int], now: datetime) -> None:
    """The customer wrote in these cases: resume their SLA clocks, or just mark them updated."""
    if not case_ids:
        return
    if sla is not None:
        await sla.customer_wrote(conn, case_ids, now)
        return
    dialect = conn.dialect.name
    await conn.execute(_touch_cases_statement(dialect),
                       {"case_ids": key_values(dialect, sorted(case_ids)), "now": now})


# --- 6. replies --------------------------------------------------------------------------------

def outside_hours(sla: CaseClockStore | None, policy: SlaPolicy | None, now: datetime, language: str,
                  cache: dict[tuple[str, str, str], str | None], customer_tz: ZoneInfo | None = None) -> str | None:
    """The "we open at ..." line of an acknowledgement, when configured and closed now, in
    the customer's time zone where known."""
    if policy is None or sla is None or not sla.setup.outside_hours_notice:
        return None
    key = (policy.calendar.name, language, customer_tz.key if customer_tz else "")
    if key not in cache:
        cache[key] = opening_notice(policy.calendar, now, language, customer_tz=customer_tz)
    return cache[key]


async def customer_zones(conn: AsyncConnection, sla: CaseClockStore | None, now: datetime,
                         policies: Sequence[SlaPolicy | None], contact_ids: Iterable[int]) -> dict[int, ZoneInfo]:
    """The new cases' customers' time zones (the contact's ``timezone`` attribute), read
    only when an acknowledgement will say when the team opens."""
    ids = sorted(set(contact_ids))
    if (not ids or sla is None or not sla.setup.outside_hours_notice
            or all(p is None or p.calendar.is_open(now) for p in policies)):
        return {}
    rows = await conn.execute(select(contacts.c.id, contacts.c.attributes)
                              .where(contacts.c.id.in_(ids), contacts.c.attributes.is_not(None)))
    zones = {}
    for row in rows:
        attributes = row.attributes if isinstance(row.attributes, dict) else {}
        tz = customer_zone(attributes.get(CONTACT_TIMEZONE_ATTRIBUTE))
        if tz is not None:
            zones[row.id] = tz
    return zones


def message_zone(m: InboundMessage) -> ZoneInfo | None:
    """The time zone the message's channel says the customer is in (the web chat browser's)."""
    return customer_zone(m.meta.get("timezone"))


def ack(recipient: Recipient, case_id: int, ref: CaseRef, m: InboundMessage, language: str,
        notice: str | None = None) -> ComposedMessage:
    """The acknowledgement of a new case; it asks the type when unknown (``core.case_type_question``)."""
    body = text("ack_new_case", language, number=case_id)
    if notice:
        body = f"{body}\n{notice}"
    choices: tuple[Choice, ...] = ()
    question = None
    if ref.case_type == CaseType.UNCLASSIFIED.value:
        body = f"{body}\n{text('ask_case_type', language)}"
        choices = case_type_choices(language)
        question = f"{CASE_TYPE_QUESTION}:{case_id}"
    return ComposedMessage(
        recipient=recipient,
        text=body,
        kind="ack",
        case_id=case_id,
        case_title=ref.title,
        language=language,
        automatic=True,
        choices=choices,
        question=question,
        in_reply_to=m.meta.get("message_id") or (m.external_id if m.channel == ChannelName.EMAIL else None),
        references=tuple(m.thread.references) + ((m.external_id,) if m.channel == ChannelName.EMAIL else ()),
        reply_token=ref.reply_token,
    )


def reopened_notice(recipient: Recipient, case_id: int, ref: CaseRef | None, language: str) -> ComposedMessage:
    """Told to the customer whose message reopened a closed case."""
    return ComposedMessage(
        recipient=recipient, kind="bot", case_id=case_id, case_title=ref.title if ref else None, language=language,
        automatic=True, reply_token=ref.reply_token if ref else None,
        text=text("case_reopened", language, number=case_id))


def desk_mirror(m: InboundMessage, message_id: int, case_id: int, ref: CaseRef | None, language: str,
                is_new: bool) -> ComposedMessage:
    """The customer's message, mirrored to the agents' desk."""
    return ComposedMessage(
        recipient=Recipient(ChannelName.DESK, str(case_id)),
        text=m.text[:4000],
        kind="desk",
        case_id=case_id,
        case_title=ref.title if ref else None,
        author=Author.CUSTOMER,
        author_name=m.sender_name,
        language=language,
        extra={"channel": m.channel.value, "message_id": str(message_id), "new_case": "1" if is_new else ""},
    )


async def answer_choice(conn: AsyncConnection, answers: Mapping[str, ChoiceAnswers], m: InboundMessage,
                        ident: KnownIdentity, language: str, now: datetime) -> list[ComposedMessage]:
    """A button the bot itself asked (``"<question>:<case>"``), answered by the question's owner."""
    assert m.choice is not None
    kind, _, target = m.choice.question.partition(":")
    owner = answers.get(kind)
    if owner is None or not target.isdigit():
        return []
    row = (
        await conn.execute(select(cases.c.id, cases.c.contact_id, cases.c.case_type, cases.c.activity, cases.c.title,
                                  cases.c.reply_token, cases.c.self_served).where(cases.c.id == int(target)))
    ).first()
    if row is None or row.contact_id != ident.contact_id:
        return []  # a button for someone else's case: ignore it
    case = AnsweredCase(row.id, row.contact_id, row.case_type, row.activity, row.title, row.reply_token,
                        row.self_served)
    return await owner.answer(ChoiceContext(conn=conn, message=m, case=case, language=language, now=now,
                                            recipient=Recipient(m.channel, m.sender, ident.id, ident.contact_id)))


# --- 7. receipts -------------------------------------------------------------------------------

def share_receipts(batch: Sequence[InboundMessage], receipts: list[Receipt | None],
                   first_seen: Mapping[tuple[str, str], int]) -> list[Receipt]:
    """Copies of a message within the batch share the first copy's receipt."""
    for i, m in enumerate(batch):
        if receipts[i] is None:
            first = receipts[first_seen[(m.channel.value, m.external_id)]]
            assert first is not None
            receipts[i] = Receipt(first.message_id, first.case_number, duplicate=True)
    return [r for r in receipts if r is not None]


def _message_extra(m: InboundMessage) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if m.choice is not None:
        extra["choice"] = {"question": m.choice.question, "value": m.choice.value}
    if m.original_text is not None and m.original_text != m.text:
        extra["original"] = m.original_text[:MAX_TEXT]
    return extra or None


def _title_for(m: InboundMessage) -> str:
    title = " ".join((m.subject or "").split())
    if not title:
        title = " ".join(m.text.split())[:80] or "(sin texto)"
    return title[:MAX_TITLE]
