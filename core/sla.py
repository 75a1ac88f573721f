"""SLA policies and the case's SLA clock. The rules live here, in one place; callers
(the inbox, CaseService, the console) ask this module for column values to write.

A policy matches by case type, category, channel and organization (every list it gives
must contain the case's value); the first match wins, the default (``[sla]``'s own
targets) applies where none matches. Targets count business minutes of the policy's
calendar:

- first response: from the case's opening to the first agent reply;
- next response: from a customer message that waits for an answer (after the first
  response) to the next agent reply;
- resolution: from the opening to the close.

The clock stops while the case waits for the customer (activity ``answer_sent``) and
starts again when the customer writes: the business minutes spent waiting are added to
``sla_paused_minutes`` and every target moves by as much. A customer's message that reopens a
closed case starts the targets again as for a new case (``reopened``).

``due_at`` is the nearest target still running (NULL when closed, paused or without
targets): one indexed column serves the overdue list and the due-sorted inbox, and
``due_target`` says which target it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from posventa.core.business_hours import BusinessCalendar, CalendarError, build_calendar
from posventa.core.domain import Activity, CaseType, ChannelName
from posventa.core.errors import ValidationError

FIRST_RESPONSE = "first_response"
NEXT_RESPONSE = "next_response"
RESOLUTION = "resolution"
TARGETS = (FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION)
DEFAULT_POLICY = "default"
#: ``sla_breaches`` keeps this many entries at most (bounded row size).
MAX_BREACHES = 100


@dataclass(frozen=True)
class SlaPolicy:
    name: str
    calendar: BusinessCalendar
    first_response_minutes: int = 0
    next_response_minutes: int = 0
    resolution_minutes: int = 0
    types: frozenset[str] = frozenset()
    #: Lower-case category or subcategory names.
    categories: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    #: Lower-case organization names.
    organizations: frozenset[str] = frozenset()

    def matches(self, *, case_type: str, categories: Sequence[str | None], channel: str,
                organization: str | None) -> bool:
        if self.types and case_type not in self.types:
            return False
        if self.channels and channel not in self.channels:
            return False
        if self.categories and not any(c and c.lower() in self.categories for c in categories):
            return False
        return not (self.organizations and (organization or "").lower() not in self.organizations)

    def minutes(self, target: str) -> int:
        return {FIRST_RESPONSE: self.first_response_minutes, NEXT_RESPONSE: self.next_response_minutes,
                RESOLUTION: self.resolution_minutes}[target]


@dataclass(frozen=True)
class SlaSetup:
    """The calendars and policies from config (validated when built)."""

    enabled: bool
    calendars: Mapping[str, BusinessCalendar]
    policies: tuple[SlaPolicy, ...]
    default: SlaPolicy
    outside_hours_notice: bool = True
    by_name: Mapping[str, SlaPolicy] = field(default_factory=dict)

    def match(self, *, case_type: str, categories: Sequence[str | None] = (), channel: str,
              organization: str | None = None) -> SlaPolicy:
        for policy in self.policies:
            if policy.matches(case_type=case_type, categories=categories, channel=channel,
                              organization=organization):
                return policy
        return self.default

    def policy(self, name: str | None) -> SlaPolicy | None:
        return self.by_name.get(name) if name else None

    def notice_calendar(self) -> BusinessCalendar:
        return self.default.calendar


def build_sla_setup(config: Any) -> SlaSetup:
    """Calendars and policies from a ``core.config.Config``; raises ``ValidationError``
    naming the config key of the first thing wrong."""
    calendars: dict[str, BusinessCalendar] = {}
    calendar_configs = config.calendars
    if not calendar_configs:
        from posventa.core.config import CalendarConfig  # the built-in default calendar's values

        calendar_configs = (CalendarConfig(),)
    for i, c in enumerate(calendar_configs):
        key = f"calendars[{i}]"
        if not c.name.strip():
            raise ValidationError("every calendar needs a name", field=f"{key}.name")
        if c.name in calendars:
            raise ValidationError(f"calendar {c.name!r} is defined twice", field=f"{key}.name")
        weekly = {d: getattr(c, d) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
        calendars[c.name] = build_calendar(name=c.name, timezone=c.timezone, weekly=weekly, country=c.country,
                                           subdivision=c.subdivision, closed_days=c.closed_days,
                                           open_days=c.open_days, field_prefix=key)
    sla = config.sla

    def calendar_for(name: str, key: str) -> BusinessCalendar:
        if name not in calendars:
            raise ValidationError(f"no calendar named {name!r} (known: {', '.join(sorted(calendars))})", field=key)
        return calendars[name]

    def targets(obj: Any, key: str) -> dict[str, int]:
        out = {}
        for t in TARGETS:
            value = getattr(obj, f"{t}_minutes")
            if value < 0:
                raise ValidationError("must be 0 (no target) or a positive number of minutes",
                                      field=f"{key}.{t}_minutes")
            if value > 525_600:
                raise ValidationError("must be at most a year of minutes (525600)", field=f"{key}.{t}_minutes")
            out[f"{t}_minutes"] = value
        return out

    default = SlaPolicy(name=DEFAULT_POLICY, calendar=calendar_for(sla.calendar, "sla.calendar"),
                        **targets(sla, "sla"))
    policies = []
    names = {DEFAULT_POLICY}
    for i, p in enumerate(sla.policies):
        key = f"sla.policies[{i}]"
        name = p.name.strip()
        if not name:
            raise ValidationError("every policy needs a name", field=f"{key}.name")
        if name in names:
            raise ValidationError(f"policy name {name!r} is used twice (\"default\" is reserved)", field=f"{key}.name")
        names.add(name)
        allowed_types = {t.value for t in CaseType}
        for t in p.types:
            if t not in allowed_types:
                raise ValidationError(f"{t!r} is not a case type ({', '.join(sorted(allowed_types))})",
                                      field=f"{key}.types")
        allowed_channels = {c.value for c in ChannelName}
        for ch in p.channels:
            if ch not in allowed_channels:
                raise ValidationError(f"{ch!r} is not a channel ({', '.join(sorted(allowed_channels))})",
                                      field=f"{key}.channels")
        policies.append(SlaPolicy(
            name=name, calendar=calendar_for(p.calendar or sla.calendar, f"{key}.calendar"),
            types=frozenset(p.types), channels=frozenset(p.channels),
            categories=frozenset(c.strip().lower() for c in p.categories),
            organizations=frozenset(o.strip().lower() for o in p.organizations),
            **targets(p, key)))
    by_name = {p.name: p for p in (*policies, default)}
    return SlaSetup(enabled=sla.enabled, calendars=calendars, policies=tuple(policies), default=default,
                    outside_hours_notice=sla.outside_hours_notice, by_name=by_name)


# --- the clock of one case ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CaseClock:
    """A case's SLA columns, as read from the database."""

    policy: str | None
    created_at: datetime
    activity: str
    first_response_due_at: datetime | None = None
    first_response_at: datetime | None = None
    next_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    paused_at: datetime | None = None
    paused_minutes: float = 0.0
    breached_target: str | None = None
    breached_at: datetime | None = None
    #: ``sla_breaches`` as stored: every target missed so far.
    breaches: Sequence[Mapping[str, str]] | None = None


