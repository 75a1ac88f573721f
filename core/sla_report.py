"""The SLA report: how many first responses and resolutions were on time, and how long
they took (median and 90th percentile), in total and per agent, sector, channel, type or
week. One place computes it for the console page, the API (JSON and CSV) and the
Prometheus gauges.

What is counted, and how
------------------------

- **Which cases.** Cases *opened* in the period (``since`` to ``until``, both days
  included, UTC) that fall under an SLA policy (``sla_policy`` set: cases from before SLAs
  were enabled are left out). A case is reported in its opening week, so a week's figures
  do not change shape as its cases are answered; only pending targets become decided.
- **Met / missed,** per target (first response, resolution), as core.sla decides at the
  moment: met when done by its due time, missed when done later. A target still running
  past its due time (not paused, case not closed) counts as missed already, as the inbox
  shows it red; a target still running within its time is *pending* and counted in
  neither. A case closed without a reply after its first-response time ran out missed it.
  A target of 0 minutes is no target: never met nor missed.
- **Achievement** = met / (met + missed) × 100, None when nothing was decided.
- **Durations are business minutes** of the case's policy calendar, from the opening to
  the first agent reply (first response) or to the close (resolution), less the business
  minutes the case spent waiting for the customer ("answer sent"): the very measure the
  targets count in, so "median 95 min" reads against a "120 min" target. They are
  recorded by core.sla when the reply or the close happens (only it knows the calendars);
  cases closed before the report columns existed have no duration and are left out of
  the medians. A reopened case's resolution counts at its next close, from
  the reopening (core.sla starts the target again there and counts the time before as
  paused). A case the customer closed themselves (a knowledge-base answer solved it)
  records no resolution: no agent resolved it, so it is in neither count.
- **Median and p90** interpolate linearly between the two nearest ranks (PostgreSQL's
  ``percentile_cont``, numpy's default): the median of 10 and 20 minutes is 15.
- **Agent** is the case's assigned agent now; **week** is the ISO week (from Monday, UTC)
  of the opening, named by its Monday (``2026-11-30``); a case without an agent or sector
  is in the group ``None``.

Cost: one pass over the period's cases for the counts and one window query per target
for the percentiles, which returns at most four rows per group (the ranks around the
median and the p90), whatever the number of cases. The period is at most
``MAX_DAYS`` long. Plain SQL that SQLite (3.25+, window functions) and PostgreSQL run alike;
only the week's expression is per dialect.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import Activity
from posventa.core.errors import ValidationError
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases
from posventa.core.sla import FIRST_RESPONSE, RESOLUTION

GROUPINGS = ("agent", "sector", "channel", "type", "week")
REPORTED_TARGETS = (FIRST_RESPONSE, RESOLUTION)
#: The longest period one report covers: 53 weeks at most, a bounded scan.
MAX_DAYS = 366
DEFAULT_DAYS = 28
#: The quantiles reported, as (name, numerator, denominator): exact integer ranks in SQL.
_QUANTILES = (("median", 1, 2), ("p90", 9, 10))


@dataclass(frozen=True, slots=True)
class TargetFigures:
    """One target's figures in one group."""

    met: int
    missed: int
    #: met / (met + missed) × 100; None when no target was decided.
    achieved_percent: float | None
    #: How many durations the median and p90 are over (targets done, with a duration).
    timed: int
    median_minutes: float | None
    p90_minutes: float | None


@dataclass(frozen=True, slots=True)
class SlaReportRow:
    #: The agent, sector, channel, type or week (Monday, ISO date); None for "none", and
    #: for the total row.
    group: str | None
    cases: int
    first_response: TargetFigures
    resolution: TargetFigures

    def target(self, name: str) -> TargetFigures:
        return self.first_response if name == FIRST_RESPONSE else self.resolution


@dataclass(frozen=True, slots=True)
class SlaReport:
    group_by: str | None
    since: date
    #: The last day included.
    until: date
    generated_at: datetime
    #: Weeks in order; other groupings by number of cases, most first.
    rows: tuple[SlaReportRow, ...]
    total: SlaReportRow


@dataclass(frozen=True, slots=True)
class SlaReportFilter:
    """A report's period and grouping, checked on construction (errors name the field)."""

    since: date
    until: date
    group_by: str | None = None

    def __post_init__(self) -> None:
        if self.group_by is not None and self.group_by not in GROUPINGS:
            raise ValidationError(f"group_by must be one of: {', '.join(GROUPINGS)}", field="group_by")
        if self.until < self.since:
            raise ValidationError("to must not be before from", field="to")
        if (self.until - self.since).days >= MAX_DAYS:
            raise ValidationError(f"the period covers at most {MAX_DAYS} days", field="from")

    @classmethod
    def default(cls, today: date, *, since: date | None = None, until: date | None = None,
                group_by: str | None = None) -> SlaReportFilter:
        """The last ``DEFAULT_DAYS`` days to ``today`` where a bound is not given."""
        last = until or (today if since is None else since + timedelta(days=DEFAULT_DAYS - 1))
        first = since or (last - timedelta(days=DEFAULT_DAYS - 1))
        return cls(since=first, until=last, group_by=group_by)


