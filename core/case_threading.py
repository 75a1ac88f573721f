"""Which case a customer's message joins: the one rule, for every channel.

Named ``case_threading`` rather than ``threading``: a module ``core/threading.py`` would
read as the standard library's ``threading`` at every import site and in every traceback,
and shadow it for any tool run with ``core/`` on ``sys.path``.

Channels never decide this themselves: they hand messages to the inbox
(``core.inbox``), which calls ``choose_case`` for each message of a batch, and they ask
the inbox (``Inbox.open_case_of``) which case a chat's next message would join.

The rules:

- **thread hints** name a case (``named_case``): a reply token (an unguessable
  capability: it counts whoever writes), an email's ``References``/``In-Reply-To``, and a
  ``[#n]`` subject tag. Headers and tags only count for the case's own contact, so a
  forwarded newsletter can never join a stranger's case;
- a case is *open* while it is not closed; a chat message (``CHAT_CHANNELS``) with no
  thread hint joins the contact's newest open case (``open_case_condition``). Email opens
  a new case per new conversation, as every mail desk does;
- a message to a case closed less than ``reopen_days`` ago **reopens** it: back to
  preliminary analysis, with a "reopened by the customer" history entry, the assigned
  agent kept (``write_reopened``), and its SLA targets started again as for a new case
  (``core.sla.reopened``, applied by the inbox with the clock store);
- a message to a case closed longer ago opens a **new case linked to it** (a follow-up);
  a second late reply joins that follow-up while it is open;
- an answer to a button the bot asked (a choice) never reopens anything: it is an answer
  to the bot, not a new request. Survey answers never reach these rules (the survey
  runner consumes them first);
- a reply to an **agent notification** (an email whose In-Reply-To/References name a
  notice's Message-ID, ``notice_message_id``) is no customer's message at all: it joins
  no case and opens none (``replies_to_notice``; the email intake drops it). Notices go
  to the team only, so only the team (an agent answering from their mail client, or their
  out-of-office robot) replies to one; the agent answers the customer in the console or
  on the Telegram desk, where they are signed in.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.contacts.identities import KnownIdentity
from posventa.core.domain import Activity, CaseType, ChannelName, InboundMessage
from posventa.core.persistence.lookup import any_key, key_values
from posventa.core.persistence.schema import case_events, cases, messages

DEFAULT_REOPEN_DAYS = 7

#: Channels where a message with no thread hint joins the contact's open case.
#: Email opens a new case per new conversation, as every mail desk does.
CHAT_CHANNELS = frozenset({ChannelName.TELEGRAM, ChannelName.WEBCHAT})


class AfterClose(enum.Enum):
    #: The message joins the closed case as it is (a button answer).
    JOIN = "join"
    REOPEN = "reopen"
    FOLLOW_UP = "follow_up"


#: Agent notifications' Message-IDs start so (``<pv.notice.…@our domain>``); customer
#: mail gets ``<pv.…>`` ids of another form (``core.outgoing``).
NOTICE_MESSAGE_ID_PREFIX = "<pv.notice."


def notice_message_id(token: str, domain: str) -> str:
    """The Message-ID of an agent notification's email (``token`` unguessable)."""
    return f"{NOTICE_MESSAGE_ID_PREFIX}{token}@{domain}>"


def is_notice_message_id(message_id: str | None) -> bool:
    return bool(message_id) and message_id.strip().lower().startswith(NOTICE_MESSAGE_ID_PREFIX)  # type: ignore[union-attr]


def replies_to_notice(references: Sequence[str]) -> bool:
    """True when a message's In-Reply-To/References name an agent notification: a reply
    from the team, never a customer's message (see the module's rules). A customer could
    only write such a header by hand, and then drops only their own mail."""
    return any(is_notice_message_id(ref) for ref in references)


def open_case_condition() -> ColumnElement[bool]:
    """The cases a message without a thread hint may join."""
    return cases.c.activity != Activity.CLOSED.value


def is_closed(activity: str) -> bool:
    return activity == Activity.CLOSED.value


def reopen_cutoff(now: datetime, reopen_days: int) -> datetime:
    """Cases closed at or after this instant are reopened by a customer's message."""
    return now - timedelta(days=reopen_days)


def after_close(closed_at: datetime | None, *, now: datetime, reopen_days: int, is_choice: bool) -> AfterClose:
    """What a customer's message to a closed case does."""
    if is_choice:
        return AfterClose.JOIN
    if closed_at is not None and closed_at >= reopen_cutoff(now, reopen_days):
        return AfterClose.REOPEN
    return AfterClose.FOLLOW_UP


async def open_case_id(conn: AsyncConnection, contact_id: int) -> int | None:
    """The case a chat message of ``contact_id`` with no thread hint joins: its newest open case."""
    return (await conn.execute(select(func.max(cases.c.id)).where(
        cases.c.contact_id == contact_id, open_case_condition()))).scalar()


