"""The manager panel and the commission scores: read-only queries.

Sections (for the rules an operator is responsible for, or all rules)::

    my_rules         window open now (start <= now < end) and not executed
    executed         status executed
    not_executed     window already started and not executed (= my_rules + inconsistencies)
    inconsistencies  not executed and the window already ended (expired)

Seller scores, over the executed surveys of the sales in the filter::

    n                  number of executed surveys
    sum                Σ total_i                   total_i = Σ weights of survey i's answers
    average            sum / n
    normalized_average (1/n) Σ (total_i / answers_i)   each term is a mean weight, so the
                                                       result is always within -100..100

The date range (``date_from``..``date_to``, local dates in ``[surveys] timezone``, both
inclusive) filters on the sale's closing date: commission follows the deal.

Detractors (what was done about the bad answers): every survey with a detractor case,
with the case's state and the time from the case opening to the first agent reply::

    open       no agent reply yet, not closed
    answered   an agent replied (or the case is in "answer sent"), not closed
    closed     the case is closed

Seller scores add ``detractors`` (surveys of the seller's sales with a detractor case)
and ``detractors_closed`` (how many of those cases are closed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case as sql_case
from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.errors import ValidationError
from posventa.core.persistence import Database
from posventa.core.domain import Activity, Author, Direction
from posventa.core.persistence.schema import (
    cases,
    contacts,
    messages,
    products,
    rule_instances,
    sales,
    survey_rule_operators,
    survey_rules,
)
from posventa.core.ports import Clock
from posventa.core.surveys.conversation import EXECUTED, EXPIRED, OPEN, PAUSED, PENDING
from posventa.core.surveys.windows import day_range

SECTIONS = ("my_rules", "executed", "not_executed", "inconsistencies")
_STATUSES = {
    "my_rules": (PENDING, OPEN, PAUSED),
    "executed": (EXECUTED,),
    "not_executed": (PENDING, OPEN, PAUSED, EXPIRED),
    "inconsistencies": (PENDING, OPEN, PAUSED, EXPIRED),
}
#: Below SQLite's limit of 500 terms in one compound SELECT.
_MAX_BRANCHES = 100
MAX_LIMIT = 500
EXPORT_BATCH = 2000


@dataclass(frozen=True, slots=True)
class PanelFilter:
    operator: str | None = None
    seller: str | None = None
    product: str | None = None
    rule_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None

    def __post_init__(self) -> None:
        for name in ("operator", "seller", "product"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > 120):
                raise ValidationError(f"{name} must be a name of at most 120 characters", field=name)
            if value is not None and "\x00" in value:  # PostgreSQL refuses it in a parameter: a 500
                raise ValidationError(f"{name} contains a NUL character", field=name)
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValidationError("date_from is after date_to", field="date_from")


DETRACTOR_STATES = ("open", "answered", "closed")
_DETRACTOR_COLUMNS = ("id", "status", "rule", "sale", "seller", "product", "customer", "total_score",
                      "normalized_score", "case_number", "case_title", "case_activity", "state", "assigned_agent",
                      "case_opened_at", "first_response_at", "first_response_seconds", "case_closed_at")
_ITEM_COLUMNS = ("id", "status", "rule_id", "rule", "sale", "seller", "product", "customer_id", "customer",
                 "closed_at", "window_start", "window_end", "channel", "opened_at", "executed_at", "executed_by",
                 "total_score", "normalized_score")


class Panel:
    def __init__(self, *, db: Database, clock: Clock, tz: ZoneInfo) -> None:
        self._db = db
        self._clock = clock
        self._tz = tz

    async def _rule_ids(self, conn: AsyncConnection, f: PanelFilter) -> list[int]:
        """The rules in scope: the operator's (or all), narrowed to ``rule_id``."""
        q = select(survey_rules.c.id).order_by(survey_rules.c.id)
        if f.operator is not None:
            q = (select(survey_rule_operators.c.rule_id).where(survey_rule_operators.c.operator == f.operator)
                 .order_by(survey_rule_operators.c.rule_id))
        ids = [r[0] for r in await conn.execute(q)]
        return [i for i in ids if f.rule_id is None or i == f.rule_id]

    def _sale_terms(self, f: PanelFilter) -> list[Any]:
        """WHERE terms for the sale filters (seller, product, closing dates), as one
        ``sale_id IN (matching sales)``: the database builds that set once and checks
        each survey against it, instead of visiting the sale row of every survey."""
        terms: list[Any] = []
        if f.seller is not None:
            terms.append(sales.c.seller == f.seller)
        if f.product is not None:
            terms.append(sales.c.product_id == select(products.c.id).where(products.c.code == f.product)
                         .scalar_subquery())
        lo, hi = day_range(f.date_from, f.date_to, self._tz)
        if lo is not None:
            terms.append(sales.c.closed_at >= lo)
        if hi is not None:
            terms.append(sales.c.closed_at < hi)
        if not terms:
            return []
        return [rule_instances.c.sale_id.in_(select(sales.c.id).where(*terms))]

    @staticmethod
    def _when(name: str, now: Any) -> list[Any]:
        """The time part of a section; its statuses are in ``_STATUSES``."""
        ri = rule_instances.c
        if name == "my_rules":
            return [ri.window_start <= now, ri.window_end > now]
        if name == "not_executed":
            return [ri.window_start <= now]
        if name == "inconsistencies":
            return [ri.window_end <= now]
        return []

    def _where(self, name: str, now: Any, rule_ids: list[int], sale_terms: list[Any]) -> list[Any]:
        return [rule_instances.c.rule_id.in_(rule_ids), rule_instances.c.status.in_(_STATUSES[name]),
                *self._when(name, now), *sale_terms]

    @staticmethod
    def _from(sale_terms: list[Any]) -> Any:
        return rule_instances

    async def panel(self, f: PanelFilter, *, section: str | None = None, limit: int = 50,
                    offset: int = 0) -> dict[str, Any]:
        """Counts of every section, and a page of items of ``section`` (or of each)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
        if offset < 0:
            raise ValidationError("offset must be 0 or more", field="offset")
        wanted = [section] if section else list(SECTIONS)
        _check_sections(wanted)
        now = self._clock.now()
        sale_terms = self._sale_terms(f)
        async with self._db.engine.connect() as conn:
            rule_ids = await self._rule_ids(conn, f)
            counts = {s: 0 for s in SECTIONS}
            items: dict[str, list[dict[str, Any]]] = {s: [] for s in wanted}
            if rule_ids:
                for s in ("my_rules", "executed", "inconsistencies"):
                    counts[s] = (await conn.execute(
                        select(func.count()).select_from(self._from(sale_terms))
                        .where(*self._where(s, now, rule_ids, sale_terms)))).scalar_one()
                counts["not_executed"] = counts["my_rules"] + counts["inconsistencies"]
                pages = {s: await self._page(conn, s, now, rule_ids, sale_terms, limit, offset)
                         for s in wanted if counts[s] > offset}
                wanted_ids = sorted({i for page in pages.values() for i in page})
                if wanted_ids:  # one query for the details of every section's page
                    rows = {r.id: r for r in await conn.execute(
                        self._item_query().where(rule_instances.c.id.in_(wanted_ids)))}
                    for s, page in pages.items():
                        items[s] = [_item(rows[i]) for i in page if i in rows]
        return {"now": now.isoformat(), "counts": counts, "items": items}

    async def _page(self, conn: AsyncConnection, name: str, now: Any, rule_ids: list[int], sale_terms: list[Any],
                    limit: int, offset: int) -> list[int]:
        """The ids of one page of a section, most urgent (my_rules) or most recent first.

        Each (rule, status) pair is read in window order straight off the index
        (rule_id, status, window_end) and only its first offset+limit rows are kept;
        merging those small runs is what keeps an operator's page fast at millions of
        surveys, where one ORDER BY over every not-executed row would sort them all."""
        ri = rule_instances.c
        newest_first = name != "my_rules"
        order = (ri.window_end.desc(), ri.id.desc()) if newest_first else (ri.window_end.asc(), ri.id.asc())
        keep = offset + limit
        branches = [
            select(ri.id, ri.window_end).select_from(self._from(sale_terms))
            .where(ri.rule_id == rule_id, ri.status == status, *self._when(name, now), *sale_terms)
            .order_by(*order).limit(keep).subquery()
            for rule_id in rule_ids for status in _STATUSES[name]
        ]
        found: list[tuple[Any, int]] = []
        for start in range(0, len(branches), _MAX_BRANCHES):
            part = branches[start:start + _MAX_BRANCHES]
            query = union_all(*(select(b.c.id, b.c.window_end) for b in part)) if len(part) > 1 \
                else select(part[0].c.id, part[0].c.window_end)
            found.extend((r.window_end, r.id) for r in await conn.execute(query))
        found.sort(reverse=newest_first)
        return [iid for _, iid in found[offset:offset + limit]]

    def _item_query(self) -> Any:
        return (select(rule_instances.c.id, rule_instances.c.status, rule_instances.c.rule_id,
                       survey_rules.c.name.label("rule"), sales.c.external_id.label("sale"), sales.c.seller,
                       products.c.code.label("product"), rule_instances.c.contact_id.label("customer_id"),
                       contacts.c.name.label("customer"), sales.c.closed_at, rule_instances.c.window_start,
                       rule_instances.c.window_end, rule_instances.c.channel, rule_instances.c.opened_at,
                       rule_instances.c.executed_at, rule_instances.c.executed_by, rule_instances.c.total_score,
                       rule_instances.c.normalized_score)
                .join(sales, sales.c.id == rule_instances.c.sale_id)
                .join(products, products.c.id == sales.c.product_id)
                .join(survey_rules, survey_rules.c.id == rule_instances.c.rule_id)
                .join(contacts, contacts.c.id == rule_instances.c.contact_id))

    async def export_csv(self, f: PanelFilter, *, section: str | None = None) -> AsyncIterator[str]:
        """The panel as CSV text, in pieces: one section, or every section with a
        ``section`` column first. Streams in batches, so any size exports in bounded memory."""
        wanted = [section] if section else list(SECTIONS)
        _check_sections(wanted)
        now = self._clock.now()
        sale_terms = self._sale_terms(f)
        async with self._db.engine.connect() as conn:
            rule_ids = await self._rule_ids(conn, f)
        yield _csv_line(["section", *_ITEM_COLUMNS])
        for name in wanted:
            after = 0
            while rule_ids:
                async with self._db.engine.connect() as conn:
                    rows = (await conn.execute(
                        self._item_query().where(*self._where(name, now, rule_ids, sale_terms),
                                                 rule_instances.c.id > after)
                        .order_by(rule_instances.c.id).limit(EXPORT_BATCH))).all()
                if not rows:
                    break
                buf = io.StringIO()
                writer = csv.writer(buf, lineterminator="\r\n")
                for r in rows:
                    item = _item(r)
                    writer.writerow([name, *(_cell(item[c]) for c in _ITEM_COLUMNS)])
                yield buf.getvalue()
                after = rows[-1].id

    async def seller_scores(self, f: PanelFilter) -> list[dict[str, Any]]:
        """Commission scores per seller (formulas in the module docstring)."""
        ri = rule_instances.c
        terms = [ri.status == EXECUTED, *self._sale_terms(f)]
        if f.operator is not None or f.rule_id is not None:
            async with self._db.engine.connect() as conn:
                terms.append(ri.rule_id.in_(await self._rule_ids(conn, f)))
        q = (select(sales.c.seller, func.count().label("n"), func.sum(ri.total_score).label("sum"),
                    func.avg(ri.total_score).label("average"), func.avg(ri.normalized_score).label("normalized"))
             .select_from(rule_instances).join(sales, sales.c.id == ri.sale_id)
             .where(*terms).group_by(sales.c.seller).order_by(sales.c.seller))
        # Detractor cases of any survey of the seller's sales (a detractor who then
        # asked for an agent leaves the survey paused, not executed: it still counts).
        closed = sql_case((cases.c.activity == Activity.CLOSED.value, 1), else_=0)
        dq = (select(sales.c.seller, func.count(cases.c.id).label("n"), func.sum(closed).label("closed"))
              .select_from(rule_instances).join(sales, sales.c.id == ri.sale_id)
              .join(cases, cases.c.survey_instance_id == ri.id)
              .where(*terms[1:]).group_by(sales.c.seller))
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            detractors = {r.seller: (int(r.n), int(r.closed or 0)) for r in await conn.execute(dq)}
        out = {r.seller: {"seller": r.seller, "surveys": int(r.n), "sum": round(float(r.sum or 0), 4),
                          "average": round(float(r.average or 0), 4),
                          "normalized_average": round(float(r.normalized or 0), 4)} for r in rows}
        for seller in detractors.keys() - out.keys():
            out[seller] = {"seller": seller, "surveys": 0, "sum": 0.0, "average": 0.0, "normalized_average": 0.0}
        for seller, row in out.items():
            row["detractors"], row["detractors_closed"] = detractors.get(seller, (0, 0))
        return [out[s] for s in sorted(out)]

    @staticmethod
    def seller_scores_csv(rows: list[dict[str, Any]]) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(["seller", "surveys", "sum", "average", "normalized_average", "detractors",
                         "detractors_closed"])
        for r in rows:
            writer.writerow([_cell(r["seller"]), r["surveys"], r["sum"], r["average"], r["normalized_average"],
                             r["detractors"], r["detractors_closed"]])
        return buf.getvalue()

    # --- detractors ---------------------------------------------------------------------------

    async def _detractor_query(self, conn: AsyncConnection, f: PanelFilter) -> tuple[Any, Any] | None:
        """(the detractor rows' SELECT, their state expression), or None when no rule is in scope."""
        rule_ids = await self._rule_ids(conn, f)
        if not rule_ids:
            return None
        ri = rule_instances.c
        first_reply = (select(messages.c.case_id, func.min(messages.c.created_at).label("at"))
                       .where(messages.c.direction == Direction.OUT.value, messages.c.author == Author.AGENT.value,
                              messages.c.case_id.in_(select(cases.c.id).where(cases.c.survey_instance_id.isnot(None))))
                       .group_by(messages.c.case_id).subquery("first_reply"))
        state = sql_case((cases.c.activity == Activity.CLOSED.value, "closed"),
                         ((first_reply.c.at.isnot(None)) | (cases.c.activity == Activity.ANSWER_SENT.value),
                          "answered"), else_="open")
        query = (select(ri.id, ri.status, survey_rules.c.name.label("rule"), sales.c.external_id.label("sale"),
                        sales.c.seller, products.c.code.label("product"), ri.contact_id.label("customer_id"),
                        contacts.c.name.label("customer"), ri.total_score, ri.normalized_score, cases.c.id.label("case_number"),
                        cases.c.title.label("case_title"), cases.c.activity.label("case_activity"),
                        state.label("state"), cases.c.assigned_agent, cases.c.created_at.label("case_opened_at"),
                        first_reply.c.at.label("first_response_at"), cases.c.closed_at.label("case_closed_at"),
                        ri.followup_score, ri.followup_weight)
                 .select_from(rule_instances)
                 .join(cases, cases.c.survey_instance_id == ri.id)
                 .outerjoin(first_reply, first_reply.c.case_id == cases.c.id)
                 .join(sales, sales.c.id == ri.sale_id)
                 .join(products, products.c.id == sales.c.product_id)
                 .join(survey_rules, survey_rules.c.id == ri.rule_id)
                 .join(contacts, contacts.c.id == ri.contact_id)
                 .where(ri.rule_id.in_(rule_ids), *self._sale_terms(f)))
        return query, state

    async def detractors(self, f: PanelFilter, *, state: str | None = None, limit: int = 50,
                         offset: int = 0) -> dict[str, Any]:
        """Detractor surveys and what became of their cases, newest case first, with the
        count in each state (over the whole filter, not only the page)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
        if offset < 0:
            raise ValidationError("offset must be 0 or more", field="offset")
        _check_state(state)
        counts = {s: 0 for s in DETRACTOR_STATES}
        items: list[dict[str, Any]] = []
        async with self._db.engine.connect() as conn:
            built = await self._detractor_query(conn, f)
            if built is not None:
                query, state_expr = built
                inner = query.subquery()
                for s, n in await conn.execute(select(inner.c.state, func.count()).group_by(inner.c.state)):
                    counts[s] = int(n)
                if state is not None:
                    query = query.where(state_expr == state)
                rows = await conn.execute(query.order_by(cases.c.created_at.desc(), cases.c.id.desc())
                                          .limit(limit).offset(offset))
                items = [_detractor_item(r) for r in rows]
        return {"now": self._clock.now().isoformat(), "counts": counts, "items": items}

    async def export_detractors_csv(self, f: PanelFilter, *, state: str | None = None) -> AsyncIterator[str]:
        """The detractors view as CSV, in batches of cases (oldest first), any size in bounded memory."""
        _check_state(state)
        yield _csv_line(list(_DETRACTOR_COLUMNS))
        after = 0
        while True:
            async with self._db.engine.connect() as conn:
                built = await self._detractor_query(conn, f)
                if built is None:
                    return
                query, state_expr = built
                if state is not None:
                    query = query.where(state_expr == state)
                rows = (await conn.execute(query.where(cases.c.id > after).order_by(cases.c.id)
                                           .limit(EXPORT_BATCH))).all()
            if not rows:
                return
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            for r in rows:
                item = _detractor_item(r)
                writer.writerow([_cell(item[c]) for c in _DETRACTOR_COLUMNS])
            yield buf.getvalue()
            after = rows[-1].case_number


def _check_state(state: str | None) -> None:
    if state is not None and state not in DETRACTOR_STATES:
        raise ValidationError(f"state must be one of {', '.join(DETRACTOR_STATES)}", field="state")


def _detractor_item(r: Any) -> dict[str, Any]:
    first = r.first_response_at
    return {"id": r.id, "status": r.status, "rule": r.rule, "sale": r.sale, "seller": r.seller,
            "product": r.product, "customer_id": r.customer_id, "customer": r.customer, "total_score": r.total_score,
            "normalized_score": r.normalized_score, "case_number": r.case_number, "case_title": r.case_title,
            "case_activity": r.case_activity, "state": r.state, "assigned_agent": r.assigned_agent,
            "case_opened_at": _aware(r.case_opened_at).isoformat(),
            "first_response_at": _aware(first).isoformat() if first else None,
            "first_response_seconds": (round((_aware(first) - _aware(r.case_opened_at)).total_seconds())
                                       if first else None),
            "case_closed_at": _aware(r.case_closed_at).isoformat() if r.case_closed_at else None,
            "followup": None if r.followup_score is None else {"score": r.followup_score,
                                                                "weight": r.followup_weight}}


def _aware(value: Any) -> Any:
    """MIN() over a timestamp bypasses the column type on SQLite (a naive value or text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _check_sections(names: list[str]) -> None:
    for name in names:
        if name not in SECTIONS:
            raise ValidationError(f"section must be one of {', '.join(SECTIONS)}", field="section")


def _item(r: Any) -> dict[str, Any]:
    return {"id": r.id, "status": r.status, "rule_id": r.rule_id, "rule": r.rule, "sale": r.sale, "seller": r.seller,
            "product": r.product, "customer_id": r.customer_id, "customer": r.customer,
            "closed_at": r.closed_at.isoformat(), "window_start": r.window_start.isoformat(),
            "window_end": r.window_end.isoformat(), "channel": r.channel,
            "opened_at": r.opened_at.isoformat() if r.opened_at else None,
            "executed_at": r.executed_at.isoformat() if r.executed_at else None, "executed_by": r.executed_by,
            "total_score": r.total_score, "normalized_score": r.normalized_score}


def _cell(value: Any) -> Any:
    """CSV cells that a spreadsheet would run as a formula are quoted with a leading '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _csv_line(cells: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    return buf.getvalue()


__all__ = ["DETRACTOR_STATES", "SECTIONS", "Panel", "PanelFilter"]
