"""Closing the loop: a detractor answer opens a complaint case, once per survey.

An answer whose weight is at or below its question's threshold (``Question.detractor_at``:
the question's own, else ``[surveys] detractor_weight``) is a *detractor answer*. The first
one in a survey instance opens a case; later ones are added to it. Everything here runs
inside the transaction that records the answer, with the instance row locked, so the case
and the answer commit together or not at all.

Once per instance is the database's job, not only this code's: ``cases.survey_instance_id``
is unique, so a retried webhook, a customer answering twice or two processes racing can
at worst fail a transaction (which the inbox retries, and then finds the case), never
open a second case.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.budget import FOLLOW_PROCESS
from posventa.core.config import SurveysConfig
from posventa.core.domain import LANGUAGES, Activity, CaseType, ChannelName
from posventa.core.persistence.schema import (
    case_events,
    cases,
    categories,
    contacts,
    products,
    rule_instances,
    sales,
    survey_answers,
    survey_questions,
    survey_rule_operators,
    survey_rules,
)
from posventa.core.surveys.catalog import Question, question_from_row
from posventa.core.texts import localized

#: ``cases.origin`` of a detractor survey's case.
ORIGIN_SURVEY = "survey"
#: case_events actor for what the survey does to its case.
ACTOR = "survey"

#: Chooses whom a new detractor case is assigned to, given the rule's operators (in
#: name order). The one call site is ``DetractorCases._open``; ``first_operator`` until
#: automatic assignment (the queue) exists, when service.py passes that instead.
PickAssignee = Callable[[AsyncConnection, Sequence[str]], Awaitable[str | None]]


async def first_operator(_conn: AsyncConnection, operators: Sequence[str]) -> str | None:
    return operators[0] if operators else None


@dataclass(frozen=True, slots=True)
class DetractorPolicy:
    """The config half: the default threshold, the case's category and the closing words."""

    weight: int = -50
    category: str = "Post-sale / Survey"
    replies: Mapping[str, str] | None = None

    @classmethod
    def from_config(cls, config: SurveysConfig) -> DetractorPolicy:
        return cls(weight=config.detractor_weight, category=config.detractor_category,
                   replies={lang: getattr(config.detractor_reply, lang) for lang in LANGUAGES})

    def reply(self, language: str) -> str:
        replies = self.replies or {lang: getattr(SurveysConfig().detractor_reply, lang) for lang in LANGUAGES}
        return localized(replies, language)


@dataclass(frozen=True, slots=True)
class DetractorCase:
    """The instance's case after an answer: its number, and whether this answer opened it."""

    number: int
    opened: bool


class DetractorCases:
    def __init__(self, *, policy: DetractorPolicy, pick_assignee: PickAssignee = first_operator) -> None:
        self.policy = policy
        self._pick_assignee = pick_assignee

    async def case_of(self, conn: AsyncConnection, instance_id: int) -> int | None:
        return (await conn.execute(select(cases.c.id).where(cases.c.survey_instance_id == instance_id))).scalar()

    async def after_answer(self, conn: AsyncConnection, instance_id: int, question: Question, score: str, *,
                           now: datetime, actor: str = ACTOR) -> DetractorCase | None:
        """Call after ``record_answer`` with the instance locked. Opens the case on the
        survey's first detractor answer, adds later answers to it; returns the case (or
        None when the survey has none)."""
        detractor = question.is_detractor(score, self.policy.weight)
        number = await self.case_of(conn, instance_id)
        if number is None and not detractor:
            return None
        if number is None:
            return DetractorCase(await self._open(conn, instance_id, now=now), True)
        # The description always lists every answer so far; a detractor answer is an event too.
        await conn.execute(update(cases).where(cases.c.id == number).values(
            description=await self._description(conn, instance_id), updated_at=now))
        if detractor:
            weight = question.weights[score]
            await conn.execute(insert(case_events).values(
                case_id=number, at=now, actor=actor, kind="detractor_answer", to_value=f"{question.code}={score}"[:300],
                **case_history.says(case_history.DETRACTOR_ANSWER, question=question.text('es'), score=score,
                                    weight=weight)))
        return DetractorCase(number, False)

    async def _open(self, conn: AsyncConnection, instance_id: int, *, now: datetime) -> int:
        r = (await conn.execute(
            select(rule_instances.c.rule_id, rule_instances.c.contact_id, rule_instances.c.channel,
                   rule_instances.c.language, sales.c.external_id, survey_rules.c.name.label("rule_name"),
                   contacts.c.organization_id, contacts.c.language.label("contact_language"))
            .join(sales, sales.c.id == rule_instances.c.sale_id)
            .join(survey_rules, survey_rules.c.id == rule_instances.c.rule_id)
            .join(contacts, contacts.c.id == rule_instances.c.contact_id)
            .where(rule_instances.c.id == instance_id))).one()
        operators = [o for (o,) in await conn.execute(
            select(survey_rule_operators.c.operator).where(survey_rule_operators.c.rule_id == r.rule_id)
            .order_by(survey_rule_operators.c.operator))]
        assignee = await self._pick_assignee(conn, operators)
        category_id, subcategory_id = await self._category(conn)
        channel = r.channel or ChannelName.API.value  # answered by phone: no chat to follow
        description = await self._description(conn, instance_id)
        number = (await conn.execute(insert(cases).values(
            created_at=now, updated_at=now, organization_id=r.organization_id, contact_id=r.contact_id,
            category_id=category_id, subcategory_id=subcategory_id, case_type=CaseType.COMPLAINT.value,
            title=detractor_title(r.rule_name, r.external_id), description=description, channel=channel,
            language=r.language or r.contact_language or "es", assigned_agent=assignee,
            activity=Activity.PRELIMINARY_ANALYSIS.value, budget_mode=FOLLOW_PROCESS,
            kb_problem=description, reply_token=secrets.token_urlsafe(18), self_served=False,
            origin=ORIGIN_SURVEY, survey_instance_id=instance_id,
        ).returning(cases.c.id))).scalar_one()
        await conn.execute(insert(case_events), [
            {"case_id": number, "at": now, "actor": ACTOR, "kind": "opened", "to_value": channel,
             **case_history.says(case_history.DETRACTOR_OPENED, survey=instance_id, sale=r.external_id)},
            *([{"case_id": number, "at": now, "actor": ACTOR, "kind": "assign", "to_value": assignee,
                **case_history.says(case_history.DETRACTOR_ASSIGNED, operators=operators)}]
              if assignee else []),
        ])
        return number

    async def _category(self, conn: AsyncConnection) -> tuple[int, int | None]:
        """The configured "Category / Subcategory", created when missing (an admin may
        rename or deactivate it later; a new name in config makes a new one)."""
        names = [p.strip() for p in self.policy.category.split("/")]
        parent = await _find_or_create_category(conn, names[0], None)
        return parent, (await _find_or_create_category(conn, names[1], parent) if len(names) > 1 else None)

    async def _description(self, conn: AsyncConnection, instance_id: int) -> str:
        return await describe_answers(conn, instance_id, default_weight=self.policy.weight)