@dataclass(slots=True)
class CaseRef:
    """A case known to the batch: an existing id, or an index into the new-case rows."""

    id: int | None = None
    new_index: int | None = None
    title: str = ""
    reply_token: str = ""
    case_type: str = CaseType.UNCLASSIFIED.value
    activity: str = Activity.PRELIMINARY_ANALYSIS.value
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OpenNew:
    """``choose_case``'s answer when the message opens a case (a follow-up of a closed one
    when ``follow_up_of`` is set). The inbox writes the row, then calls ``JoinableCases.opened``."""

    follow_up_of: int | None = None


@dataclass(slots=True)
class JoinableCases:
    """What one batch's messages may join, fetched in bulk (``thread_lookups``) and kept
    current while the batch is threaded: a case opened or reopened by one message is
    what the next message of the same contact joins."""

    by_token: dict[str, CaseRef] = field(default_factory=dict)
    #: reference → (contact id, case)
    by_reference: dict[str, tuple[int, CaseRef]] = field(default_factory=dict)
    by_number: dict[int, tuple[int, CaseRef]] = field(default_factory=dict)
    open_case: dict[int, CaseRef] = field(default_factory=dict)
    #: contact id → its newest case closed within the reopen window (chat contacts with
    #: no open case only).
    recently_closed: dict[int, CaseRef] = field(default_factory=dict)
    organization_of: dict[int, int | None] = field(default_factory=dict)
    #: Closed cases a message of this batch reopens: id → the case.
    reopened: dict[int, CaseRef] = field(default_factory=dict)
    #: closed case id → its open follow-up, so a second late reply joins the first one's case.
    open_follow_up: dict[int, CaseRef] = field(default_factory=dict)

    def opened(self, m: InboundMessage, contact_id: int, ref: CaseRef, follow_up_of: int | None) -> None:
        """A message of this batch opened ``ref``: later messages of the batch join it."""
        if follow_up_of is not None:
            self.open_follow_up[follow_up_of] = ref
        if m.channel in CHAT_CHANNELS:
            # A second message in the same batch joins this case, as it would a moment later.
            self.open_case[contact_id] = ref

    def reopen(self, case: CaseRef) -> CaseRef:
        """Mark a closed case reopened by this batch (written by ``write_reopened``); the
        batch's next messages then see it open."""
        assert case.id is not None
        self.reopened.setdefault(case.id, replace(case))
        case.activity = Activity.PRELIMINARY_ANALYSIS.value
        case.closed_at = None
        return case


def named_case(m: InboundMessage, contact_id: int, hints: JoinableCases) -> CaseRef | None:
    """The case the message's thread hints name, open or closed."""
    # A reply token is an unguessable capability: it counts whoever writes.
    if m.thread.reply_token and (c := hints.by_token.get(m.thread.reply_token)):
        return c
    # Headers and subject tags only count for the case's own contact, so a forwarded
    # newsletter can never join a stranger's case.
    for ref in m.thread.references:
        found = hints.by_reference.get(ref)
        if found and found[0] == contact_id:
            return found[1]
    found = hints.by_number.get(m.thread.case_number) if m.thread.case_number else None
    if found and found[0] == contact_id:
        return found[1]
    return None


def choose_case(m: InboundMessage, contact_id: int, hints: JoinableCases, *, now: datetime,
                reopen_days: int) -> CaseRef | OpenNew:
    """The case ``m`` joins, or ``OpenNew`` when it opens one."""
    named = named_case(m, contact_id, hints)
    if named is not None:
        if not is_closed(named.activity):
            return named
        verdict = after_close(named.closed_at, now=now, reopen_days=reopen_days, is_choice=m.choice is not None)
        if verdict is AfterClose.JOIN:
            return named
        if verdict is AfterClose.REOPEN:
            return hints.reopen(named)
        if c := hints.open_follow_up.get(named.id):  # type: ignore[arg-type]
            return c
        return OpenNew(follow_up_of=named.id)
    if not m.new_case and m.channel in CHAT_CHANNELS:
        if c := hints.open_case.get(contact_id):
            return c
        if m.choice is None and (c := hints.recently_closed.get(contact_id)):
            return hints.reopen(c)
    return OpenNew()