class SlaReports:
    """Computes SLA reports from the cases table."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def report(self, f: SlaReportFilter, *, now: datetime) -> SlaReport:
        async with self._db.engine.connect() as conn:
            group = _group_expression(f.group_by, conn.dialect.name) if f.group_by else None
            rows = await _figures(conn, f, group, now)
            total = (await _figures(conn, f, None, now)).get(None)
        ordered = sorted(rows.values(), key=(lambda r: (r.group is None, r.group or "")) if f.group_by == "week"
                         else (lambda r: (-r.cases, r.group is None, r.group or "")))
        return SlaReport(group_by=f.group_by, since=f.since, until=f.until, generated_at=now, rows=tuple(ordered),
                         total=total or _empty_row(None))


def _group_expression(group_by: str, dialect: str) -> ColumnElement[Any]:
    if group_by == "week":
        if dialect == "sqlite":
            # Stored as naive UTC text; 'weekday 0' moves to the Sunday ending the week.
            return func.date(cases.c.created_at, "weekday 0", "-6 days")
        return func.to_char(func.date_trunc("week", cases.c.created_at.op("AT TIME ZONE")(literal_column("'UTC'"))),
                            "YYYY-MM-DD")
    return {"agent": cases.c.assigned_agent, "sector": cases.c.sector, "channel": cases.c.channel,
            "type": cases.c.case_type}[group_by]


def _bounds(f: SlaReportFilter) -> tuple[datetime, datetime]:
    return (datetime.combine(f.since, time(), UTC), datetime.combine(f.until + timedelta(days=1), time(), UTC))


def _in_period(f: SlaReportFilter) -> ColumnElement[bool]:
    since, until = _bounds(f)
    return and_(cases.c.created_at >= since, cases.c.created_at < until, cases.c.sla_policy.is_not(None))


def _outcomes(target: str, now: datetime) -> tuple[ColumnElement[int], ColumnElement[int]]:
    """(met, missed) as 0/1 expressions for one case."""
    met_col = cases.c[f"{target}_met"]
    due_col = cases.c[f"{target}_due_at"]
    running = and_(cases.c.activity != Activity.CLOSED.value, cases.c.sla_paused_at.is_(None), met_col.is_(None),
                   due_col <= now)
    if target == FIRST_RESPONSE:
        running = and_(running, cases.c.first_response_at.is_(None))
    met = case((met_col.is_(True), 1), else_=0)
    missed = case((or_(met_col.is_(False), running), 1), else_=0)
    return met, missed


async def _figures(conn: AsyncConnection, f: SlaReportFilter, group: ColumnElement[Any] | None,
                   now: datetime) -> dict[str | None, SlaReportRow]:
    period = _in_period(f)
    columns: list[Any] = [func.count().label("cases")]
    for target in REPORTED_TARGETS:
        met, missed = _outcomes(target, now)
        columns += [func.sum(met).label(f"{target}_met"), func.sum(missed).label(f"{target}_missed")]
    q = select(*columns).where(period)
    if group is not None:
        q = select(group.label("grp"), *columns).where(period).group_by(group)
    counts = {(r.grp if group is not None else None): r for r in await conn.execute(q)}
    quantiles = {target: await _quantiles(conn, period, group, target) for target in REPORTED_TARGETS}
    out: dict[str | None, SlaReportRow] = {}
    for key, r in counts.items():
        figures = {}
        for target in REPORTED_TARGETS:
            met, missed = int(getattr(r, f"{target}_met") or 0), int(getattr(r, f"{target}_missed") or 0)
            timed, median, p90 = quantiles[target].get(key, (0, None, None))
            figures[target] = TargetFigures(met=met, missed=missed,
                                            achieved_percent=round(100 * met / (met + missed), 2)
                                            if met + missed else None,
                                            timed=timed, median_minutes=median, p90_minutes=p90)
        out[key] = SlaReportRow(group=None if key is None else str(key), cases=int(r.cases),
                                first_response=figures[FIRST_RESPONSE], resolution=figures[RESOLUTION])
    return out


def _ranks(n: ColumnElement[int], num: int, den: int) -> tuple[ColumnElement[int], ColumnElement[int]]:
    """The 1-based ranks around the quantile num/den of n values: floor and ceil of
    (n-1)·num/den, plus one. Integer division truncates alike in SQLite and PostgreSQL
    (``//`` renders as ``/`` on integers)."""
    return (n - 1) * num // den + 1, ((n - 1) * num + den - 1) // den + 1


async def _quantiles(conn: AsyncConnection, period: ColumnElement[bool], group: ColumnElement[Any] | None,
                     target: str) -> dict[str | None, tuple[int, float | None, float | None]]:
    """Per group: (number of durations, median, p90). Only the rows at the ranks needed
    come back from the database."""
    minutes = cases.c[f"{target}_minutes"]
    partition = {"partition_by": group} if group is not None else {}
    inner = select(
        (group if group is not None else literal_column("NULL")).label("grp"), minutes.label("m"),
        func.row_number().over(order_by=(minutes, cases.c.id), **partition).label("rn"),
        func.count().over(**partition).label("n"),
    ).where(period, minutes.is_not(None)).subquery()
    wanted = [rank for _, num, den in _QUANTILES for rank in _ranks(inner.c.n, num, den)]
    rows = await conn.execute(select(inner.c.grp, inner.c.m, inner.c.rn, inner.c.n)
                              .where(or_(*(inner.c.rn == rank for rank in wanted))))
    at: dict[str | None, dict[int, float]] = {}
    count: dict[str | None, int] = {}
    for r in rows:
        key = r.grp if group is not None else None
        at.setdefault(key, {})[int(r.rn)] = float(r.m)
        count[key] = int(r.n)
    out: dict[str | None, tuple[int, float | None, float | None]] = {}
    for key, values in at.items():
        n = count[key]
        median, p90 = (_interpolate(values, n, num, den) for _, num, den in _QUANTILES)
        out[key] = (n, median, p90)
    return out


def _interpolate(values: Mapping[int, float], n: int, num: int, den: int) -> float:
    """Linear interpolation between the ranks ``_ranks`` selected."""
    lo = (n - 1) * num // den
    fraction = ((n - 1) * num - lo * den) / den
    low, high = values[lo + 1], values.get(lo + 2, values[lo + 1])
    return round(low + (high - low) * fraction, 2)


def _empty_row(group: str | None) -> SlaReportRow:
    nothing = TargetFigures(met=0, missed=0, achieved_percent=None, timed=0, median_minutes=None, p90_minutes=None)
    return SlaReportRow(group=group, cases=0, first_response=nothing, resolution=nothing)


# --- presentation shared by the API and the console ---------------------------------------

CSV_COLUMNS = ("row", "group_by", "group", "cases", *(f"{t}_{c}" for t in REPORTED_TARGETS for c in (
    "met", "missed", "achieved_percent", "timed", "median_minutes", "p90_minutes")))


def report_dict(report: SlaReport) -> dict[str, Any]:
    """The report as JSON (the API's body)."""
    return {"group_by": report.group_by, "from": report.since.isoformat(), "to": report.until.isoformat(),
            "generated_at": report.generated_at.isoformat(), "rows": [_row_dict(r) for r in report.rows],
            "total": _row_dict(report.total)}


def _row_dict(row: SlaReportRow) -> dict[str, Any]:
    return {"group": row.group, "cases": row.cases,
            **{t: _figures_dict(row.target(t)) for t in REPORTED_TARGETS}}


def _figures_dict(t: TargetFigures) -> dict[str, Any]:
    return {"met": t.met, "missed": t.missed, "achieved_percent": t.achieved_percent, "timed": t.timed,
            "median_minutes": t.median_minutes, "p90_minutes": t.p90_minutes}


def report_csv(report: SlaReport) -> str:
    """One line per group, then the total (``row`` says which); durations in business
    minutes, empty where there is no figure."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for kind, row in [*(("group", r) for r in report.rows), ("total", report.total)]:
        cells: list[Any] = [kind, report.group_by or "", _cell(row.group), row.cases]
        for target in REPORTED_TARGETS:
            t = row.target(target)
            cells += [t.met, t.missed, t.achieved_percent, t.timed, t.median_minutes, t.p90_minutes]
        writer.writerow(["" if c is None else c for c in cells])
    return buf.getvalue()


def _cell(value: str | None) -> str:
    """Spreadsheets run a cell starting with = + - @ as a formula: agent and sector names
    are typed by people, so such a cell gets a leading quote."""
    if value and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value or ""


def rows_for_metrics(report: SlaReport, limit: int) -> Sequence[SlaReportRow]:
    """The ``limit`` groups with most cases (rows are in that order but for weeks)."""
    return sorted(report.rows, key=lambda r: -r.cases)[:limit]
