"""The case-type question the bot asks on a new case, and the customer's answer to it.

The acknowledgement of a new unclassified case asks its type with one button per
classified type (``case_type_choices``, question ``"case_type:<case>"``). The answer
(a button, or the type in words or by number: ``typed_answer``) sets the case type, with
its history entry, and re-matches the SLA policy; a case the customer already solved
with a KB article (``self_served``) then closes (``close_self_served``, also used by the
KB feedback answer in ``core.suggestions``).

Owned by cases; the inbox calls ``CaseTypeAnswers`` through ``core.inbox_hooks.ChoiceAnswers``.
"""

from __future__ import annotations

import functools
from dataclasses import replace

from sqlalchemy import insert, update

from posventa.core import case_history
from posventa.core.domain import Activity, Choice, ChoiceAnswer, InboundMessage
from posventa.core.inbox_hooks import ChoiceContext
from posventa.core.outgoing import ComposedMessage
from posventa.core.persistence.schema import case_events, cases
from posventa.core.replies import case_type_from_reply
from posventa.core.sla_store import CaseClockStore
from posventa.core.texts import case_type_name
from posventa.core.workflow import CLASSIFIED_TYPES, MissingCaseType, check_transition

CASE_TYPE_QUESTION = "case_type"

#: A self-served "yes" on a case already answered or closed by an agent changes nothing.
ENDED = frozenset({Activity.CLOSED.value})


@functools.cache
def case_type_choices(language: str) -> tuple[Choice, ...]:
    """The buttons of the case-type question (the same for every new case in a language)."""
    return tuple(Choice(case_type_name(t, language), t.value) for t in CLASSIFIED_TYPES)


def ask_case_type(message: ComposedMessage, case_id: int, language: str) -> ComposedMessage:
    """``message`` with the case-type buttons."""
    return replace(message, choices=case_type_choices(language), question=f"{CASE_TYPE_QUESTION}:{case_id}")


def typed_answer(m: InboundMessage, case_id: int) -> InboundMessage:
    """A customer who answers the type question in words or with the email's number
    ("2", "Reclamo", "reclamação") answers it like a button: read it as that choice."""
    answered = case_type_from_reply(m.text)
    if answered is None:
        return m
    return replace(m, choice=ChoiceAnswer(f"{CASE_TYPE_QUESTION}:{case_id}", answered.value))


async def close_self_served(ctx: ChoiceContext, case_type: str) -> bool:
    """Close the case the customer solved with a KB article, if the workflow lets it."""
    case = ctx.case
    try:
        check_transition(case.activity, Activity.CLOSED, case_type=case_type)
    except MissingCaseType:
        return False
    await ctx.conn.execute(update(cases).where(cases.c.id == case.id).values(
        activity=Activity.CLOSED.value, self_served=True, closed_at=ctx.now, updated_at=ctx.now))
    await ctx.conn.execute(insert(case_events).values(case_id=case.id, at=ctx.now, actor="customer",
                                                      kind="activity", from_value=case.activity,
                                                      to_value=Activity.CLOSED.value,
                                                      **case_history.says(case_history.SELF_SERVED)))
    return True


class CaseTypeAnswers:
    """Implements ``core.inbox_hooks.ChoiceAnswers`` for the case-type question."""

    question = CASE_TYPE_QUESTION

    def __init__(self, *, sla: CaseClockStore | None = None) -> None:
        #: A new type may mean another SLA policy.
        self._sla = sla

    async def answer(self, ctx: ChoiceContext) -> list[ComposedMessage]:
        value, case = ctx.value, ctx.case
        if value not in {t.value for t in CLASSIFIED_TYPES}:
            return []
        if case.case_type != value:
            await ctx.conn.execute(update(cases).where(cases.c.id == case.id).values(case_type=value,
                                                                                     updated_at=ctx.now))
            await ctx.conn.execute(insert(case_events).values(case_id=case.id, at=ctx.now, actor="customer",
                                                              kind="type", from_value=case.case_type, to_value=value))
            if self._sla is not None:
                await self._sla.rematch(ctx.conn, case.id)
        if case.self_served and case.activity not in ENDED and await close_self_served(ctx, value):
            return [ctx.say("self_served")]
        return [ctx.say("type_recorded", type=case_type_name(value, ctx.language))]
