"""The pieces of a survey conversation that the runner (answers), the scheduler
(opening, reminders) and operators (manual answers) share: how a question is asked,
how its button is named, and how answers turn into an executed instance.

Statuses of a rule instance::

    pending ──tick: window opens──► open ──all answered──► executed
       │                             │ ▲
       │                             │ └── resume (operator)
       │                             ▼
       │                          paused   (customer asked for an agent, complained, or
       │                             │      gave three unreadable answers; or no channel)
       └──────── window ends ────────┴──► expired      (executed is final)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import ChannelName, Choice
from posventa.core.outgoing import ComposedMessage, Recipient
from posventa.core.persistence.schema import rule_instances, survey_answers
from posventa.core.surveys.catalog import Question
from posventa.core.surveys.scales import YES_NO, Scale
from posventa.core.surveys.texts import say

QUESTION_PREFIX = "survey"
PENDING, OPEN, EXECUTED, EXPIRED, PAUSED = "pending", "open", "executed", "expired", "paused"
NOT_EXECUTED = (PENDING, OPEN, PAUSED, EXPIRED)
#: An unreadable answer is asked again at most this many times.
MAX_RETRIES = 2
#: Who answered, in survey_answers.answered_by / rule_instances.executed_by.
BY_CUSTOMER = "customer"


def question_key(instance_id: int, question_id: int) -> str:
    """The ``question`` of a survey button: ``survey:<instance>:<question>``."""
    return f"{QUESTION_PREFIX}:{instance_id}:{question_id}"


def parse_question_key(key: str) -> tuple[int, int] | None:
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != QUESTION_PREFIX or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    if len(parts[1]) > 18 or len(parts[2]) > 18:
        return None
    return int(parts[1]), int(parts[2])


def choices_for(scale: Scale, language: str) -> tuple[Choice, ...]:
    if scale.spec == YES_NO:
        return (Choice(say("yes", language), "yes"), Choice(say("no", language), "no"))
    return tuple(Choice(s, s) for s in scale.scores)


def hint_for(scale: Scale, language: str) -> str:
    if scale.spec == YES_NO:
        return say("hint_yes_no", language)
    return say("hint_number", language, low=scale.low, high=scale.high)


@dataclass(frozen=True, slots=True)
class Asking:
    """Everything needed to put one question to one customer."""

    instance_id: int
    recipient: Recipient
    language: str
    subject: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()

    def message(self, question: Question, number: int, total: int, *, lead: str | None = None) -> ComposedMessage:
        parts = [lead] if lead else []
        progress = say("progress", self.language, n=number, total=total) + " " if total > 1 else ""
        parts.append(progress + question.text(self.language))
        choices = choices_for(question.scale, self.language)
        if self.recipient.channel == ChannelName.EMAIL and not _numbered_like_scores(question.scale):
            # Email renders choices as "1) ... 2) ..." and asks for the number: on a 0-10
            # or yes/no scale option 1 is not score 1, so we ask for the score itself.
            choices = ()
            parts.append(f"{hint_for(question.scale, self.language)} {say('hint_email', self.language)}")
        return ComposedMessage(
            recipient=self.recipient, text="\n\n".join(parts), kind="survey", case_title=self.subject,
            language=self.language, automatic=True, choices=choices,
            question=question_key(self.instance_id, question.id), in_reply_to=self.in_reply_to,
            references=self.references, extra=self._extra())

    def _extra(self) -> dict[str, str]:
        return {"survey_instance": str(self.instance_id), "subject": self.subject}

    def say(self, key: str, **params: object) -> ComposedMessage:
        return ComposedMessage(recipient=self.recipient, text=say(key, self.language, **params), kind="survey",
                               case_title=self.subject, language=self.language, automatic=True,
                               in_reply_to=self.in_reply_to, references=self.references, extra=self._extra())


def _numbered_like_scores(scale: Scale) -> bool:
    """True when choice number n is score n (1-5, 1-10): the numbered list is then exact."""
    return scale.numeric and scale.low == 1


def survey_subject(product_name: str, language: str) -> str:
    word = {"es": "Encuesta", "pt": "Pesquisa", "en": "Survey"}.get(language, "Encuesta")
    return f"{word}: {product_name}"[:300]


def intro(language: str, *, customer_name: str | None, product: str, count: int) -> str:
    name = f" {customer_name.split()[0]}" if customer_name and customer_name.split() else ""
    if count == 1:
        return say("intro_one", language, name=name, product=product)
    return say("intro", language, name=name, product=product, count=count)


async def answered_ids(conn: AsyncConnection, instance_id: int) -> set[int]:
    rows = await conn.execute(select(survey_answers.c.question_id).where(survey_answers.c.instance_id == instance_id))
    return {r[0] for r in rows}


def unanswered(questions: Sequence[Question], answered: set[int]) -> list[Question]:
    """What is left to ask, in the rule's current order (robust to edits of the rule)."""
    return [q for q in questions if q.id not in answered]


async def record_answer(conn: AsyncConnection, instance_id: int, question: Question, score: str, *, by: str,
                        now: datetime) -> None:
    """Store one answer with its weight, replacing an earlier answer to the same question."""
    await conn.execute(delete(survey_answers).where(survey_answers.c.instance_id == instance_id,
                                                    survey_answers.c.question_id == question.id))
    await conn.execute(insert(survey_answers).values(
        instance_id=instance_id, question_id=question.id, score=score, weight=question.weights[score],
        answered_at=now, answered_by=by[:120]))


async def finish(conn: AsyncConnection, instance_id: int, *, by: str, now: datetime) -> tuple[float, float]:
    """Mark executed with its total weighted score (sum of weights) and the normalised
    score (the mean weight per answer, so always within -100..100)."""
    total, count = (await conn.execute(
        select(func.coalesce(func.sum(survey_answers.c.weight), 0), func.count())
        .where(survey_answers.c.instance_id == instance_id))).one()
    normalized = float(total) / count if count else 0.0
    await conn.execute(update(rule_instances).where(rule_instances.c.id == instance_id).values(
        status=EXECUTED, executed_at=now, executed_by=by[:120], total_score=float(total),
        normalized_score=normalized, current_position=count, invalid_answers=0))
    return float(total), normalized
