"""The survey conversation: a ``ConversationHook`` that owns a customer's messages
while one of their surveys is open, and the operators' manual runs.

One question at a time. A button press, "4", "cuatro" or "4/5" answers; anything else
is asked again, kindly, at most twice. Asking for an agent, complaining, or a third
unreadable answer pauses the survey and lets the message through to a case (``handle``
returns False, so the inbox threads it like any other message). All state lives in
``rule_instances``/``survey_answers`` and changes inside the inbox's own transaction, so
a restart resumes exactly where the customer was, and an answer is never half-recorded.

Email is different from chat: a customer's unrelated email ("my printer broke") must
not be eaten as an unreadable answer, so on email we only take messages that reply to
the survey email or that read as an answer.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import ChannelName, Direction
from posventa.core.errors import InvalidTransition, NotFound, ValidationError
from posventa.core.inbox_hooks import HookContext
from posventa.core.outgoing import Outgoing, ComposedMessage, Recipient
from posventa.core.persistence import Database
from posventa.core.persistence.lookup import any_key, key_values
from posventa.core.persistence.schema import (
    cases,
    contact_identities,
    contacts,
    messages,
    products,
    rule_instances,
    sales,
    survey_answers,
    survey_questions,
    survey_rule_operators,
    survey_rules,
)
from posventa.core.ports import Clock
from posventa.core.surveys import answers
from posventa.core.surveys.catalog import Question, rule_questions
from posventa.core.surveys.detractors import DetractorCases
from posventa.core.surveys.followup import ASKED, FOLLOWUP_QUESTION_ID, Followups, followup_question
from posventa.core.surveys.conversation import (
    BY_CUSTOMER,
    EXECUTED,
    EXPIRED,
    MAX_RETRIES,
    OPEN,
    PAUSED,
    PENDING,
    Asking,
    answered_ids,
    finish,
    hint_for,
    parse_question_key,
    record_answer,
    survey_subject,
    unanswered,
)
from posventa.core.texts import pick_language

log = logging.getLogger(__name__)

#: A button of a survey that closed this recently still gets a polite "closed" answer
#: instead of opening a case with the text "4".
RECENT_SURVEY = timedelta(days=30)

_INSTANCE_COLS = (rule_instances.c.id, rule_instances.c.rule_id, rule_instances.c.contact_id,
                  rule_instances.c.status, rule_instances.c.channel, rule_instances.c.language,
                  rule_instances.c.invalid_answers, rule_instances.c.window_start, rule_instances.c.window_end,
                  products.c.name.label("product_name"))


def _instance_select() -> Any:
    return (select(*_INSTANCE_COLS)
            .join(sales, sales.c.id == rule_instances.c.sale_id)
            .join(products, products.c.id == sales.c.product_id))


class SurveyRunner:
    """Implements ``core.inbox_hooks.ConversationHook`` for surveys, plus manual runs."""

    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, detractors: DetractorCases,
                 default_language: str = "es", on_commit: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        self._detractors = detractors
        self._default_language = default_language
        self._on_commit = on_commit

    # --- the hook --------------------------------------------------------------------------

    async def active_contacts(self, conn: AsyncConnection, contact_ids: Collection[int]) -> set[int]:
        """Contacts with an open survey, or one that closed recently (for stale buttons)."""
        dialect = conn.dialect.name
        rows = await conn.execute(_active_contacts_statement(dialect), {
            "contact_ids": key_values(dialect, sorted(contact_ids)), "recent": self._clock.now() - RECENT_SURVEY})
        return {r[0] for r in rows}

    async def handle(self, ctx: HookContext) -> bool:
        conn, m = ctx.conn, ctx.message
        if not m.auto_reply_allowed or m.new_case:
            # An out-of-office or a bounce must never be answered (mail loops), and
            # "/new" asks for a case explicitly: neither is a survey answer.
            return False
        pressed = parse_question_key(m.choice.question) if m.choice else None
        if m.choice is not None and pressed is None and m.choice.question.startswith("survey:"):
            return True  # a malformed survey button: nothing to do, nothing to open a case for
        if pressed is not None and pressed[1] == FOLLOWUP_QUESTION_ID:
            return await self._followup(ctx, pressed[0])
        current = (await conn.execute(
            _instance_select().where(rule_instances.c.contact_id == ctx.contact_id, rule_instances.c.status == OPEN)
            .order_by(rule_instances.c.id).limit(1).with_for_update(of=rule_instances))).first()
        if pressed is not None and (current is None or current.id != pressed[0]):
            return await self._stale_button(ctx, pressed[0])
        if current is None:
            return await self._followup(ctx, None)
        if pressed is None and m.channel.value != current.channel:
            return False  # the survey runs elsewhere; this is an ordinary message
        language = current.language or ctx.language
        asking = Asking(current.id, Recipient(m.channel, m.sender, ctx.identity_id, ctx.contact_id), language,
                        survey_subject(current.product_name, language),
                        in_reply_to=m.meta.get("message_id") or (m.external_id if m.channel == ChannelName.EMAIL
                                                                  else None),
                        references=tuple(m.thread.references)[-20:] + (
                            (m.external_id,) if m.channel == ChannelName.EMAIL else ()))
        questions = (await rule_questions(conn, [current.rule_id]))[current.rule_id]
        answered = await answered_ids(conn, current.id)
        left = unanswered(questions, answered)
        if not left:  # the rule lost its remaining questions meanwhile
            await finish(conn, current.id, by=BY_CUSTOMER, now=ctx.now)
            ctx.case_id = await self._detractors.case_of(conn, current.id)
            ctx.outgoing.append(self._closing(asking, ctx.case_id))
            return True
        question = left[0]

        if pressed is not None:
            assert m.choice is not None
            if pressed[1] != question.id:
                # An older question's button: re-ask the current one, no penalty.
                ctx.outgoing.append(self._ask(asking, question, questions, answered))
                await self._touch(conn, current.id, ctx.now)
                return True
            reading = answers.Reading(answers.read_choice(m.choice.value, question.scale))
        else:
            reading = answers.read(m.text, question.scale, language=m.language or language)
            if m.channel == ChannelName.EMAIL and reading.score is None and not reading.escalate \
                    and not await self._replies_to(conn, m.thread.references, ctx.contact_id, current.id):
                return False  # an unrelated email: it goes to a case, the survey waits

        if reading.score is not None:
            await record_answer(conn, current.id, question, reading.score, by=BY_CUSTOMER, now=ctx.now)
            answered.add(question.id)
            detractor = await self._detractors.after_answer(conn, current.id, question, reading.score, now=ctx.now)
            ctx.case_id = detractor.number if detractor else None
        else:
            ctx.case_id = await self._detractors.case_of(conn, current.id)
        # From here on, with a detractor case, every message of the survey is filed under it.
        if reading.escalate:
            await self._pause(conn, current.id, ctx.now)
            ctx.outgoing.append(asking.say("escalated"))
            return ctx.case_id is not None  # no detractor case yet: the inbox opens or finds one
        if reading.score is None:
            if current.invalid_answers >= MAX_RETRIES:
                await self._pause(conn, current.id, ctx.now)
                ctx.outgoing.append(asking.say("gave_up"))
                return ctx.case_id is not None
            await conn.execute(update(rule_instances).where(rule_instances.c.id == current.id).values(
                invalid_answers=current.invalid_answers + 1, last_asked_at=ctx.now))
            lead = asking.say("retry", hint=hint_for(question.scale, language)).text
            ctx.outgoing.append(self._ask(asking, question, questions, answered, lead=lead))
            return True

        left = left[1:]
        if not left:
            await finish(conn, current.id, by=BY_CUSTOMER, now=ctx.now)
            ctx.outgoing.append(self._closing(asking, ctx.case_id))
            return True
        await conn.execute(update(rule_instances).where(rule_instances.c.id == current.id).values(
            current_position=len(answered), invalid_answers=0, last_asked_at=ctx.now))
        ctx.outgoing.append(self._ask(asking, left[0], questions, answered))
        return True

    async def _followup(self, ctx: HookContext, pressed_instance: int | None) -> bool:
        """The answer to "Was your problem solved?" (a button, or a yes/no in words);
        anything else is an ordinary message for a case."""
        m = ctx.message
        pending = await Followups.pending(ctx.conn, ctx.contact_id)
        if pending is None or (pressed_instance is not None and pending.id != pressed_instance):
            return pressed_instance is not None  # a stale or foreign follow-up button: swallowed
        yes_no = followup_question(pending.language or ctx.language).scale
        score = (answers.read_choice(m.choice.value, yes_no) if m.choice is not None
                 else answers.read_score(m.text, yes_no))
        if score is None:
            return False
        await Followups.record(ctx.conn, pending.id, score, ctx.now)
        ctx.case_id = pending.case_number
        ctx.outgoing.append(Followups.thanks(
            pending.id, Recipient(m.channel, m.sender, ctx.identity_id, ctx.contact_id),
            pending.language or ctx.language, pending.product_name, pending.case_number))
        return True

    async def _stale_button(self, ctx: HookContext, instance_id: int) -> bool:
        row = (await ctx.conn.execute(_instance_select().where(rule_instances.c.id == instance_id))).first()
        if row is None or row.contact_id != ctx.contact_id:
            return True  # someone else's (or a made-up) button: swallow it, tell nobody anything
        if row.status in (EXECUTED, EXPIRED):
            language = row.language or ctx.language
            ctx.outgoing.append(Asking(row.id, Recipient(ctx.message.channel, ctx.message.sender, ctx.identity_id,
                                                         ctx.contact_id), language,
                                       survey_subject(row.product_name, language)).say("closed"))
            return True
        # Paused: an agent has the conversation; the press reaches the case.
        return False

    def _closing(self, asking: Asking, case_number: int | None) -> ComposedMessage:
        """The survey's last words: thanks, or, after a detractor answer, that someone will
        contact them (recorded on the detractor case, so its agents see what was promised)."""
        if case_number is None:
            return asking.say("thanks")
        return dataclasses.replace(asking.say("thanks"), text=self._detractors.policy.reply(asking.language),
                                   case_id=case_number)

    @staticmethod
    def _ask(asking: Asking, question: Question, questions: Sequence[Question], answered: set[int],
             lead: str | None = None) -> ComposedMessage:
        number = sum(1 for q in questions if q.id in answered) + 1
        return asking.message(question, number, len(questions), lead=lead)

    @staticmethod
    async def _touch(conn: AsyncConnection, instance_id: int, now: datetime) -> None:
        await conn.execute(update(rule_instances).where(rule_instances.c.id == instance_id).values(last_asked_at=now))

    @staticmethod
    async def _pause(conn: AsyncConnection, instance_id: int, now: datetime) -> None:
        await conn.execute(update(rule_instances).where(rule_instances.c.id == instance_id).values(
            status=PAUSED, last_asked_at=now))

    @staticmethod
    async def _replies_to(conn: AsyncConnection, references: Sequence[str], contact_id: int, instance_id: int) -> bool:
        refs = [r for r in references[-50:] if r]
        if not refs:
            return False
        rows = await conn.execute(select(messages.c.extra).where(
            messages.c.channel == ChannelName.EMAIL.value, messages.c.direction == Direction.OUT.value,
            messages.c.contact_id == contact_id, messages.c.external_id.in_(refs)))
        prefix = f"survey:{instance_id}:"
        return any(isinstance(r.extra, Mapping) and str(r.extra.get("question", "")).startswith(prefix) for r in rows)

    # --- operators -------------------------------------------------------------------------

    async def record_answers(self, instance_id: int, given: Any, *, operator: Any) -> dict[str, Any]:
        """An operator ran the survey by hand (a phone call). ``given`` is a list of
        ``{"question": id or code, "score": "4"}``. When every question has an answer
        the instance is executed by that operator; a partial run pauses the chat."""
        op = _operator(operator)
        if not isinstance(given, list) or not given:
            raise ValidationError("answers must be a non-empty list of {question, score}", field="answers")
        if len(given) > 100:
            raise ValidationError("too many answers", field="answers")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await self._locked(conn, instance_id)
            await _check_operator(conn, row.rule_id, op)
            if row.status in (EXECUTED, EXPIRED):
                raise InvalidTransition(f"survey {instance_id} is already {row.status}")
            if now < row.window_start:
                raise InvalidTransition(f"survey {instance_id} opens on {row.window_start.isoformat()}")
            if now >= row.window_end:
                raise InvalidTransition(f"survey {instance_id} expired on {row.window_end.isoformat()}")
            questions = (await rule_questions(conn, [row.rule_id]))[row.rule_id]
            by_ref: dict[Any, Question] = {q.id: q for q in questions} | {q.code: q for q in questions}
            parsed: list[tuple[Question, str]] = []
            for i, item in enumerate(given):
                where = f"answers[{i}]"
                if not isinstance(item, Mapping):
                    raise ValidationError(f"{where} must be an object", field=where)
                q = by_ref.get(item.get("question"))
                if q is None:
                    raise ValidationError(f"{where}.question is not a question of this survey", field=where)
                raw = item.get("score")
                raw = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
                score = None
                if isinstance(raw, str):
                    score = answers.read_choice(raw, q.scale) or answers.read_score(raw, q.scale)
                if score is None:
                    raise ValidationError(f"{where}.score must be one of {', '.join(q.scale.scores)}",
                                          field=f"{where}.score")
                parsed.append((q, score))
            for q, score in parsed:
                await record_answer(conn, instance_id, q, score, by=f"operator:{op}", now=now)
                await self._detractors.after_answer(conn, instance_id, q, score, now=now, actor=f"operator:{op}")
            answered = await answered_ids(conn, instance_id)
            if not unanswered(questions, answered):
                await finish(conn, instance_id, by=op, now=now)
            else:
                # The operator took over: the chat must not ask a question they answered.
                await conn.execute(update(rule_instances).where(rule_instances.c.id == instance_id).values(
                    status=PAUSED, current_position=len(answered), opened_at=row.opened_at or now))
        return await self.instance(instance_id)

    async def resume(self, instance_id: int, *, operator: Any) -> dict[str, Any]:
        """Reopen a paused survey in the customer's chat, at the next unanswered question."""
        op = _operator(operator)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await self._locked(conn, instance_id)
            await _check_operator(conn, row.rule_id, op)
            if row.status != PAUSED:
                raise InvalidTransition(f"only a paused survey can be resumed; this one is {row.status}")
            if now >= row.window_end:
                raise InvalidTransition(f"survey {instance_id} expired on {row.window_end.isoformat()}")
            busy = (await conn.execute(select(rule_instances.c.id).where(
                rule_instances.c.contact_id == row.contact_id, rule_instances.c.status == OPEN).limit(1))).first()
            if busy is not None:
                raise InvalidTransition(f"the customer is answering survey {busy.id} now; resume this one later")
            recipient = await _reachable(conn, row.contact_id, prefer=row.channel)
            if recipient is None:
                raise InvalidTransition("the customer has no reachable chat or email; record the answers by hand")
            questions = (await rule_questions(conn, [row.rule_id]))[row.rule_id]
            answered = await answered_ids(conn, instance_id)
            left = unanswered(questions, answered)
            if not left:
                await finish(conn, instance_id, by=op, now=now)
            else:
                language = row.language or self._default_language
                asking = Asking(instance_id, recipient, language, survey_subject(row.product_name, language))
                await conn.execute(update(rule_instances).where(rule_instances.c.id == instance_id).values(
                    status=OPEN, channel=recipient.channel.value, invalid_answers=0, last_asked_at=now,
                    opened_at=row.opened_at or now))
                lead = asking.say("resumed").text
                await self._outgoing.add(conn, [self._ask(asking, left[0], questions, answered, lead=lead)], now=now)
        self._on_commit()
        return await self.instance(instance_id)

    async def instance(self, instance_id: int) -> dict[str, Any]:
        """One survey with its answers, as the API and the console show it."""
        async with self._db.engine.connect() as conn:
            r = (await conn.execute(
                select(rule_instances, survey_rules.c.name.label("rule_name"), sales.c.external_id, sales.c.seller,
                       sales.c.closed_at, products.c.code.label("product_code"),
                       products.c.name.label("product_name"), contacts.c.name.label("customer_name"))
                .join(survey_rules, survey_rules.c.id == rule_instances.c.rule_id)
                .join(sales, sales.c.id == rule_instances.c.sale_id)
                .join(products, products.c.id == sales.c.product_id)
                .join(contacts, contacts.c.id == rule_instances.c.contact_id)
                .where(rule_instances.c.id == instance_id))).first()
            if r is None:
                raise NotFound(f"survey {instance_id} does not exist")
            case = (await conn.execute(select(cases.c.id, cases.c.activity, cases.c.closed_at)
                                       .where(cases.c.survey_instance_id == instance_id))).first()
            questions = (await rule_questions(conn, [r.rule_id]))[r.rule_id]
            given = {a.question_id: a for a in await conn.execute(
                select(survey_answers, survey_questions.c.code)
                .join(survey_questions, survey_questions.c.id == survey_answers.c.question_id)
                .where(survey_answers.c.instance_id == instance_id).order_by(survey_answers.c.id))}
        return {
            "id": r.id, "status": r.status, "channel": r.channel, "language": r.language,
            "rule": {"id": r.rule_id, "name": r.rule_name},
            "sale": {"id": r.sale_id, "external_id": r.external_id, "seller": r.seller,
                     "closed_at": r.closed_at.isoformat()},
            "product": {"code": r.product_code, "name": r.product_name},
            "customer": {"id": r.contact_id, "name": r.customer_name},
            "window_start": r.window_start.isoformat(), "window_end": r.window_end.isoformat(),
            "opened_at": _iso(r.opened_at), "last_asked_at": _iso(r.last_asked_at), "reminded_at": _iso(r.reminded_at),
            "executed_at": _iso(r.executed_at), "executed_by": r.executed_by, "total_score": r.total_score,
            "normalized_score": r.normalized_score,
            "case": None if case is None else {"number": case.id, "activity": case.activity,
                                               "closed_at": _iso(case.closed_at)},
            "followup": None if r.followup_status is None else {
                "status": r.followup_status, "score": r.followup_score, "weight": r.followup_weight,
                "asked_at": _iso(r.followup_asked_at), "answered_at": _iso(r.followup_answered_at)},
            "answers": [{"question_id": a.question_id, "code": a.code, "score": a.score, "weight": a.weight,
                         "answered_at": a.answered_at.isoformat(), "answered_by": a.answered_by}
                        for a in given.values()],
            "questions": [{"id": q.id, "code": q.code, "text": dict(q.texts), "scale": q.scale.spec,
                           "answered": q.id in given} for q in questions],
        }

    @staticmethod
    async def _locked(conn: AsyncConnection, instance_id: int) -> Any:
        row = (await conn.execute(
            select(rule_instances, products.c.name.label("product_name"))
            .join(sales, sales.c.id == rule_instances.c.sale_id)
            .join(products, products.c.id == sales.c.product_id)
            .where(rule_instances.c.id == instance_id).with_for_update(of=rule_instances))).first()
        if row is None:
            raise NotFound(f"survey {instance_id} does not exist")
        return row