#: The case columns a CaseClock is read from, in its field order.
CLOCK_COLUMNS = ("sla_policy", "created_at", "activity", "first_response_due_at", "first_response_at",
                 "next_response_due_at", "resolution_due_at", "sla_paused_at", "sla_paused_minutes",
                 "sla_breached_target", "sla_breached_at", "sla_breaches")


def clock_from_row(row: Any) -> CaseClock:
    return CaseClock(*(getattr(row, c) for c in CLOCK_COLUMNS))


def nearest_due(values: Mapping[str, Any], activity: str) -> tuple[datetime | None, str | None]:
    """(due_at, due_target): the nearest target still running, from full column values."""
    if activity == Activity.CLOSED.value or values.get("sla_paused_at") is not None:
        return None, None
    running = []
    if values.get("first_response_at") is None and values.get("first_response_due_at") is not None:
        running.append((values["first_response_due_at"], FIRST_RESPONSE))
    if values.get("next_response_due_at") is not None:
        running.append((values["next_response_due_at"], NEXT_RESPONSE))
    if values.get("resolution_due_at") is not None:
        running.append((values["resolution_due_at"], RESOLUTION))
    if not running:
        return None, None
    due, target = min(running)
    return due, target


def _values(clock: CaseClock) -> dict[str, Any]:
    return {"first_response_due_at": clock.first_response_due_at, "first_response_at": clock.first_response_at,
            "next_response_due_at": clock.next_response_due_at, "resolution_due_at": clock.resolution_due_at,
            "sla_paused_at": clock.paused_at, "sla_paused_minutes": clock.paused_minutes,
            "sla_breached_target": clock.breached_target, "sla_breached_at": clock.breached_at}


