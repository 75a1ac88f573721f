"""The SLA clock's reads and writes on the cases table (the rules are in core/sla.py).

Everything runs inside the caller's transaction. The inbox's hot path (a customer message
on an open case) is one bulk UPDATE of ``updated_at`` that returns which cases the rule
can change; only those (waiting for the customer, or answered with no next-response
target running: a few per batch) are read and written one by one, by core/sla.py's rules.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Update, bindparam, func, insert, select, type_coerce, update
from sqlalchemy.types import NullType
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.domain import Activity
from posventa.core.persistence.lookup import any_key, key_values
from posventa.core.persistence.schema import case_events, cases, categories, organizations
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


@functools.cache
def _touch_statement(dialect: str) -> Update:
    """``updated_at = :now`` on the given cases, RETURNING what says whether the SLA rule
    can change each one's clock: its activity, and whether it was answered and runs no
    next-response target. Those two come back as they are stored (no type processing:
    only whether they are NULL matters), since SQLite 3.40's RETURNING answers
    ``column IS NULL`` with 0 for a NULL column the statement does not set."""
    return (update(cases).where(any_key(dialect, cases.c.id, "case_ids")).values(updated_at=bindparam("now"))
            .returning(cases.c.id, cases.c.activity, cases.c.sector,
                       type_coerce(cases.c.first_response_at, NullType()).label("first_response_at"),
                       type_coerce(cases.c.next_response_due_at, NullType()).label("next_response_due_at")))


class CaseClockStore:
    """Reads a case's clock and writes what core.sla says; built once per SlaSetup."""

    def __init__(self, setup: SlaSetup) -> None:
        self.setup = setup

    def replace_setup(self, setup: SlaSetup) -> None:
        """Calendars edited while running (core/calendars.py): every later read uses them."""
        self.setup = setup

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

    async def customer_wrote(self, conn: AsyncConnection, case_ids: Collection[int], now: datetime) -> None:
        """The customer wrote in these cases: each is marked updated and its clock follows
        ``core.sla.customer_wrote`` (a next-response target starts where one is due; a case
        waiting for the customer resumes).

        One UPDATE marks them all and says which ones the rule can change: those waiting
        for the customer, and those answered once with no next-response target running
        (the first message after an agent's reply). Only these, a few of a batch, are read
        and written one by one; the others' clock columns are left alone (SQLite updates
        ``ix_cases_due_at`` for a column the UPDATE sets, even to its own value: the bulk
        update that set them through CASE expressions cost 4.7 µs per message over a plain
        one, this 2.4 µs; bench/README.md)."""
        dialect = conn.dialect.name
        rows = (await conn.execute(_touch_statement(dialect), {"case_ids": key_values(dialect, sorted(case_ids)),
                                                              "now": now})).all()
        for row in rows:
            if row.activity == _ANSWER_SENT:
                await self.resume_on_reply(conn, row.id, row.sector, now)
            elif (row.first_response_at is not None and row.next_response_due_at is None
                  and row.activity != _CLOSED and self.setup.enabled):
                clock = await self.clock(conn, row.id)
                values = customer_wrote(clock, self.setup.policy(clock.policy), now, clock.activity)
                if values["next_response_due_at"] != clock.next_response_due_at:
                    await self.write(conn, row.id, values)

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
                                                      **case_history.says(case_history.CUSTOMER_WROTE)))
