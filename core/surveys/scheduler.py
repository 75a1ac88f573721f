"""Opening, reminding and expiring survey windows: ``SurveyScheduler.tick(now)``.

``posventa serve`` ticks every ``[surveys] tick_seconds`` (a ``core.tasks.Periodic``);
``posventa surveys tick`` ticks once. A tick:

1. **expires** every not-executed window whose end has come (status → expired);
2. **reminds** open surveys whose question has waited ``reminder_after_hours``, once
   per survey (``reminded_at``), then leaves them until they expire;
3. **opens** due windows: one survey per customer at a time, on the customer's
   preferred reachable channel (Telegram, then web chat, then email), by queueing the
   first question in the outbox. A customer with no reachable channel gets the survey
   paused, for an operator to run by phone.

Work is claimed in batches with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL): customers are
locked before their surveys are opened, so several ``serve`` processes ticking at the
same moment never open two surveys for one customer or send a question twice. SQLite
has one writer at a time, which gives the same guarantee.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, select, update

from posventa.core.outgoing import Outgoing, ComposedMessage
from posventa.core.persistence import Database
from posventa.core.persistence.schema import contacts, products, rule_instances, sales
from posventa.core.ports import Clock
from posventa.core.surveys.catalog import rule_questions
from posventa.core.surveys.conversation import (
    EXPIRED,
    OPEN,
    PAUSED,
    PENDING,
    Asking,
    answered_ids,
    intro,
    survey_subject,
    unanswered,
)
from posventa.core.surveys.runner import pick_recipient, reachable_identities, survey_language
from posventa.core.surveys.texts import say

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TickReport:
    expired: int = 0
    reminded: int = 0
    opened: int = 0
    unreachable: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"expired": self.expired, "reminded": self.reminded, "opened": self.opened,
                "unreachable": self.unreachable, "by_channel": dict(self.by_channel)}


class SurveyScheduler:
    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, reminder_after: timedelta,
                 default_language: str = "es", batch_size: int = 500,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        self._reminder_after = reminder_after
        self._default_language = default_language
        self._batch = batch_size
        self._on_commit = on_commit

    async def tick(self, now: datetime | None = None, *,
                   on_progress: Callable[[TickReport], None] | None = None) -> TickReport:
        now = now or self._clock.now()
        report = TickReport()
        report.expired = await self.expire(now)
        while (n := await self._remind_batch(now)) > 0:
            report.reminded += n
        after = 0  # contacts are visited in id order, each batch after the last one
        while True:
            opened, unreachable, by_channel, after, more = await self._open_batch(now, after)
            report.opened += opened
            report.unreachable += unreachable
            for ch, n in by_channel.items():
                report.by_channel[ch] = report.by_channel.get(ch, 0) + n
            if opened:
                self._on_commit()
            if on_progress:
                on_progress(report)
            if not more:
                break
        if report.reminded:
            self._on_commit()
        if report.opened or report.expired or report.reminded or report.unreachable:
            log.info("survey tick: %s", report.as_dict())
        return report

    async def expire(self, now: datetime) -> int:
        """Every window whose end has come and that was not executed: expired.
        Idempotent, so processes racing here only repeat each other's work."""
        async with self._db.transaction() as conn:
            result = await conn.execute(
                update(rule_instances)
                .where(rule_instances.c.status.in_((PENDING, OPEN, PAUSED)), rule_instances.c.window_end <= now)
                .values(status=EXPIRED))
            return result.rowcount or 0

    async def _remind_batch(self, now: datetime) -> int:
        due = now - self._reminder_after
        async with self._db.transaction() as conn:
            rows = (await conn.execute(
                select(rule_instances.c.id, rule_instances.c.rule_id, rule_instances.c.contact_id,
                       rule_instances.c.channel, rule_instances.c.language, products.c.name.label("product_name"))
                .join(sales, sales.c.id == rule_instances.c.sale_id)
                .join(products, products.c.id == sales.c.product_id)
                .where(rule_instances.c.status == OPEN, rule_instances.c.reminded_at.is_(None),
                       rule_instances.c.last_asked_at <= due, rule_instances.c.window_end > now)
                .order_by(rule_instances.c.id).limit(self._batch)
                .with_for_update(of=rule_instances, skip_locked=True))).all()
            if not rows:
                return 0
            identities = await reachable_identities(conn, {r.contact_id for r in rows})
            questions = await rule_questions(conn, sorted({r.rule_id for r in rows}))
            out: list[ComposedMessage] = []
            for r in rows:
                recipient = pick_recipient(r.contact_id, identities.get(r.contact_id, []), prefer=r.channel)
                left = unanswered(questions[r.rule_id], await answered_ids(conn, r.id))
                if recipient is None or recipient.channel.value != r.channel or not left:
                    continue  # the channel became unreachable: the survey just expires
                language = r.language or self._default_language
                asking = Asking(r.id, recipient, language, survey_subject(r.product_name, language))
                number = len(questions[r.rule_id]) - len(left) + 1
                out.append(asking.message(left[0], number, len(questions[r.rule_id]),
                                          lead=say("reminder", language)))
            # Marked even when nothing could be sent: "reminded once, then left".
            await conn.execute(update(rule_instances).where(rule_instances.c.id.in_([r.id for r in rows]))
                               .values(reminded_at=now))
            await self._outgoing.add(conn, out, now=now)
        return len(rows)

    async def _open_batch(self, now: datetime, after: int) -> tuple[int, int, dict[str, int], int, bool]:
        """Open at most one due survey for each of up to ``batch_size`` customers whose
        id is above ``after``; returns the counts, the last customer id seen, and
        whether there may be more."""
        due = and_(rule_instances.c.status == PENDING, rule_instances.c.window_start <= now,
                   rule_instances.c.window_end > now)
        busy = rule_instances.alias("busy")
        async with self._db.transaction() as conn:
            candidates = [r[0] for r in await conn.execute(
                select(rule_instances.c.contact_id).where(
                    due, rule_instances.c.contact_id > after,
                    ~exists().where(busy.c.contact_id == rule_instances.c.contact_id,
                                    # An open survey, or one an agent took over in chat.
                                    (busy.c.status == OPEN) | ((busy.c.status == PAUSED) & busy.c.channel.isnot(None))))
                .group_by(rule_instances.c.contact_id).order_by(rule_instances.c.contact_id)
                .limit(self._batch))]
            if not candidates:
                return 0, 0, {}, after, False
            # Lock the customers (FOR NO KEY UPDATE: the inbox may still insert rows
            # referencing them). A customer another process holds is skipped now and
            # found again on the next tick.
            locked = [r[0] for r in await conn.execute(
                select(contacts.c.id).where(contacts.c.id.in_(candidates)).order_by(contacts.c.id)
                .with_for_update(skip_locked=True, key_share=True))]
            if not locked:
                # All held by another process (its tick opens them); go on past them.
                return 0, 0, {}, candidates[-1], len(candidates) >= self._batch
            # Re-read under the lock: another process may have opened one a moment ago.
            rows = (await conn.execute(
                select(rule_instances.c.id, rule_instances.c.rule_id, rule_instances.c.contact_id,
                       rule_instances.c.window_end, products.c.name.label("product_name"),
                       contacts.c.name.label("customer_name"), contacts.c.language.label("contact_language"))
                .join(sales, sales.c.id == rule_instances.c.sale_id)
                .join(products, products.c.id == sales.c.product_id)
                .join(contacts, contacts.c.id == rule_instances.c.contact_id)
                .where(due, rule_instances.c.contact_id.in_(locked),
                       ~exists().where(busy.c.contact_id == rule_instances.c.contact_id,
                                       (busy.c.status == OPEN) | ((busy.c.status == PAUSED)
                                                                  & busy.c.channel.isnot(None))))
                .order_by(rule_instances.c.contact_id, rule_instances.c.window_end, rule_instances.c.id)
                .with_for_update(of=rule_instances, skip_locked=True))).all()
            first: dict[int, Any] = {}
            due_of: dict[int, list[int]] = {}
            for r in rows:
                first.setdefault(r.contact_id, r)  # the most urgent: earliest end
                due_of.setdefault(r.contact_id, []).append(r.id)
            identities = await reachable_identities(conn, first.keys())
            questions = await rule_questions(conn, sorted({r.rule_id for r in first.values()}))
            opened: list[dict[str, Any]] = []
            unreachable: list[int] = []
            empty: list[int] = []
            out: list[ComposedMessage] = []
            by_channel: dict[str, int] = {}
            for contact_id, r in first.items():
                qs = questions[r.rule_id]
                if not qs:
                    empty.append(r.id)  # a rule without questions has nothing to ask
                    continue
                recipient = pick_recipient(contact_id, identities.get(contact_id, []))
                if recipient is None:
                    unreachable.extend(due_of[contact_id])
                    continue
                language = survey_language(r.contact_language, self._default_language)
                asking = Asking(r.id, recipient, language, survey_subject(r.product_name, language))
                out.append(asking.message(qs[0], 1, len(qs), lead=intro(language, customer_name=r.customer_name,
                                                                        product=r.product_name, count=len(qs))))
                opened.append({"b_id": r.id, "b_channel": recipient.channel.value, "b_language": language})
                by_channel[recipient.channel.value] = by_channel.get(recipient.channel.value, 0) + 1
            if opened:
                await conn.execute(
                    update(rule_instances).where(rule_instances.c.id == bindparam("b_id")).values(
                        status=OPEN, channel=bindparam("b_channel"), language=bindparam("b_language"),
                        opened_at=now, last_asked_at=now, current_position=0, invalid_answers=0)
                    .execution_options(synchronize_session=False), opened)
                await self._outgoing.add(conn, out, now=now)
            if unreachable:
                # Nobody to ask in chat or by email: an operator can phone and record it.
                await conn.execute(update(rule_instances).where(rule_instances.c.id.in_(unreachable))
                                   .values(status=PAUSED, channel=None, opened_at=now))
            if empty:
                await conn.execute(update(rule_instances).where(rule_instances.c.id.in_(empty))
                                   .values(status=PAUSED, channel=None, opened_at=now))
        return len(opened), len(unreachable), by_channel, candidates[-1], len(candidates) >= self._batch