def _finish(values: dict[str, Any], activity: str) -> dict[str, Any]:
    values["due_at"], values["due_target"] = nearest_due(values, activity)
    return values


def _due(policy: SlaPolicy, target: str, start: datetime, extra_minutes: float = 0.0) -> datetime | None:
    minutes = policy.minutes(target)
    return policy.calendar.add_minutes(start, minutes + extra_minutes) if minutes else None


def _breach(values: dict[str, Any], clock: CaseClock, target: str, due: datetime | None, done_at: datetime) -> None:
    """``target`` was due at ``due`` and done at ``done_at``: if late, a breach, kept as the
    case's first where none is, and added to its list (once: the sweep may have seen it)."""
    if due is None or done_at <= due:
        return
    if values.get("sla_breached_target") is None:
        values["sla_breached_target"], values["sla_breached_at"] = target, due
    listed = add_breach(clock.breaches, target, due)
    if listed is not None:
        values["sla_breaches"] = listed


def add_breach(stored: Sequence[Mapping[str, str]] | None, target: str, due: datetime) -> list[dict[str, str]] | None:
    """``sla_breaches`` with (target, due) added; None when it is already there or the list
    is full (a case answered late a hundred times says all it needs to)."""
    entries = [dict(e) for e in stored or () if isinstance(e, Mapping)]
    entry = {"target": target, "at": due.isoformat()}
    if entry in entries or len(entries) >= MAX_BREACHES:
        return None
    return [*entries, entry]


def opened(policy: SlaPolicy, now: datetime, activity: str = Activity.PRELIMINARY_ANALYSIS.value) -> dict[str, Any]:
    """The SLA columns of a new case."""
    values = {"sla_policy": policy.name, "first_response_due_at": _due(policy, FIRST_RESPONSE, now),
              "first_response_at": None, "next_response_due_at": None,
              "resolution_due_at": _due(policy, RESOLUTION, now), "sla_paused_at": None, "sla_paused_minutes": 0.0,
              "sla_breached_target": None, "sla_breached_at": None}
    return _finish(values, activity)


def rematched(clock: CaseClock, policy: SlaPolicy) -> dict[str, Any]:
    """The case now falls under ``policy`` (its type or category changed): its targets are
    counted again from the opening, with the time it spent paused."""
    values = _values(clock)
    values["sla_policy"] = policy.name
    values["first_response_due_at"] = _due(policy, FIRST_RESPONSE, clock.created_at, clock.paused_minutes)
    values["resolution_due_at"] = _due(policy, RESOLUTION, clock.created_at, clock.paused_minutes)
    if clock.next_response_due_at is not None and not policy.next_response_minutes:
        values["next_response_due_at"] = None
    return _finish(values, clock.activity)


