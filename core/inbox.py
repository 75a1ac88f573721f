"""The inbound pipeline: every channel's messages become case messages here.

``InboxService.receive`` queues the message and waits; the batcher takes whatever has
queued up and processes it in ONE transaction (group commit): dedupe, identify the
customer, hand to an active conversation (survey) or thread into a case, enqueue the
replies, commit. Every waiter gets its receipt only after that commit, so an adapter
never acknowledges anything that is not durable. On PostgreSQL two batches may be in
flight at once, never with messages of the same sender in both (``_take``).

A commit per message caps throughput near the database's fsync rate; batching the
same work approaches the bulk-insert rate. If a batch fails on a constraint (a race
with another process) it is retried once, then message by message, so one poison
message never takes its batch-mates down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, Update, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.domain import (
    Activity,
    Author,
    CaseType,
    ChannelName,
    Choice,
    ChoiceAnswer,
    Direction,
    InboundMessage,
    Receipt,
    storable,
)
from core.case_threading import (
    DEFAULT_REOPEN_DAYS,
    CaseRef,
    OpenNew,
    JoinableCases,
    choose_case,
    open_case_id,
    reopen_cutoff,
    thread_lookups,
    write_reopened,
)
from core.contacts.identities import KnownIdentity, Newcomer, identify
from core.errors import StorageUnavailable
from core.outgoing import Outgoing, OutgoingMessage, Recipient
from core.persistence import Database
from core.persistence.bulk import insert_ids
from core.persistence.lookup import Match, any_key, by_unique_key, key_values
from core.persistence.schema import (
    attachments,
    case_events,
    case_suggestions,
    cases,
    message_edits,
    messages,
)
from core.ports import Clock
from core.budget import FOLLOW_PROCESS
from core.business_hours import opening_notice
from core.replies import case_type_from_reply
from core.sla import SlaPolicy, opened
from core.sla_store import CaseClockStore
from core.texts import case_type_name, pick_language, text
from core.workflow import CLASSIFIED_TYPES, MissingCaseType, check_transition

log = logging.getLogger(__name__)

CASE_TYPE_QUESTION = "case_type"
KB_FEEDBACK_QUESTION = "kb_feedback"
MAX_TITLE = 300
MAX_TEXT = 200_000


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """Told to listeners after commit (console live updates, KB suggestions, metrics)."""

    message_id: int
    case_id: int | None
    contact_id: int
    channel: ChannelName
    new_case: bool
    text: str
    language: str
    auto_reply_allowed: bool


@dataclass(slots=True)
class HookContext:
    """What a conversation hook sees of one inbound message, inside the batch transaction."""

    conn: AsyncConnection
    message: InboundMessage
    contact_id: int
    identity_id: int
    language: str
    now: datetime
    outgoing: list[OutgoingMessage] = field(default_factory=list)
    #: A consumed message joins no case, unless the hook files it under this one (a
    #: survey answer that opened, or belongs to, the survey's detractor case).
    case_id: int | None = None


class ConversationHook(Protocol):
    """Something that may own a customer's next message (a running survey)."""

    async def active_contacts(self, conn: AsyncConnection, contact_ids: Collection[int]) -> set[int]: ...

    async def handle(self, ctx: HookContext) -> bool:
        """Return True when the message was consumed (it then joins no case)."""
        ...