async def write_reopened(conn: AsyncConnection, hints: JoinableCases, now: datetime) -> None:
    """Reopen the cases this batch's messages reopened, with their history entries."""
    if not hints.reopened:
        return
    reopened = sorted(hints.reopened)
    # A reopened case is not resolved: the SLA report counts its next close.
    await conn.execute(update(cases).where(cases.c.id.in_(reopened)).values(
        activity=Activity.PRELIMINARY_ANALYSIS.value, closed_at=None, updated_at=now,
        resolution_minutes=None, resolution_met=None))
    await conn.execute(insert(case_events), [
        {"case_id": cid, "at": now, "actor": "customer", "kind": "reopened",
         "from_value": Activity.CLOSED.value, "to_value": Activity.PRELIMINARY_ANALYSIS.value,
         **case_history.says(case_history.REOPENED)} for cid in reopened])


_CASE_COLS = (cases.c.id, cases.c.contact_id, cases.c.title, cases.c.reply_token, cases.c.case_type,
              cases.c.activity, cases.c.closed_at)


def _ref(row: Any) -> CaseRef:
    # By position (the order of ``_CASE_COLS``): a Row's attribute lookup costs more.
    return CaseRef(row[0], None, row[2], row[3], row[4], row[5], row[6])


# Statements built once (see ``lookup.any_key``); what varies is bound at execution.

@functools.cache
def _open_cases_statement(dialect: str) -> Select[Any]:
    """Each given contact's newest case that is not closed."""
    latest = (
        select(cases.c.contact_id, func.max(cases.c.id).label("case_id"))
        .where(any_key(dialect, cases.c.contact_id, "contact_ids"), open_case_condition())
        .group_by(cases.c.contact_id)
        .subquery()
    )
    return select(*_CASE_COLS).join(latest, latest.c.case_id == cases.c.id)


@functools.cache
def _recently_closed_statement(dialect: str) -> Select[Any]:
    """Each given contact's cases closed since the reopen cutoff (newest last)."""
    return (select(*_CASE_COLS)
            .where(any_key(dialect, cases.c.contact_id, "contact_ids"), cases.c.activity == Activity.CLOSED.value,
                   cases.c.closed_at >= bindparam("cutoff"))
            .order_by(cases.c.closed_at))


async def thread_lookups(conn: AsyncConnection, batch: Sequence[InboundMessage],
                         identities: dict[tuple[str, str], KnownIdentity], *, reopen_since: datetime) -> JoinableCases:
    """The cases the batch's thread hints name, closed ones included (``choose_case``
    decides what a message to a closed case does), and the chat contacts' open cases.
    ``identities`` is keyed by (channel, sender)."""
    hints = JoinableCases()
    tokens = {m.thread.reply_token for m in batch if m.thread.reply_token}
    if tokens:
        for r in await conn.execute(select(*_CASE_COLS).where(cases.c.reply_token.in_(tokens))):
            hints.by_token[r.reply_token] = _ref(r)
    refs = {ref for m in batch for ref in m.thread.references[:50]}
    if refs:
        rows = await conn.execute(
            select(messages.c.external_id, *_CASE_COLS)
            .join(cases, cases.c.id == messages.c.case_id)
            .where(messages.c.channel == ChannelName.EMAIL.value, messages.c.external_id.in_(refs))
        )
        for r in rows:
            hints.by_reference[r.external_id] = (r.contact_id, _ref(r[1:]))
    numbers = {m.thread.case_number for m in batch if m.thread.case_number}
    if numbers:
        for r in await conn.execute(select(*_CASE_COLS).where(cases.c.id.in_(numbers))):
            hints.by_number[r.id] = (r.contact_id, _ref(r))
    named = [*hints.by_token.values(), *(c for _, c in hints.by_reference.values()),
             *(c for _, c in hints.by_number.values())]
    closed = {c.id for c in named if is_closed(c.activity)}
    if closed:
        rows = await conn.execute(select(*_CASE_COLS, cases.c.follow_up_of)
                                  .where(cases.c.follow_up_of.in_(sorted(closed)), open_case_condition())
                                  .order_by(cases.c.id))
        for r in rows:  # newest last: it wins
            hints.open_follow_up[r.follow_up_of] = _ref(r)
    chat_contacts = {identities[(m.channel._value_, m.sender)].contact_id for m in batch if m.channel in CHAT_CHANNELS}
    if chat_contacts:
        dialect = conn.dialect.name
        rows = await conn.execute(_open_cases_statement(dialect),
                                  {"contact_ids": key_values(dialect, chat_contacts)})
        for r in rows:
            hints.open_case[r[1]] = _ref(r)
        without_open = chat_contacts - hints.open_case.keys()
        if without_open:
            rows = await conn.execute(_recently_closed_statement(dialect),
                                      {"contact_ids": key_values(dialect, without_open), "cutoff": reopen_since})
            for r in rows:  # newest closed last: it wins
                hints.recently_closed[r[1]] = _ref(r)
    # Read with the identities, in this transaction: one statement fewer per batch.
    for m in batch:
        ident = identities[(m.channel._value_, m.sender)]
        hints.organization_of[ident.contact_id] = ident.organization_id
    return hints