def _taken_minutes(clock: CaseClock, policy: SlaPolicy | None, now: datetime) -> float | None:
    """Business minutes of the policy's calendar from the opening to ``now``, less the time
    spent waiting for the customer (a pause running now included): what the targets count.
    None without a policy (a case opened before SLAs, or whose policy left the config)."""
    if policy is None:
        return None
    paused = clock.paused_minutes
    if clock.paused_at is not None:
        paused += policy.calendar.minutes_between(clock.paused_at, now)
    return max(0.0, policy.calendar.minutes_between(clock.created_at, now) - paused)


def _paused_due(clock: CaseClock, policy: SlaPolicy | None, due: datetime | None, target: str,
                now: datetime) -> datetime | None:
    """A target's due time as of ``now``: while paused, the stored due time has not yet moved
    by the running pause (it moves on resuming), so it is counted here."""
    if due is None or clock.paused_at is None or policy is None or not policy.minutes(target):
        return due
    paused = clock.paused_minutes + policy.calendar.minutes_between(clock.paused_at, now)
    return _due(policy, target, clock.created_at, paused)


def agent_replied(clock: CaseClock, policy: SlaPolicy | None, now: datetime) -> dict[str, Any]:
    values = _values(clock)
    if clock.first_response_at is None:
        values["first_response_at"] = now
        due = _paused_due(clock, policy, clock.first_response_due_at, FIRST_RESPONSE, now)
        _breach(values, clock, FIRST_RESPONSE, due, now)
        # For the SLA report: how long it took and whether it was on time (None: no target).
        values["first_response_minutes"] = _taken_minutes(clock, policy, now)
        values["first_response_met"] = None if due is None else now <= due
    elif clock.next_response_due_at is not None:
        _breach(values, clock, NEXT_RESPONSE, clock.next_response_due_at, now)
    values["next_response_due_at"] = None
    return _finish(values, clock.activity)


def activity_changed(clock: CaseClock, policy: SlaPolicy | None, activity: str, now: datetime) -> dict[str, Any]:
    """Closing stops the clock for good (a late close is a resolution breach); moving to
    ``answer_sent`` pauses it; moving out of ``answer_sent`` resumes it."""
    values = _values(clock)
    if activity == Activity.CLOSED.value:
        # Closing from "answer sent" is the usual end: the wait for the customer that ends
        # here is no time the team had, as it would not have been had they written.
        due = _paused_due(clock, policy, clock.resolution_due_at, RESOLUTION, now)
        _breach(values, clock, RESOLUTION, due, now)
        values["resolution_minutes"] = _taken_minutes(clock, policy, now)
        values["resolution_met"] = None if due is None else now <= due
        if clock.first_response_at is None and clock.first_response_due_at is not None:
            # Closed without a reply: the first response was missed if its time had run out.
            first_due = _paused_due(clock, policy, clock.first_response_due_at, FIRST_RESPONSE, now)
            if first_due is not None and first_due < now:
                values["first_response_met"] = False
    elif activity == Activity.ANSWER_SENT.value:
        if clock.paused_at is None:
            values["sla_paused_at"] = now
    elif clock.paused_at is not None and policy is not None:
        _resume(values, clock, policy, now)
    return _finish(values, activity)


def customer_wrote(clock: CaseClock, policy: SlaPolicy | None, now: datetime, activity: str) -> dict[str, Any]:
    """A customer message on an existing case (the general form of the inbox's bulk update):
    the clock resumes, and a next-response target starts if none is running."""
    values = _values(clock)
    if clock.paused_at is not None and policy is not None:
        _resume(values, clock, policy, now)
    if (policy is not None and values["first_response_at"] is not None and values["next_response_due_at"] is None
            and activity != Activity.CLOSED.value):
        values["next_response_due_at"] = _due(policy, NEXT_RESPONSE, now)
    return _finish(values, activity)