def _operator(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 120:
        raise ValidationError("operator is required: the name of the operator responsible", field="operator")
    return value.strip()


async def _check_operator(conn: AsyncConnection, rule_id: int, operator: str) -> None:
    """Commission depends on these scores, so only the rule's own operators may run it."""
    found = (await conn.execute(select(survey_rule_operators.c.operator).where(
        survey_rule_operators.c.rule_id == rule_id, survey_rule_operators.c.operator == operator))).first()
    if found is None:
        raise ValidationError(f"{operator!r} is not an operator of this survey's rule", field="operator")


#: The order channels are tried in: chat first (buttons, immediate), then email.
CHANNEL_PREFERENCE = (ChannelName.TELEGRAM, ChannelName.WEBCHAT, ChannelName.EMAIL)


async def reachable_identities(conn: AsyncConnection, contact_ids: Collection[int]) -> dict[int, list[Any]]:
    """Per contact, its reachable customer identities (newest first)."""
    out: dict[int, list[Any]] = {}
    ids = sorted(contact_ids)
    for start in range(0, len(ids), 5000):
        rows = await conn.execute(
            select(contact_identities.c.id, contact_identities.c.contact_id, contact_identities.c.channel,
                   contact_identities.c.address)
            .where(contact_identities.c.contact_id.in_(ids[start:start + 5000]),
                   contact_identities.c.unreachable.is_(False),
                   contact_identities.c.channel.in_([c.value for c in CHANNEL_PREFERENCE]))
            .order_by(contact_identities.c.id.desc()))
        for r in rows:
            out.setdefault(r.contact_id, []).append(r)
    return out


def pick_recipient(contact_id: int, identities: Sequence[Any], prefer: str | None = None) -> Recipient | None:
    order = [ChannelName(prefer)] if prefer else []
    order += [c for c in CHANNEL_PREFERENCE if c not in order]
    for channel in order:
        for ident in identities:
            if ident.channel == channel.value:
                return Recipient(channel, ident.address, ident.id, contact_id)
    return None


async def _reachable(conn: AsyncConnection, contact_id: int, prefer: str | None) -> Recipient | None:
    return pick_recipient(contact_id, (await reachable_identities(conn, [contact_id])).get(contact_id, []), prefer)


def survey_language(contact_language: str | None, default: str) -> str:
    return pick_language(contact_language, default=default)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@functools.cache
def _active_contacts_statement(dialect: str) -> Select[Any]:
    """Built once per database (see ``lookup.any_key``): it runs in every inbox batch."""
    return select(rule_instances.c.contact_id).distinct().where(
        any_key(dialect, rule_instances.c.contact_id, "contact_ids"),
        or_(rule_instances.c.status == OPEN, rule_instances.c.followup_status == ASKED,
            and_(rule_instances.c.status.in_((EXECUTED, EXPIRED, PAUSED)),
                 rule_instances.c.last_asked_at >= bindparam("recent"))))


__all__ = ["CHANNEL_PREFERENCE", "PENDING", "SurveyRunner", "pick_recipient", "reachable_identities"]

