"""Re-survey after resolution (``resurvey_after_close`` on a rule).

When an agent closes a survey's detractor case, the customer gets one question on the
survey's channel: "Was your problem solved? yes/no". Its answer and weight go to the
instance's ``followup_*`` columns, never to its answers or ``total_score``: commission
depends on the original score. Asked once (``followup_status``: asked, then answered),
and only when the survey itself is no longer running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.outgoing import ComposedMessage, Recipient
from posventa.core.persistence.schema import cases, contacts, products, rule_instances, sales, survey_rules
from posventa.core.surveys.catalog import Question
from posventa.core.surveys.conversation import OPEN, Asking, survey_subject
from posventa.core.surveys.scales import Scale
from posventa.core.surveys.texts import say

ASKED, ANSWERED = "asked", "answered"
#: The follow-up's place in a button key: ``survey:<instance>:0`` (question ids start at 1).
FOLLOWUP_QUESTION_ID = 0
#: Kept apart from the survey's score: yes +100, no -100.
FOLLOWUP_WEIGHTS = {"yes": 100, "no": -100}


def followup_question(language: str) -> Question:
    text = say("followup", language)
    return Question(FOLLOWUP_QUESTION_ID, "followup", {"es": text, "pt": text, "en": text}, Scale.parse("yes/no"),
                    FOLLOWUP_WEIGHTS, detractor_off=True)


class Followups:
    def __init__(self, *, default_language: str = "es") -> None:
        self._default_language = default_language

    async def case_closed(self, conn: AsyncConnection, case_number: int, now: datetime) -> Sequence[ComposedMessage]:
        """``CaseService``'s closed hook: the follow-up question, when the case is a
        detractor case of a rule that wants one and it was not asked yet."""
        # Imported here: the runner imports this module (it answers the follow-up).
        from posventa.core.surveys.runner import pick_recipient, reachable_identities

        r = (await conn.execute(
            select(rule_instances.c.id, rule_instances.c.contact_id, rule_instances.c.channel,
                   rule_instances.c.language, rule_instances.c.status, products.c.name.label("product_name"),
                   contacts.c.language.label("contact_language"))
            .join(cases, cases.c.survey_instance_id == rule_instances.c.id)
            .join(survey_rules, survey_rules.c.id == rule_instances.c.rule_id)
            .join(sales, sales.c.id == rule_instances.c.sale_id)
            .join(products, products.c.id == sales.c.product_id)
            .join(contacts, contacts.c.id == rule_instances.c.contact_id)
            .where(cases.c.id == case_number, survey_rules.c.resurvey_after_close.is_(True),
                   rule_instances.c.followup_status.is_(None), rule_instances.c.status != OPEN)
            .with_for_update(of=rule_instances))).first()
        if r is None:
            return []
        identities = (await reachable_identities(conn, [r.contact_id])).get(r.contact_id, [])
        recipient = pick_recipient(r.contact_id, identities, prefer=r.channel)
        if recipient is None:
            return []  # answered by phone, or the channel is gone: nobody to ask
        language = r.language or r.contact_language or self._default_language
        asking = Asking(r.id, recipient, language, survey_subject(r.product_name, language))
        await conn.execute(update(rule_instances).where(rule_instances.c.id == r.id).values(
            followup_status=ASKED, followup_asked_at=now))
        return [dataclasses.replace(asking.message(followup_question(language), 1, 1), case_id=case_number)]

    @staticmethod
    async def pending(conn: AsyncConnection, contact_id: int) -> Any:
        """The contact's follow-up waiting for an answer (the newest), with its case, or None."""
        return (await conn.execute(
            select(rule_instances.c.id, rule_instances.c.channel, rule_instances.c.language,
                   products.c.name.label("product_name"), cases.c.id.label("case_number"))
            .join(cases, cases.c.survey_instance_id == rule_instances.c.id)
            .join(sales, sales.c.id == rule_instances.c.sale_id)
            .join(products, products.c.id == sales.c.product_id)
            .where(rule_instances.c.contact_id == contact_id, rule_instances.c.followup_status == ASKED)
            .order_by(rule_instances.c.followup_asked_at.desc()).limit(1)
            .with_for_update(of=rule_instances))).first()

    @staticmethod
    async def record(conn: AsyncConnection, instance_id: int, score: str, now: datetime) -> None:
        await conn.execute(update(rule_instances).where(rule_instances.c.id == instance_id,
                                                        rule_instances.c.followup_status == ASKED).values(
            followup_status=ANSWERED, followup_score=score, followup_weight=FOLLOWUP_WEIGHTS[score],
            followup_answered_at=now))

    @staticmethod
    def thanks(instance_id: int, recipient: Recipient, language: str, product_name: str,
               case_number: int) -> ComposedMessage:
        asking = Asking(instance_id, recipient, language, survey_subject(product_name, language))
        return dataclasses.replace(asking.say("followup_thanks"), case_id=case_number)


__all__ = ["ANSWERED", "ASKED", "FOLLOWUP_QUESTION_ID", "Followups", "followup_question"]