def reopened(clock: CaseClock, policy: SlaPolicy, now: datetime) -> dict[str, Any]:
    """A customer's message reopened the closed case (core.case_threading): the clock starts
    again as for a new customer message. The response the customer now waits for is due
    like a new case's (the first response if the case never had one, else a next
    response), and the resolution target counts in full from now. The business minutes
    from the opening to now count as paused, so that a later resume or a policy change
    (both count from the opening plus the pause) keep these targets. The first breach on
    record stays: it happened."""
    values = _values(clock)
    paused = policy.calendar.minutes_between(clock.created_at, now)
    values["sla_policy"] = policy.name
    values["sla_paused_at"] = None
    values["sla_paused_minutes"] = paused
    if clock.first_response_at is None:
        values["first_response_due_at"] = _due(policy, FIRST_RESPONSE, clock.created_at, paused)
    else:
        values["next_response_due_at"] = _due(policy, NEXT_RESPONSE, now)
    values["resolution_due_at"] = _due(policy, RESOLUTION, clock.created_at, paused)
    return _finish(values, clock.activity)


def _resume(values: dict[str, Any], clock: CaseClock, policy: SlaPolicy, now: datetime) -> None:
    assert clock.paused_at is not None
    paused = clock.paused_minutes + policy.calendar.minutes_between(clock.paused_at, now)
    values["sla_paused_at"] = None
    values["sla_paused_minutes"] = paused
    if clock.first_response_at is None:
        values["first_response_due_at"] = _due(policy, FIRST_RESPONSE, clock.created_at, paused)
    values["resolution_due_at"] = _due(policy, RESOLUTION, clock.created_at, paused)


# --- reading ---------------------------------------------------------------------------------

def breach_of(row: Any, now: datetime) -> dict[str, Any] | None:
    """``sla_breached`` as the API shows it: the first target missed and when it was due;
    a target running past its due time counts before any sweep has recorded it."""
    if row.sla_breached_target is not None:
        return {"target": row.sla_breached_target, "at": row.sla_breached_at.isoformat()}
    if row.due_at is not None and row.due_at <= now:
        return {"target": row.due_target, "at": row.due_at.isoformat()}
    return None


def breaches_of(row: Any, now: datetime) -> list[dict[str, str]]:
    """``sla_breaches`` as the API shows it: every target missed, by due time, with the
    first breach of cases recorded before the list existed and a target running past its
    due time that no sweep has recorded yet."""
    entries = [{"target": str(e.get("target")), "at": str(e.get("at"))}
               for e in row.sla_breaches or () if isinstance(e, Mapping)]
    extra = []
    if row.sla_breached_target is not None and row.sla_breached_at is not None:
        extra.append({"target": row.sla_breached_target, "at": row.sla_breached_at.isoformat()})
    if row.due_at is not None and row.due_at <= now and row.due_target:
        extra.append({"target": row.due_target, "at": row.due_at.isoformat()})
    for entry in extra:
        if entry not in entries:
            entries.append(entry)
    return sorted(entries, key=lambda e: (datetime.fromisoformat(e["at"]), TARGETS.index(e["target"])
                                          if e["target"] in TARGETS else len(TARGETS)))


def urgency(setup: SlaSetup, row: Any, now: datetime) -> str | None:
    """``breached``, ``warning`` (under 25% of the running target left) or ``ok``; None
    without a running target. For the console's colours."""
    if row.due_at is None:
        return "breached" if row.sla_breached_target else None
    if row.due_at <= now:
        return "breached"
    policy = setup.policy(row.sla_policy)
    if policy is None or not row.due_target:
        return "ok"
    total = policy.minutes(row.due_target)
    left = policy.calendar.minutes_between(now, row.due_at)
    return "warning" if total and left < 0.25 * total else "ok"


__all__ = ["CalendarError", "SlaPolicy", "SlaSetup", "build_sla_setup"]
