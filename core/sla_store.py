"""The SLA clock's reads and writes on the cases table (the rules are in core/sla.py).

Everything runs inside the caller's transaction. The inbox's hot path (a customer message
on an open case) is one bulk UPDATE whose CASE expressions start the next-response
target where one is due; only cases waiting for the customer ("answer sent", rare) are
read and written one by one, to resume their clock.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Update, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import Activity
from posventa.core.persistence.lookup import any_key, key_values
from posventa.core.persistence.schema import UTCDateTime, case_events, cases, categories, organizations
from posventa.core.sla import (
    CLOCK_COLUMNS,
    CaseClock,
    SlaPolicy,
    SlaSetup,
    clock_from_row,
    customer_wrote,
    rematched,
    reopened,
)

_CLOCK_COLS = tuple(cases.c[name] for name in CLOCK_COLUMNS)
_CLOSED = Activity.CLOSED.value
_ANSWER_SENT = Activity.ANSWER_SENT.value


class CaseClockStore:
    """Reads a case's clock and writes what core.sla says; built once per SlaSetup."""

    def __init__(self, setup: SlaSetup) -> None:
        self.setup = setup
        #: One bind parameter per policy for the bulk update's next-response due time.
        self._policies: tuple[SlaPolicy, ...] = tuple(setup.by_name.values())

    def replace_setup(self, setup: SlaSetup) -> None:
        """Calendars edited while running (core/calendars.py): every later read uses them."""
        self._policies = tuple(setup.by_name.values())
        self.setup = setup
        # The bulk update names each policy: rebuilt for the new set on next use.
        CaseClockStore.touch_statement.cache_clear()

    async def clock(self, conn: AsyncConnection, case_id: int, *, lock: bool = False) -> CaseClock:
        q = select(*_CLOCK_COLS).where(cases.c.id == case_id)
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        return clock_from_row((await conn.execute(q)).one())

    async def policy_for(self, conn: AsyncConnection, case_id: int) -> SlaPolicy:
        """Match the case's current type, category, channel and organization."""
        cat, sub = categories.alias("c1"), categories.alias("c2")
        row = (await conn.execute(
            select(cases.c.case_type, cases.c.channel, cat.c.name.label("cat"), sub.c.name.label("sub"),
                   organizations.c.name.label("org"))
            .select_from(cases.outerjoin(cat, cat.c.id == cases.c.category_id)
                         .outerjoin(sub, sub.c.id == cases.c.subcategory_id)
                         .outerjoin(organizations, organizations.c.id == cases.c.organization_id))
            .where(cases.c.id == case_id))).one()
        return self.setup.match(case_type=row.case_type, categories=(row.cat, row.sub), channel=row.channel,
                                organization=row.org)

    async def write(self, conn: AsyncConnection, case_id: int, values: dict[str, Any]) -> None:
        await conn.execute(update(cases).where(cases.c.id == case_id).values(**values))

    async def organization_names(self, conn: AsyncConnection, ids: Collection[int]) -> dict[int, str]:
        if not ids or not any(p.organizations for p in self.setup.policies):
            return {}
        rows = await conn.execute(select(organizations.c.id, organizations.c.name)
                                  .where(organizations.c.id.in_(sorted(ids))))
        return {r.id: r.name for r in rows}

    async def rematch(self, conn: AsyncConnection, case_id: int) -> None:
        """After a change of type, category or organization: the policy may be another."""
        if not self.setup.enabled:
            return
        policy = await self.policy_for(conn, case_id)
        clock = await self.clock(conn, case_id)
        if clock.policy != policy.name:
            await self.write(conn, case_id, rematched(clock, policy))

    async def reopened(self, conn: AsyncConnection, case_ids: Collection[int], now: datetime) -> None:
        """Closed cases a customer's message just reopened (their activity already set):
        each clock starts again (core.sla.reopened), under the policy the case matches now."""
        if not self.setup.enabled:
            return
        for case_id in sorted(case_ids):
            clock = await self.clock(conn, case_id, lock=True)
            await self.write(conn, case_id, reopened(clock, await self.policy_for(conn, case_id), now))

    async def running_counts(self, conn: AsyncConnection, now: datetime) -> tuple[int, int]:
        """(cases with a running target, of which overdue): two index range counts."""
        running = (await conn.execute(select(func.count()).where(cases.c.due_at.is_not(None)))).scalar_one()
        overdue = (await conn.execute(select(func.count()).where(cases.c.due_at <= now))).scalar_one()
        return running, overdue

    # --- the inbox: customer messages on existing cases -------------------------------------

    def touch_params(self, now: datetime) -> dict[str, Any]:
        """The bulk update's parameters: each policy's next-response due time from ``now``."""
        params: dict[str, Any] = {}
        for i, policy in enumerate(self._policies):
            minutes = policy.next_response_minutes if self.setup.enabled else 0
            params[f"nd_{i}"] = policy.calendar.add_minutes(now, minutes) if minutes else None
        return params

    @functools.cache  # noqa: B019  (one store per service; a handful of dialects)
    def touch_statement(self, dialect: str) -> Update:
        """``updated_at = :now`` on the given cases, and where a case has had its first
        response and no next-response target runs, start one (and move ``due_at`` to it
        when nearer). RETURNING the activity: cases in "answer sent" then resume."""
        next_due = case(*((cases.c.sla_policy == p.name, bindparam(f"nd_{i}", type_=UTCDateTime()))
                          for i, p in enumerate(self._policies)), else_=None)
        starts = and_(cases.c.sla_paused_at.is_(None), cases.c.activity != _CLOSED,
                      cases.c.first_response_at.is_not(None), cases.c.next_response_due_at.is_(None),
                      next_due.is_not(None))
        return (update(cases).where(any_key(dialect, cases.c.id, "case_ids"))
                .values(updated_at=bindparam("now"),
                        next_response_due_at=case((starts, next_due), else_=cases.c.next_response_due_at),
                        due_at=case((and_(starts, or_(cases.c.due_at.is_(None), cases.c.due_at > next_due)),
                                     next_due), else_=cases.c.due_at),
                        due_target=case((and_(starts, or_(cases.c.due_at.is_(None), cases.c.due_at > next_due)),
                                         "next_response"), else_=cases.c.due_target))
                .returning(cases.c.id, cases.c.activity, cases.c.sector))

    async def customer_wrote(self, conn: AsyncConnection, case_ids: Collection[int], now: datetime) -> None:
        dialect = conn.dialect.name
        rows = (await conn.execute(self.touch_statement(dialect),
                                   {"case_ids": key_values(dialect, sorted(case_ids)), "now": now,
                                    **self.touch_params(now)})).all()
        for row in rows:
            if row.activity == _ANSWER_SENT:
                await self.resume_on_reply(conn, row.id, row.sector, now)

    async def resume_on_reply(self, conn: AsyncConnection, case_id: int, sector: str | None, now: datetime) -> None:
        """The customer answered a case that waited for them: back to work (derived to its
        sector, or analysis), and the SLA clock runs again."""
        target = Activity.DERIVED.value if sector else Activity.PRELIMINARY_ANALYSIS.value
        clock = await self.clock(conn, case_id)
        values = customer_wrote(clock, self.setup.policy(clock.policy) if self.setup.enabled else None, now, target)
        values["activity"] = target
        await self.write(conn, case_id, values)
        await conn.execute(insert(case_events).values(case_id=case_id, at=now, actor="customer", kind="activity",
                                                      from_value=_ANSWER_SENT, to_value=target,
                                                      detail="the customer wrote"))
