"""Automatic assignment: each new (or orphaned) open case goes to an available agent
under their capacity, by round robin or to the one with the fewest open cases.

An agent is available while a console page of theirs is open (the live stream reports
presence every few seconds: ``console_seen_at``) or after ``/available`` on the Telegram
desk until ``/away``, and only within the business hours of the ``[sla]`` calendar. A
case derived to a sector goes to that sector's agents. Manual assignment wins: only
cases with nobody assigned are picked, and an agent's own choice is never undone except
by reassignment after ``[assignment] reassign_after_minutes`` away.

Concurrency (several processes on one PostgreSQL): the case row is claimed with
``FOR UPDATE SKIP LOCKED`` (two processes never pick the same case) and the candidate
agents' rows are locked ``FOR UPDATE`` in name order before their open cases are
counted, so two processes cannot both give an agent their last free slot. SQLite has
one writer at a time, which serialises the same transaction.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.business_hours import BusinessCalendar
from posventa.core.domain import Activity
from posventa.core.errors import NotFound, ValidationError
from posventa.core.persistence import Database
from posventa.core.persistence.schema import agent_states, case_events, cases, users
from posventa.core.ports import Clock

log = logging.getLogger(__name__)

ROUND_ROBIN = "round_robin"
LEAST_OPEN = "least_open"
STRATEGIES = (ROUND_ROBIN, LEAST_OPEN)
SYSTEM = "system"
#: A console page reports presence this often; an agent is present for three times as long.
PRESENCE_SECONDS = 15
MAX_CAPACITY = 10_000


@dataclass(frozen=True, slots=True)
class AssignmentRules:
    enabled: bool
    strategy: str
    default_capacity: int
    reassign_after: timedelta | None
    calendar: BusinessCalendar


@dataclass(frozen=True, slots=True)
class Assigned:
    case_id: int
    agent: str
    previous: str | None = None


def check_capacity(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CAPACITY:
        raise ValidationError(f"{field} must be a whole number of cases from 1 to {MAX_CAPACITY}", field=field)
    return value


class Assigner:
    def __init__(self, *, db: Database, clock: Clock, rules: AssignmentRules) -> None:
        self._db = db
        self._clock = clock
        self.rules = rules
        #: Told each assignment after its commit (agent notifications, tests).
        self._listeners: list[Callable[[Assigned], Awaitable[None] | None]] = []

    def subscribe(self, listener: Callable[[Assigned], Awaitable[None] | None]) -> None:
        self._listeners.append(listener)

    async def _tell(self, done: Assigned) -> None:
        for listener in self._listeners:
            try:
                result = listener(done)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("assignment listener failed")

    # --- agents' state -----------------------------------------------------------------------

    async def list_agents(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(
                select(users.c.id.label("user_id"), users.c.username, users.c.display_name,
                       *(c for c in agent_states.c if c.name != "username"))
                .select_from(users.outerjoin(agent_states, agent_states.c.username == users.c.username))
                .where(users.c.active.is_(True)).order_by(users.c.username))).all()
            open_counts = await _open_counts(conn, [r.username for r in rows])
        return [self._agent(r, open_counts.get(r.username, 0), now) for r in rows]

    async def get_agent(self, user_id: int) -> dict[str, Any]:
        for agent in await self.list_agents():
            if agent["id"] == user_id:
                return agent
        raise NotFound(f"agent {user_id} not found")

    async def update_agent(self, user_id: int, *, capacity: int | None = None, sectors: Sequence[str] | None = None,
                           available: bool | None = None, telegram_user_id: int | None = None,
                           email: str | None = None, notify: Any = None) -> dict[str, Any]:
        from posventa.core.notifications import check_preferences  # preferences' rules live there

        values: dict[str, Any] = {}
        if email is not None:
            address = email.strip().lower()
            if address and ("@" not in address or len(address) > 320 or any(c in address for c in "\r\n <>,")):
                raise ValidationError("email is not an email address", field="email")
            values["email"] = address or None
        if notify is not None:
            values["notify"] = check_preferences(notify)
        if capacity is not None:
            values["capacity"] = check_capacity(capacity, "capacity")
        if sectors is not None:
            cleaned = sorted({s.strip() for s in sectors if s.strip()})
            if any(len(s) > 120 or "," in s for s in cleaned):
                raise ValidationError("each sector is at most 120 characters, without commas", field="sectors")
            values["sectors"] = ",".join(cleaned)
        now = self._clock.now()
        if available is not None:
            values["available"] = available
            values["away_since"] = None if available else now
        if telegram_user_id is not None:
            values["telegram_user_id"] = telegram_user_id
        async with self._db.transaction() as conn:
            if telegram_user_id is not None and (await conn.execute(
                    select(agent_states.c.username).join(users, users.c.username == agent_states.c.username)
                    .where(agent_states.c.telegram_user_id == telegram_user_id, users.c.id != user_id))).first():
                raise ValidationError("another agent has this Telegram user id", field="telegram_user_id")
            username = (await conn.execute(select(users.c.username).where(users.c.id == user_id))).scalar()
            if username is None:
                raise NotFound(f"agent {user_id} not found")
            await _ensure_state(conn, username)
            if values:
                await conn.execute(update(agent_states).where(agent_states.c.username == username).values(**values))
        return await self.get_agent(user_id)

    async def seen_in_console(self, username: str) -> None:
        """A console page of ``username`` is open (called by its live stream, every few seconds)."""
        async with self._db.transaction() as conn:
            await _ensure_state(conn, username)
            await conn.execute(update(agent_states).where(agent_states.c.username == username)
                               .values(console_seen_at=self._clock.now()))

    async def set_available_by_telegram(self, telegram_user_id: int, available: bool) -> str | None:
        """The Telegram desk's /available and /away; the agent's name, or None if unknown."""
        async with self._db.transaction() as conn:
            name = (await conn.execute(select(agent_states.c.username)
                                       .where(agent_states.c.telegram_user_id == telegram_user_id))).scalar()
            if name is not None:
                await conn.execute(update(agent_states).where(agent_states.c.username == name).values(
                    available=available, away_since=None if available else self._clock.now()))
        return name

    # --- assigning ------------------------------------------------------------------------------

    async def assign_new(self, case_ids: Collection[int]) -> list[Assigned]:
        """Assign each of these cases (skipping those someone already has)."""
        if not self.rules.enabled:
            return []
        done = []
        for case_id in sorted(case_ids):
            result = await self._assign_one(case_id)
            if result is not None:
                done.append(result)
        return done

    async def tick(self) -> None:
        """One periodic pass (the ticker ``serve`` runs calls it)."""
        await self.sweep()

    async def on_stored(self, stored: Sequence[Any]) -> None:
        """Inbox listener: the batch's new cases, after their commit."""
        new = {s.case_id for s in stored if s.new_case and s.case_id is not None}
        if new:
            await self.assign_new(new)

    async def sweep(self, limit: int = 200) -> list[Assigned]:
        """Open cases with nobody on them (none was available when they came in), and
        cases of agents away longer than ``reassign_after``: assign them now."""
        if not self.rules.enabled:
            return []
        now = self._clock.now()
        async with self._db.engine.connect() as conn:
            waiting = list((await conn.execute(
                select(cases.c.id).where(cases.c.assigned_agent.is_(None), cases.c.activity != Activity.CLOSED.value)
                .order_by(cases.c.id).limit(limit))).scalars())
            orphaned: list[int] = []
            if self.rules.reassign_after is not None:
                gone = select(agent_states.c.username).where(_gone(now - self.rules.reassign_after))
                orphaned = list((await conn.execute(
                    select(cases.c.id).where(cases.c.assigned_agent.in_(gone),
                                             cases.c.activity != Activity.CLOSED.value)
                    .order_by(cases.c.id).limit(limit))).scalars())
        done = []
        for case_id in waiting:
            if (result := await self._assign_one(case_id)) is not None:
                done.append(result)
        for case_id in orphaned:
            if (result := await self._assign_one(case_id, reassign=True)) is not None:
                done.append(result)
        return done

    async def _assign_one(self, case_id: int, *, reassign: bool = False) -> Assigned | None:
        now = self._clock.now()
        if not self.rules.calendar.is_open(now):
            return None
        async with self._db.transaction() as conn:
            pg = conn.dialect.name == "postgresql"
            q = select(cases.c.id, cases.c.sector, cases.c.assigned_agent, cases.c.activity).where(cases.c.id == case_id)
            if pg:
                q = q.with_for_update(skip_locked=True, of=cases)
            case = (await conn.execute(q)).first()
            if case is None or case.activity == Activity.CLOSED.value:
                return None  # gone, closed, or another process is assigning it right now
            previous = case.assigned_agent
            if previous is not None and not (reassign and await self._away_too_long(conn, previous, now)):
                return None  # somebody has it (manual assignment wins)
            agent = await self._choose(conn, case.sector, now, exclude=previous)
            if agent is None:
                return None
            await conn.execute(update(cases).where(cases.c.id == case_id).values(assigned_agent=agent, updated_at=now))
            await conn.execute(update(agent_states).where(agent_states.c.username == agent)
                               .values(last_assigned_at=now))
            await conn.execute(insert(case_events).values(
                case_id=case_id, at=now, actor=SYSTEM, kind="assign", from_value=previous, to_value=agent,
                **(case_history.says(case_history.REASSIGNED, previous=previous) if previous
                   else case_history.says(case_history.ASSIGNED, strategy=self.rules.strategy))))
        done = Assigned(case_id, agent, previous)
        await self._tell(done)
        return done

    async def pick_among(self, conn: AsyncConnection, candidates: Sequence[str]) -> str | None:
        """For a case opened inside another transaction with its own people (a detractor
        survey's case: the rule's operators): the one this strategy picks among those
        available and under capacity; with assignment off, out of hours or nobody free,
        the first candidate, so the case never waits without an owner."""
        if not candidates:
            return None
        now = self._clock.now()
        if self.rules.enabled and self.rules.calendar.is_open(now):
            agent = await self._choose(conn, None, now, exclude=None, only=candidates)
            if agent is not None:
                await conn.execute(update(agent_states).where(agent_states.c.username == agent)
                                   .values(last_assigned_at=now))
                return agent
        return candidates[0]

    async def _away_too_long(self, conn: AsyncConnection, agent: str, now: datetime) -> bool:
        if self.rules.reassign_after is None:
            return False
        return (await conn.execute(select(agent_states.c.username).where(
            agent_states.c.username == agent, _gone(now - self.rules.reassign_after)))).first() is not None

    async def _choose(self, conn: AsyncConnection, sector: str | None, now: datetime, *,
                      exclude: str | None, only: Collection[str] | None = None) -> str | None:
        present_since = now - timedelta(seconds=3 * PRESENCE_SECONDS)
        q = (select(agent_states.c.username, agent_states.c.capacity, agent_states.c.sectors,
                    agent_states.c.last_assigned_at)
             .join(users, users.c.username == agent_states.c.username)
             .where(users.c.active.is_(True),
                    or_(agent_states.c.available.is_(True), agent_states.c.console_seen_at >= present_since))
             .order_by(agent_states.c.username))
        if conn.dialect.name == "postgresql":
            # Locked in one order by every process: no deadlock, and the counts below
            # cannot change under us until commit.
            q = q.with_for_update(of=agent_states)
        rows = [r for r in (await conn.execute(q)).all()
                if r.username != exclude and (not sector or sector in (r.sectors or "").split(","))
                and (only is None or r.username in only)]
        if not rows:
            return None
        counts = await _open_counts(conn, [r.username for r in rows])
        free = [r for r in rows if counts.get(r.username, 0) < (r.capacity or self.rules.default_capacity)]
        if not free:
            return None
        never = datetime.min.replace(tzinfo=now.tzinfo)
        if self.rules.strategy == LEAST_OPEN:
            best = min(free, key=lambda r: (counts.get(r.username, 0), r.last_assigned_at or never, r.username))
        else:
            best = min(free, key=lambda r: (r.last_assigned_at or never, r.username))
        return best.username

    def _agent(self, r: Any, open_cases: int, now: datetime) -> dict[str, Any]:
        present = r.console_seen_at is not None and r.console_seen_at >= now - timedelta(seconds=3 * PRESENCE_SECONDS)
        return {
            "id": r.user_id,
            "username": r.username,
            "display_name": r.display_name,
            "capacity": r.capacity or self.rules.default_capacity,
            "sectors": [s for s in (r.sectors or "").split(",") if s],
            "available": bool(r.available) or present,
            "telegram_available": bool(r.available),
            "console_open": present,
            "away_since": r.away_since.isoformat() if r.away_since else None,
            "open_cases": open_cases,
            "telegram_user_id": r.telegram_user_id,
            "email": r.email,
            "notify": preferences(r.notify),
        }


def preferences(stored: Any) -> dict[str, dict[str, bool]]:
    from posventa.core.notifications import preferences as effective

    return effective(stored)


def _gone(since: datetime) -> Any:
    """Neither available on Telegram nor with a console page open, since ``since`` or longer."""
    return and_(agent_states.c.available.is_(False),
                or_(agent_states.c.console_seen_at.is_(None), agent_states.c.console_seen_at <= since),
                or_(agent_states.c.away_since.is_(None), agent_states.c.away_since <= since))


async def _ensure_state(conn: AsyncConnection, username: str) -> None:
    """The agent's state row, created on first need (two processes may race: one wins)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    await conn.execute(upsert(agent_states).values(username=username, capacity=None, sectors="", available=False)
                       .on_conflict_do_nothing(index_elements=["username"]))


async def _open_counts(conn: AsyncConnection, agents: Sequence[str]) -> dict[str, int]:
    if not agents:
        return {}
    rows = await conn.execute(select(cases.c.assigned_agent, func.count())
                              .where(and_(cases.c.assigned_agent.in_(list(agents)),
                                          cases.c.activity != Activity.CLOSED.value))
                              .group_by(cases.c.assigned_agent))
    return {r[0]: r[1] for r in rows}