def detractor_title(rule_name: str, sale_external_id: str) -> str:
    return f"Detractor survey «{rule_name}» — sale {sale_external_id}"[:300]


async def describe_answers(conn: AsyncConnection, instance_id: int, *, default_weight: int) -> str:
    """Every question answered so far, in order, with its score and weight."""
    head = (await conn.execute(
        select(survey_rules.c.name, sales.c.external_id, sales.c.seller, products.c.name.label("product"),
               rule_instances.c.channel, rule_instances.c.language)
        .join(sales, sales.c.id == rule_instances.c.sale_id)
        .join(products, products.c.id == sales.c.product_id)
        .join(survey_rules, survey_rules.c.id == rule_instances.c.rule_id)
        .where(rule_instances.c.id == instance_id))).one()
    rows = (await conn.execute(
        select(survey_answers.c.score, survey_answers.c.weight, survey_answers.c.answered_by, survey_questions)
        .join(survey_questions, survey_questions.c.id == survey_answers.c.question_id)
        .where(survey_answers.c.instance_id == instance_id).order_by(survey_answers.c.id))).all()
    language = head.language or "es"
    lines = [f"Survey «{head.name}» on sale {head.external_id} ({head.product}, seller {head.seller}), "
             f"answered on {head.channel or 'the phone'}.", "", "Answers so far:"]
    for i, r in enumerate(rows, 1):
        q = question_from_row(r)
        mark = " ⚠ detractor" if q.is_detractor(r.score, default_weight) else ""
        lines.append(f"{i}. [{q.code}] {q.text(language)} → {r.score} (weight {r.weight}){mark}")
    return "\n".join(lines)


#: pg_advisory_xact_lock key serialising the first creation of the detractor category.
_CATEGORY_LOCK = 0x5056_2222


async def _find_or_create_category(conn: AsyncConnection, name: str, parent_id: int | None) -> int:
    same = categories.c.parent_id.is_(None) if parent_id is None else categories.c.parent_id == parent_id
    find = select(categories.c.id).where(same, categories.c.name == name).order_by(categories.c.id).limit(1)
    found = (await conn.execute(find)).scalar()
    if found is not None:
        return found
    if conn.dialect.name == "postgresql":
        # (parent_id, name) is unique, but NULL parents never collide: two processes
        # opening their first detractor cases at once would both create "Post-sale".
        # Held to commit; SQLite has a single writer already.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CATEGORY_LOCK})
        found = (await conn.execute(find)).scalar()
        if found is not None:
            return found
    return (await conn.execute(insert(categories).values(name=name, parent_id=parent_id, active=True)
                               .returning(categories.c.id))).scalar_one()


def instance_case_columns() -> tuple[Any, ...]:
    """Columns for joining an instance to its detractor case (``outerjoin(cases, ...)``)."""
    return (cases.c.id.label("case_number"), cases.c.activity.label("case_activity"),
            cases.c.closed_at.label("case_closed_at"))


__all__ = ["ORIGIN_SURVEY", "DetractorCase", "DetractorCases", "DetractorPolicy", "PickAssignee",
           "describe_answers", "detractor_title", "first_operator"]