@dataclass(slots=True)
class _Pending:
    message: InboundMessage
    #: The waiter's future. It may be cancelled (the waiter went away) while the message
    #: is still stored: ``settled`` is ours, not the waiter's.
    future: asyncio.Future[Receipt]
    settled: bool = False


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
        #: ``[cases] reopen_days``: see core.case_threading.
        self._reopen_days = reopen_days
        self._max_batch = max_batch
        # PostgreSQL: a second batch builds and sends its statements while the first one
        # waits for the server, which a single batcher leaves idle (a third of its time
        # at 500 busy web chats). SQLite has one writer: batches there go one at a time.
        self._max_concurrent = max(1, max_concurrent_batches)
        self._concurrent_min = max(1, max_batch // 2)
        self._on_commit = on_commit
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._listeners: list[Callable[[Sequence[StoredMessage]], Awaitable[None] | None]] = []
        self.batches_committed = 0
        self.messages_committed = 0
        self.peak_batches_in_flight = 0

    def add_hook(self, hook: ConversationHook) -> None:
        self._hooks.append(hook)

    def subscribe(self, listener: Callable[[Sequence[StoredMessage]], Awaitable[None] | None]) -> None:
        """Call ``listener`` with what each batch stored, after its commit."""
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="inbox-batcher")

    async def stop(self) -> None:
        """Drain what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def __aenter__(self) -> InboxService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def receive(self, message: InboundMessage) -> Receipt:
        if self._task is None or self._stopping:
            raise StorageUnavailable("inbox is not running")
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(message, future))
        self._wake.set()
        # No shield (an outer future and two more callbacks per message): a waiter that is
        # cancelled cancels only its own future; the batcher still stores the message and
        # tracks it with ``_Pending.settled``.
        return await future

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

    # --- the batcher -------------------------------------------------------------------

    async def _run(self) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        busy: set[tuple[str, str]] = set()  # the senders with a message in a batch in flight
        try:
            while True:
                self._wake.clear()
                while len(in_flight) < self._max_concurrent and (batch := self._take(busy, bool(in_flight))):
                    senders = {_ident_key(p.message) for p in batch}
                    busy |= senders
                    task = asyncio.create_task(self._commit_batch(batch), name="inbox-batch")
                    in_flight.add(task)
                    self.peak_batches_in_flight = max(self.peak_batches_in_flight, len(in_flight))

                    def done(t: asyncio.Task[None], senders: set[tuple[str, str]] = senders) -> None:
                        in_flight.discard(t)
                        busy.difference_update(senders)
                        self._wake.set()
                        # _commit_batch answers every failure itself; anything else is a bug,
                        # and must show rather than vanish with the task.
                        if not t.cancelled() and t.exception() is not None:
                            log.error("inbox batch task failed", exc_info=t.exception())

                    task.add_done_callback(done)
                if self._stopping and not self._queue and not in_flight:
                    return
                await self._wake.wait()
        finally:
            # Cancelled: the batches already taken still commit and answer their waiters.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _take(self, busy: set[tuple[str, str]], others_in_flight: bool) -> list[_Pending]:
        """The next batch, in arrival order, leaving queued every message whose sender has
        one in a batch in flight: a sender's messages commit one batch after the other,
        so their order, their case (the first opens it, the next join it) and their
        identity (created once) are as with a single batcher.

        With nothing in flight, whatever is queued goes at once (latency under light load).
        Beside a batch in flight, only a batch of at least half the maximum starts: a
        handful of messages would cost a transaction of their own and leave the next
        arrivals to queue behind them."""
        if not self._queue:
            return []
        if not others_in_flight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            return batch
        if len(self._queue) < self._concurrent_min and not self._stopping:
            return []
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        for p in self._queue:
            if len(batch) < self._max_batch and _ident_key(p.message) not in busy:
                batch.append(p)
            else:
                rest.append(p)
        self._queue[:] = rest
        return batch

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            stored = await self._try_batch(batch)
        except StorageUnavailable as exc:
            for p in batch:
                _fail(p, exc)
            return
        except IntegrityError:
            # Usually another process created the same identity or message at the same
            # time: once more sees its rows; after that, isolate message by message.
            try:
                stored = await self._try_batch(batch)
            except StorageUnavailable as exc:
                for p in batch:
                    _fail(p, exc)
                return
            except Exception:
                stored = await self._one_by_one(batch)
        except Exception:
            log.exception("inbox batch of %d failed; retrying message by message", len(batch))
            stored = await self._one_by_one(batch)
        if stored:
            await self._notify(stored)

    async def _one_by_one(self, batch: list[_Pending]) -> list[StoredMessage]:
        stored: list[StoredMessage] = []
        for p in batch:
            if p.settled:
                continue
            try:
                stored.extend(await self._try_batch([p]))
            except StorageUnavailable as exc:
                _fail(p, exc)
            except Exception as exc:
                log.exception("inbox could not store a %s message", p.message.channel)
                _fail(p, StorageUnavailable(f"message could not be stored: {type(exc).__name__}"))
        return stored

    async def _try_batch(self, batch: list[_Pending]) -> list[StoredMessage]:
        async with self._db.transaction() as conn:
            receipts, stored, enqueued = await self._process(conn, [p.message for p in batch])
        if enqueued and self._on_commit is not None:
            # Wake only the outbox workers of the channels that got something: a batch of
            # emails must not make the web chat worker claim (a write transaction) for nothing.
            self._on_commit(enqueued)
        self.batches_committed += 1
        self.messages_committed += sum(1 for r in receipts if not r.duplicate)
        for p, receipt in zip(batch, receipts, strict=True):
            p.settled = True
            if not p.future.done():
                p.future.set_result(receipt)
        return stored

    async def _notify(self, stored: list[StoredMessage]) -> None:
        for listener in self._listeners:
            try:
                result = listener(stored)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("inbox listener failed")

    # --- one batch, inside one transaction -------------------------------------------------

    async def _process(
        self, conn: AsyncConnection, batch: Sequence[InboundMessage]
    ) -> tuple[list[Receipt], list[StoredMessage], frozenset[ChannelName]]:
        now = self._clock.now()
        receipts: list[Receipt | None] = [None] * len(batch)

        # 1. Dedupe against the database and within the batch.
        existing = await _existing_messages(conn, batch)
        first_seen: dict[tuple[str, str], int] = {}
        fresh: list[int] = []
        for i, m in enumerate(batch):
            key = (m.channel._value_, m.external_id)
            if key in existing:
                mid, case_id = existing[key]
                receipts[i] = Receipt(message_id=mid, case_number=case_id, duplicate=True)
            elif key in first_seen:
                continue  # answered with the first copy's receipt below
            else:
                first_seen[key] = i
                fresh.append(i)

        # 2. Identify customers (creating contacts on first contact).
        identities = await self._identify(conn, [batch[i] for i in fresh], now)

        # 3. Which contacts are in a conversation a hook owns (a running survey)?
        hooked: dict[int, set[int]] = {}
        contact_ids = {identities[_ident_key(batch[i])].contact_id for i in fresh}
        for h, hook in enumerate(self._hooks):
            hooked[h] = await hook.active_contacts(conn, contact_ids) if contact_ids else set()

        # 4. Thread hints and open cases, fetched in bulk.
        hints = await thread_lookups(conn, [batch[i] for i in fresh], identities,
                                      reopen_since=reopen_cutoff(now, self._reopen_days))

        new_cases: list[dict[str, Any]] = []
        message_rows: list[dict[str, Any]] = []
        message_refs: list[tuple[int, CaseRef | None]] = []  # (batch index, case)
        outgoing: list[tuple[OutgoingMessage, CaseRef | None]] = []
        touched_cases: set[int] = set()
        choice_actions: list[tuple[InboundMessage, int, KnownIdentity, str]] = []

        # Per fresh message, what the reply loop below needs again.
        ident_of: dict[int, KnownIdentity] = {}
        language_of: dict[int, str] = {}
        for i in fresh:
            m = batch[i]
            ident = ident_of[i] = identities[_ident_key(m)]
            language = language_of[i] = pick_language(m.language, ident.language, default=self._default_language)

            consumed = False
            filed_under: int | None = None
            for h, hook in enumerate(self._hooks):
                if ident.contact_id in hooked[h]:
                    ctx = HookContext(conn=conn, message=m, contact_id=ident.contact_id, identity_id=ident.id,
                                      language=language, now=now)
                    consumed = await hook.handle(ctx)
                    outgoing.extend((o, None) for o in ctx.outgoing)
                    if consumed:
                        filed_under = ctx.case_id
                        break

            case: CaseRef | None = None
            if filed_under is not None:
                case = CaseRef(id=filed_under)
                touched_cases.add(filed_under)
            elif not consumed:
                joins = choose_case(m, ident.contact_id, hints, now=now, reopen_days=self._reopen_days)
                if isinstance(joins, OpenNew):
                    case = _open_case(m, ident, hints, now, new_cases, language, joins.follow_up_of)
                else:
                    case = joins
                if case.id is not None:
                    touched_cases.add(case.id)
                    if m.choice is None and case.case_type == _UNCLASSIFIED:
                        m = _typed_answer(m, case.id)
                if m.choice is not None:
                    choice_actions.append((m, i, ident, language))
            message_refs.append((i, case))
            message_rows.append(
                {
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
            )

        # 5. Create the new cases (bulk, ids in order) and resolve the placeholders.
        new_ids: list[int] = []
        policy_of_new: list[SlaPolicy | None] = []
        if new_cases and self._sla is not None and self._sla.setup.enabled:
            policy_of_new = await self._start_clocks(conn, new_cases, now)
        if new_cases:
            new_ids = await insert_ids(conn, cases, new_cases)
            # insert_ids for its one-parameter bulk insert (the ids themselves are not needed).
            await insert_ids(
                conn, case_events,
                [{"case_id": cid, "at": now, "actor": "customer", "kind": "opened", "to_value": row["channel"]}
                 for cid, row in zip(new_ids, new_cases, strict=True)],
            )

        await write_reopened(conn, hints, now)

        def case_id_of(ref: CaseRef | None) -> int | None:
            if ref is None:
                return None
            return ref.id if ref.id is not None else new_ids[ref.new_index]  # type: ignore[index]

        for row, (_, ref) in zip(message_rows, message_refs, strict=True):
            row["case_id"] = case_id_of(ref)
        message_ids: list[int] = []
        if message_rows:
            message_ids = await insert_ids(conn, messages, message_rows)

        attachment_rows = [
            {"message_id": mid, "filename": a.filename[:300], "content_type": a.content_type[:200], "size": a.size,
             "sha256": a.sha256, "inline": a.inline}
            for mid, (i, _) in zip(message_ids, message_refs, strict=True)
            for a in batch[i].attachments
        ]
        if attachment_rows:
            await conn.execute(insert(attachments), attachment_rows)
        if touched_cases:
            if self._sla is not None:
                await self._sla.customer_wrote(conn, touched_cases, now)
            else:
                dialect = conn.dialect.name
                await conn.execute(_touch_cases_statement(dialect),
                                   {"case_ids": key_values(dialect, sorted(touched_cases)), "now": now})

        # 6. Replies: an acknowledgement on a new case (asking the type when unknown),
        #    the desk mirror, and answers to buttons.
        stored: list[StoredMessage] = []
        acked_new: set[int] = set()
        notices: dict[tuple[str, str], str | None] = {}
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
                notice = self._outside_hours(policy_of_new[ref.new_index] if policy_of_new else None,  # type: ignore[index]
                                             now, language, notices)
                outgoing.append((self._ack(recipient, cid, ref, m, language, notice), ref))  # type: ignore[arg-type]
            elif (cid in hints.reopened and cid not in acked_new and m.auto_reply_allowed
                  and m.channel != ChannelName.API):
                acked_new.add(cid)  # type: ignore[arg-type]
                outgoing.append((OutgoingMessage(
                    recipient=Recipient(m.channel, m.sender, ident.id, ident.contact_id), kind="bot", case_id=cid,
                    case_title=ref.title if ref else None, language=language, automatic=True,
                    reply_token=ref.reply_token if ref else None,
                    text=text("case_reopened", language, number=cid)), ref))
            if self._desk_enabled and cid is not None:
                outgoing.append((
                    OutgoingMessage(
                        recipient=Recipient(ChannelName.DESK, str(cid)),
                        text=m.text[:4000],
                        kind="desk",
                        case_id=cid,
                        case_title=ref.title if ref else None,
                        author=Author.CUSTOMER,
                        author_name=m.sender_name,
                        language=language,
                        extra={"channel": m.channel.value, "message_id": str(mid), "new_case": "1" if is_new else ""},
                    ),
                    ref,
                ))

        for m, i, ident, language in choice_actions:
            _, ref = next(mr for mr in message_refs if mr[0] == i)
            outgoing.extend(
                (o, ref) for o in await self._answer_choice(conn, m, ident, case_id_of(ref), language, now)
            )

        enqueued: frozenset[ChannelName] = frozenset()
        if outgoing:
            resolved = []
            for o, ref in outgoing:
                if o.case_id is None and ref is not None:
                    o = _with_case(o, case_id_of(ref))
                resolved.append(o)
            await self._outgoing.add(conn, resolved, now=now)
            enqueued = frozenset(o.recipient.channel for o in resolved)

        # 7. Copies of a message within the batch share the first copy's receipt.
        for i, m in enumerate(batch):
            if receipts[i] is None:
                first = receipts[first_seen[(m.channel.value, m.external_id)]]
                assert first is not None
                receipts[i] = Receipt(first.message_id, first.case_number, duplicate=True)
        return [r for r in receipts if r is not None], stored, enqueued

    async def _start_clocks(self, conn: AsyncConnection, new_cases: list[dict[str, Any]],
                            now: datetime) -> list[SlaPolicy | None]:
        """Each new case's SLA policy and due times (one computation per policy per batch:
        every case of a batch opens at the same ``now``)."""
        assert self._sla is not None
        setup = self._sla.setup
        org_names = await self._sla.organization_names(conn, {r["organization_id"] for r in new_cases
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

    def _outside_hours(self, policy: SlaPolicy | None, now: datetime, language: str,
                       cache: dict[tuple[str, str], str | None]) -> str | None:
        if policy is None or self._sla is None or not self._sla.setup.outside_hours_notice:
            return None
        key = (policy.calendar.name, language)
        if key not in cache:
            cache[key] = opening_notice(policy.calendar, now, language)
        return cache[key]

    def _ack(self, recipient: Recipient, case_id: int, ref: CaseRef, m: InboundMessage, language: str,
             notice: str | None = None) -> OutgoingMessage:
        body = text("ack_new_case", language, number=case_id)
        if notice:
            body = f"{body}\n{notice}"
        choices: tuple[Choice, ...] = ()
        question = None
        if ref.case_type == CaseType.UNCLASSIFIED.value:
            body = f"{body}\n{text('ask_case_type', language)}"
            choices = _case_type_choices(language)
            question = f"{CASE_TYPE_QUESTION}:{case_id}"
        return OutgoingMessage(
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

    async def _answer_choice(
        self, conn: AsyncConnection, m: InboundMessage, ident: KnownIdentity, case_id: int | None, language: str,
        now: datetime,
    ) -> list[OutgoingMessage]:
        """Buttons the bot itself asked: the case type, and "did this solve it?"."""
        assert m.choice is not None
        kind, _, target = m.choice.question.partition(":")
        if not target.isdigit():
            return []
        target_id = int(target)
        row = (
            await conn.execute(select(cases.c.id, cases.c.contact_id, cases.c.case_type, cases.c.activity, cases.c.title,
                                      cases.c.reply_token, cases.c.self_served).where(cases.c.id == target_id))
        ).first()
        if row is None or row.contact_id != ident.contact_id:
            return []  # a button for someone else's case: ignore it
        recipient = Recipient(m.channel, m.sender, ident.id, ident.contact_id)

        def say(key: str, **extra: Any) -> OutgoingMessage:
            return OutgoingMessage(recipient=recipient, kind="bot", case_id=row.id, case_title=row.title,
                                   language=language, reply_token=row.reply_token,
                                   text=text(key, language, number=row.id, **extra))

        async def close_self_served(case_type: str) -> bool:
            """Close the case the customer solved with a KB article, if the workflow lets it."""
            try:
                check_transition(row.activity, Activity.CLOSED, case_type=case_type)
            except MissingCaseType:
                return False
            await conn.execute(update(cases).where(cases.c.id == row.id).values(
                activity=Activity.CLOSED.value, self_served=True, closed_at=now, updated_at=now))
            await conn.execute(insert(case_events).values(case_id=row.id, at=now, actor="customer",
                                                          kind="activity", from_value=row.activity,
                                                          to_value=Activity.CLOSED.value, detail="self-served"))
            return True

        if kind == CASE_TYPE_QUESTION and m.choice.value in {t.value for t in CLASSIFIED_TYPES}:
            if row.case_type != m.choice.value:
                await conn.execute(update(cases).where(cases.c.id == row.id).values(case_type=m.choice.value,
                                                                                       updated_at=now))
                await conn.execute(insert(case_events).values(case_id=row.id, at=now, actor="customer", kind="type",
                                                              from_value=row.case_type, to_value=m.choice.value))
                if self._sla is not None:
                    await self._sla.rematch(conn, row.id)
            if row.self_served and row.activity not in _ENDED and await close_self_served(m.choice.value):
                return [say("self_served")]
            return [say("type_recorded", type=case_type_name(m.choice.value, language))]
        if kind == KB_FEEDBACK_QUESTION and m.choice.value in ("yes", "no"):
            await conn.execute(update(case_suggestions).where(case_suggestions.c.case_id == row.id)
                               .values(feedback=m.choice.value))
            if m.choice.value == "yes" and row.activity not in _ENDED:
                if await close_self_served(row.case_type):
                    return [say("self_served")]
                # The type is mandatory before closing (core.workflow): remember that the
                # customer solved it, ask the type, and close when it is answered.
                await conn.execute(update(cases).where(cases.c.id == row.id).values(self_served=True, updated_at=now))
                return [replace(say("self_served_ask_type"), choices=_case_type_choices(language),
                                question=f"{CASE_TYPE_QUESTION}:{row.id}")]
            return [say("agent_will_answer")]
        return []

    async def _identify(self, conn: AsyncConnection, batch: Sequence[InboundMessage], now: datetime) -> dict[tuple[str, str], KnownIdentity]:
        wanted: dict[tuple[str, str], Newcomer] = {}
        for m in batch:
            key = _ident_key(m)
            if key not in wanted:
                language = pick_language(m.language, default=self._default_language) if m.language else None
                wanted[key] = Newcomer(name=m.sender_name, language=language)
        return await identify(conn, wanted, now=now)


@functools.cache
def _case_type_choices(language: str) -> tuple[Choice, ...]:
    """The buttons of the case-type question (the same for every new case in a language)."""
    return tuple(Choice(case_type_name(t, language), t.value) for t in CLASSIFIED_TYPES)


def _message_extra(m: InboundMessage) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if m.choice is not None:
        extra["choice"] = {"question": m.choice.question, "value": m.choice.value}
    if m.original_text is not None and m.original_text != m.text:
        extra["original"] = m.original_text[:MAX_TEXT]
    return extra or None


def _typed_answer(m: InboundMessage, case_id: int) -> InboundMessage:
    """A customer who answers the type question in words or with the email's number
    ("2", "Reclamo", "reclamação") answers it like a button: read it as that choice."""
    answered = case_type_from_reply(m.text)
    if answered is None:
        return m
    return replace(m, choice=ChoiceAnswer(f"{CASE_TYPE_QUESTION}:{case_id}", answered.value))


def _ident_key(m: InboundMessage) -> tuple[str, str]:
    # ``_value_``: the enum's ``value`` is a property, and this runs several times per message.
    return (m.channel._value_, m.sender)


_IN = Direction.IN.value
_CUSTOMER = Author.CUSTOMER.value
_UNCLASSIFIED = CaseType.UNCLASSIFIED.value
#: A self-served "yes" on a case already answered or closed by an agent changes nothing.
_ENDED = frozenset({Activity.CLOSED.value})


def _fail(p: _Pending, exc: BaseException) -> None:
    p.settled = True
    if not p.future.done():
        p.future.set_exception(exc)
        # The waiter may have gone away (client disconnected); don't warn about it.
        with contextlib.suppress(BaseException):
            p.future.exception()


def _with_case(o: OutgoingMessage, case_id: int | None) -> OutgoingMessage:
    return replace(o, case_id=case_id)


def _open_case(m: InboundMessage, ident: KnownIdentity, hints: JoinableCases, now: datetime,
               new_cases: list[dict[str, Any]], language: str, follow_up_of: int | None) -> CaseRef:
    """Add the row of the case ``m`` opens (written in bulk in step 5)."""
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


def _title_for(m: InboundMessage) -> str:
    title = " ".join((m.subject or "").split())
    if not title:
        title = " ".join(m.text.split())[:80] or "(sin texto)"
    return title[:MAX_TITLE]


# Statements built once (see ``lookup.any_key``); what varies is bound at execution.

def _inbound_messages_query(match: Match) -> Select[Any]:
    return select(messages.c.id, messages.c.case_id, messages.c.external_id).where(
        messages.c.channel == bindparam("channel"), messages.c.direction == Direction.IN.value,
        match(messages.c.external_id))


@functools.cache
def _touch_cases_statement(dialect: str) -> Update:
    return update(cases).where(any_key(dialect, cases.c.id, "case_ids")).values(updated_at=bindparam("now"))


async def _existing_messages(conn: AsyncConnection, batch: Sequence[InboundMessage]) -> dict[tuple[str, str], tuple[int, int | None]]:
    by_channel: dict[str, set[str]] = {}
    for m in batch:
        by_channel.setdefault(m.channel.value, set()).add(m.external_id[:500])
    found: dict[tuple[str, str], tuple[int, int | None]] = {}
    for ch, ids in by_channel.items():
        rows = await by_unique_key(conn, ids, _inbound_messages_query, channel=ch)
        for message_id, case_id, external_id in rows:
            found[(ch, external_id)] = (message_id, case_id)
    return found
