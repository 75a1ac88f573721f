"""The inbound pipeline: every channel's messages become case messages here.

``InboxService.receive`` hands the message to the group-commit batcher
(``core.group_commit``) and waits: the batcher takes whatever has queued up and this
service processes it in ONE transaction: dedupe, identify the customer, hand to an
active conversation (survey) or thread into a case, enqueue the replies, commit. Every
waiter gets its receipt only after that commit, so an adapter never acknowledges
anything that is not durable.

The parts, each in one place:

- the batcher (queue, take, retry one by one): ``core.group_commit``;
- the pipeline steps, small functions in order: ``core.inbox_steps``;
- which case a message joins (thread hints, open case, reopen, follow-up):
  ``core.case_threading``; chat channels ask it through ``open_case_of``;
- the conversational answers, owned by their question: the case type
  (``core.case_type_question``), "did this solve it?" (``core.suggestions``), surveys
  (``core.surveys.runner``), through the hooks of ``core.inbox_hooks``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import inbox_steps as steps
from posventa.core.case_threading import (
    DEFAULT_REOPEN_DAYS,
    CaseRef,
    OpenNew,
    choose_case,
    open_case_id,
    reopen_cutoff,
    thread_lookups,
    write_reopened,
)
from posventa.core.case_type_question import CASE_TYPE_QUESTION, CaseTypeAnswers, typed_answer
from posventa.core.contacts.identities import KnownIdentity
from posventa.core.domain import CaseType, ChannelName, Direction, InboundMessage, Receipt, storable
from posventa.core.group_commit import GroupCommit
from posventa.core.inbox_hooks import ChoiceAnswers, ConversationHook, HookContext, StoredMessage
from posventa.core.inbox_steps import MAX_TEXT, MAX_TITLE, ident_key
from posventa.core.outgoing import Outgoing, ComposedMessage, Recipient
from posventa.core.persistence import Database
from posventa.core.persistence.schema import message_edits, messages
from posventa.core.ports import Clock
from posventa.core.sla import SlaPolicy
from posventa.core.sla_store import CaseClockStore
from posventa.core.suggestions import KB_FEEDBACK_QUESTION, KbFeedbackAnswers
from posventa.core.texts import pick_language

__all__ = ["CASE_TYPE_QUESTION", "KB_FEEDBACK_QUESTION", "MAX_TEXT", "MAX_TITLE", "ConversationHook",
           "HookContext", "InboxService", "StoredMessage"]

log = logging.getLogger(__name__)

_UNCLASSIFIED = CaseType.UNCLASSIFIED.value


class InboxService:
    """Implements the ``Inbox`` port."""

    def __init__(
        self,
        *,
        db: Database,
        outgoing: Outgoing,
        clock: Clock,
        default_language: str = "es",
        desk_enabled: bool = False,
        hooks: Sequence[ConversationHook] = (),
        choice_answers: Sequence[ChoiceAnswers] | None = None,
        max_batch: int = 256,
        on_commit: Callable[[frozenset[ChannelName]], None] | None = None,
        max_concurrent_batches: int = 1,
        sla: CaseClockStore | None = None,
        reopen_days: int = DEFAULT_REOPEN_DAYS,
    ) -> None:
        self._db = db
        #: The SLA clock: due times on new cases, next-response targets and resuming on
        #: customer messages, and the outside-hours notice in acknowledgements.
        self._sla = sla
        self._outgoing = outgoing
        self._clock = clock
        self._default_language = default_language
        self._desk_enabled = desk_enabled
        self._hooks = list(hooks)
        #: Buttons the bot asks, by question: by default the case type and the KB feedback.
        if choice_answers is None:
            choice_answers = (CaseTypeAnswers(sla=sla), KbFeedbackAnswers())
        self._choice_answers = {a.question: a for a in choice_answers}
        #: ``[cases] reopen_days``: see core.case_threading.
        self._reopen_days = reopen_days
        self._on_commit = on_commit
        self._listeners: list[Callable[[Sequence[StoredMessage]], Awaitable[None] | None]] = []
        # PostgreSQL: a second batch builds and sends its statements while the first one
        # waits for the server, which a single batcher leaves idle (a third of its time
        # at 500 busy web chats). SQLite has one writer: batches there go one at a time.
        self._batcher: GroupCommit[InboundMessage, Receipt, StoredMessage] = GroupCommit(
            commit=self._commit, after=self._notify, sender=ident_key, max_batch=max_batch,
            max_concurrent=max_concurrent_batches, name="inbox")
        self.batches_committed = 0
        self.messages_committed = 0

    @property
    def peak_batches_in_flight(self) -> int:
        return self._batcher.peak_batches_in_flight

    def add_hook(self, hook: ConversationHook) -> None:
        self._hooks.append(hook)

    def subscribe(self, listener: Callable[[Sequence[StoredMessage]], Awaitable[None] | None]) -> None:
        """Call ``listener`` with what each batch stored, after its commit."""
        self._listeners.append(listener)

    async def start(self) -> None:
        await self._batcher.start()

    async def stop(self) -> None:
        """Drain what is queued, then stop."""
        await self._batcher.stop()

    async def __aenter__(self) -> InboxService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def receive(self, message: InboundMessage) -> Receipt:
        return await self._batcher.submit(message)

    async def open_case_of(self, contact_id: int) -> int | None:
        """The case a chat message of ``contact_id`` with no thread hint would join now
        (``core.case_threading``), or None when it would open one."""
        async with self._db.reading() as conn:
            return await open_case_id(conn, contact_id)

    async def record_edit(self, channel: ChannelName, external_id: str, new_text: str) -> bool:
        """An edited customer message: keep the old text in history, show the new one."""
        now = self._clock.now()
        external_id, new_text = storable(external_id), storable(new_text)  # see InboundMessage
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    select(messages.c.id, messages.c.text).where(
                        messages.c.channel == ChannelName(channel).value,
                        messages.c.direction == Direction.IN.value,
                        messages.c.external_id == external_id,
                    )
                )
            ).first()
            if row is None:
                return False
            if row.text == new_text:
                return True
            await conn.execute(insert(message_edits).values(message_id=row.id, previous_text=row.text, at=now))
            await conn.execute(
                update(messages).where(messages.c.id == row.id).values(text=new_text[:MAX_TEXT], edited_at=now)
            )
        return True

    # --- the batcher's two callbacks --------------------------------------------------------

    async def _commit(self, batch: list[InboundMessage]) -> tuple[list[Receipt], list[StoredMessage]]:
        async with self._db.transaction() as conn:
            receipts, stored, enqueued = await self._process(conn, batch)
        if enqueued and self._on_commit is not None:
            # Wake only the outbox workers of the channels that got something: a batch of
            # emails must not make the web chat worker claim (a write transaction) for nothing.
            self._on_commit(enqueued)
        self.batches_committed += 1
        self.messages_committed += sum(1 for r in receipts if not r.duplicate)
        return receipts, stored

    async def _notify(self, stored: list[StoredMessage]) -> None:
        for listener in self._listeners:
            try:
                result = listener(stored)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("inbox listener failed")

    # --- one batch, inside one transaction (the steps: core.inbox_steps) ---------------------

    async def _process(
        self, conn: AsyncConnection, batch: Sequence[InboundMessage]
    ) -> tuple[list[Receipt], list[StoredMessage], frozenset[ChannelName]]:
        now = self._clock.now()

        # 1. Dedupe against the database and within the batch.
        receipts, first_seen, fresh = steps.dedupe(batch, await steps.existing_messages(conn, batch))

        # 2. Identify customers (creating contacts on first contact).
        identities = await steps.identify(conn, [batch[i] for i in fresh], now,
                                          default_language=self._default_language)

        # 3. Which contacts are in a conversation a hook owns (a running survey)?
        contact_ids = {identities[ident_key(batch[i])].contact_id for i in fresh}
        hooked = await steps.hooked_contacts(conn, self._hooks, contact_ids)

        # 4. Thread: which case each message joins (core.case_threading), fetched in bulk.
        hints = await thread_lookups(conn, [batch[i] for i in fresh], identities,
                                     reopen_since=reopen_cutoff(now, self._reopen_days))

        new_cases: list[dict[str, Any]] = []
        message_rows: list[dict[str, Any]] = []
        message_refs: list[tuple[int, CaseRef | None]] = []  # (batch index, case)
        outgoing: list[tuple[ComposedMessage, CaseRef | None]] = []
        touched_cases: set[int] = set()
        choice_actions: list[tuple[InboundMessage, int, KnownIdentity, str]] = []

        # Per fresh message, what the reply loop below needs again.
        ident_of: dict[int, KnownIdentity] = {}
        language_of: dict[int, str] = {}
        for i in fresh:
            m = batch[i]
            ident = ident_of[i] = identities[ident_key(m)]
            language = language_of[i] = pick_language(m.language, ident.language, default=self._default_language)
            consumed, filed_under = await steps.hand_to_hooks(conn, self._hooks, hooked, m, ident, language, now,
                                                              outgoing)
            case: CaseRef | None = None
            if filed_under is not None:
                case = CaseRef(id=filed_under)
                touched_cases.add(filed_under)
            elif not consumed:
                joins = choose_case(m, ident.contact_id, hints, now=now, reopen_days=self._reopen_days)
                if isinstance(joins, OpenNew):
                    case = steps.new_case_row(m, ident, hints, now, new_cases, language, joins.follow_up_of)
                else:
                    case = joins
                if case.id is not None:
                    touched_cases.add(case.id)
                    if m.choice is None and case.case_type == _UNCLASSIFIED:
                        m = typed_answer(m, case.id)
                if m.choice is not None:
                    choice_actions.append((m, i, ident, language))
            message_refs.append((i, case))
            message_rows.append(steps.message_row(m, ident, now))

        # 5. Create the new cases (bulk, ids in order), reopen, store the messages.
        policy_of_new: list[SlaPolicy | None] = []
        if new_cases and self._sla is not None and self._sla.setup.enabled:
            policy_of_new = await steps.start_clocks(conn, self._sla, new_cases, now)
        new_ids = await steps.write_new_cases(conn, new_cases, now)
        await write_reopened(conn, hints, now)
        if hints.reopened and self._sla is not None:
            await self._sla.reopened(conn, hints.reopened, now)

        def case_id_of(ref: CaseRef | None) -> int | None:
            if ref is None:
                return None
            return ref.id if ref.id is not None else new_ids[ref.new_index]  # type: ignore[index]

        for row, (_, ref) in zip(message_rows, message_refs, strict=True):
            row["case_id"] = case_id_of(ref)
        message_ids = await steps.write_messages(conn, message_rows)
        await steps.write_attachments(conn, message_ids, (i for i, _ in message_refs), batch)
        await steps.touch_cases(conn, self._sla, touched_cases, now)

        # 6. Replies: an acknowledgement on a new case (asking the type when unknown),
        #    the desk mirror, and answers to buttons.
        stored: list[StoredMessage] = []
        acked_new: set[int] = set()
        notices: dict[tuple[str, str, str], str | None] = {}
        zones = await steps.customer_zones(conn, self._sla, now, policy_of_new, (
            ident_of[i].contact_id for i, ref in message_refs if ref is not None and ref.new_index is not None))
        for mid, (i, ref) in zip(message_ids, message_refs, strict=True):
            m = batch[i]
            ident = ident_of[i]
            language = language_of[i]
            if ref is None:
                cid, is_new = None, False
            elif ref.new_index is None:
                cid, is_new = ref.id, False
            else:
                cid, is_new = new_ids[ref.new_index], True
            receipts[i] = Receipt(mid, cid, False, is_new)
            stored.append(StoredMessage(mid, cid, ident.contact_id, m.channel, is_new, m.text, language,
                                        m.auto_reply_allowed))
            if is_new and cid not in acked_new and m.auto_reply_allowed and m.channel != ChannelName.API:
                acked_new.add(cid)  # type: ignore[arg-type]
                recipient = Recipient(m.channel, m.sender, ident.id, ident.contact_id)
                # The customer's time: their browser's (web chat), else their contact's, else the calendar's.
                notice = steps.outside_hours(self._sla, policy_of_new[ref.new_index] if policy_of_new else None,  # type: ignore[union-attr,index]
                                             now, language, notices,
                                             steps.message_zone(m) or zones.get(ident.contact_id))
                outgoing.append((steps.ack(recipient, cid, ref, m, language, notice), ref))  # type: ignore[arg-type]
            elif (cid in hints.reopened and cid not in acked_new and m.auto_reply_allowed
                  and m.channel != ChannelName.API):
                acked_new.add(cid)  # type: ignore[arg-type]
                recipient = Recipient(m.channel, m.sender, ident.id, ident.contact_id)
                outgoing.append((steps.reopened_notice(recipient, cid, ref, language), ref))  # type: ignore[arg-type]
            if self._desk_enabled and cid is not None:
                outgoing.append((steps.desk_mirror(m, mid, cid, ref, language, is_new), ref))

        for m, i, ident, language in choice_actions:
            _, ref = next(mr for mr in message_refs if mr[0] == i)
            outgoing.extend(
                (o, ref) for o in await steps.answer_choice(conn, self._choice_answers, m, ident, language, now)
            )

        enqueued: frozenset[ChannelName] = frozenset()
        if outgoing:
            resolved = []
            for o, ref in outgoing:
                if o.case_id is None and ref is not None:
                    o = replace(o, case_id=case_id_of(ref))
                resolved.append(o)
            await self._outgoing.add(conn, resolved, now=now)
            enqueued = frozenset(o.recipient.channel for o in resolved)

        # 7. Copies of a message within the batch share the first copy's receipt.
        return steps.share_receipts(batch, receipts, first_seen), stored, enqueued
