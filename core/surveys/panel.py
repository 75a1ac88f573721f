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
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import ValidationError
from core.persistence import Database
from core.persistence.schema import contacts, products, rule_instances, sales, survey_rule_operators, survey_rules
from core.ports import Clock
from core.surveys.conversation import EXECUTED, EXPIRED, OPEN, PAUSED, PENDING
from core.surveys.windows import day_range

SECTIONS = ("my_rules", "executed", "not_executed", "inconsistencies")
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
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValidationError("date_from is after date_to", field="date_from")


_ITEM_COLUMNS = ("id", "status", "rule_id", "rule", "sale", "seller", "product", "customer_id", "customer",
                 "closed_at", "window_start", "window_end", "channel", "opened_at", "executed_at", "executed_by",
                 "total_score", "normalized_score")


class Panel:
    def __init__(self, *, db: Database, clock: Clock, tz: ZoneInfo) -> None:
        self._db = db
        self._clock = clock
        self._tz = tz

    def _conditions(self, f: PanelFilter) -> tuple[list[Any], bool]:
        """WHERE terms for the filter, and whether they need the sales table."""
        terms: list[Any] = []
        if f.operator is not None:
            terms.append(rule_instances.c.rule_id.in_(
                select(survey_rule_operators.c.rule_id).where(survey_rule_operators.c.operator == f.operator)
                .scalar_subquery()))
        if f.rule_id is not None:
            terms.append(rule_instances.c.rule_id == f.rule_id)
        needs_sales = False
        if f.seller is not None:
            terms.append(sales.c.seller == f.seller)
            needs_sales = True
        if f.product is not None:
            terms.append(sales.c.product_id == select(products.c.id).where(products.c.code == f.product)
                         .scalar_subquery())
            needs_sales = True
        lo, hi = day_range(f.date_from, f.date_to, self._tz)
        if lo is not None:
            terms.append(sales.c.closed_at >= lo)
            needs_sales = True
        if hi is not None:
            terms.append(sales.c.closed_at < hi)
            needs_sales = True
        return terms, needs_sales

    @staticmethod
    def _section(name: str, now: Any) -> Any:
        ri = rule_instances.c
        if name == "my_rules":
            return and_(ri.status.in_((PENDING, OPEN, PAUSED)), ri.window_start <= now, ri.window_end > now)
        if name == "executed":
            return ri.status == EXECUTED
        if name == "not_executed":
            return and_(ri.status.in_((PENDING, OPEN, PAUSED, EXPIRED)), ri.window_start <= now)
        if name == "inconsistencies":
            return and_(ri.status.in_((PENDING, OPEN, PAUSED, EXPIRED)), ri.window_end <= now)
        raise ValidationError(f"section must be one of {', '.join(SECTIONS)}", field="section")

    @staticmethod
    def _order(name: str) -> tuple[Any, ...]:
        ri = rule_instances.c
        if name == "my_rules":
            return (ri.window_end.asc(), ri.id.asc())  # the most urgent first
        return (ri.window_end.desc(), ri.id.desc())  # the most recent first

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
        terms, needs_sales = self._conditions(f)
        async with self._db.engine.connect() as conn:
            counts = {s: await self._count(conn, s, now, terms, needs_sales)
                      for s in ("my_rules", "executed", "inconsistencies")}
            counts["not_executed"] = counts["my_rules"] + counts["inconsistencies"]
            items = {s: await self._items(conn, s, now, terms, limit, offset) for s in wanted}
        return {"now": now.isoformat(), "counts": {s: counts[s] for s in SECTIONS}, "items": items}

    async def _count(self, conn: AsyncConnection, name: str, now: Any, terms: list[Any], needs_sales: bool) -> int:
        q = select(func.count()).select_from(rule_instances)
        if needs_sales:
            q = q.join(sales, sales.c.id == rule_instances.c.sale_id)
        return (await conn.execute(q.where(self._section(name, now), *terms))).scalar_one()

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

    async def _items(self, conn: AsyncConnection, name: str, now: Any, terms: list[Any], limit: int,
                     offset: int) -> list[dict[str, Any]]:
        rows = await conn.execute(self._item_query().where(self._section(name, now), *terms)
                                  .order_by(*self._order(name)).limit(limit).offset(offset))
        return [_item(r) for r in rows]

    async def export_csv(self, f: PanelFilter, *, section: str | None = None) -> AsyncIterator[str]:
        """The panel as CSV text, in pieces: one section, or every section with a
        ``section`` column first. Streams in batches, so any size exports in bounded memory."""
        wanted = [section] if section else list(SECTIONS)
        _check_sections(wanted)
        now = self._clock.now()
        terms, _ = self._conditions(f)
        yield _csv_line(["section", *_ITEM_COLUMNS])
        for name in wanted:
            after = 0
            while True:
                async with self._db.engine.connect() as conn:
                    rows = (await conn.execute(
                        self._item_query().where(self._section(name, now), rule_instances.c.id > after, *terms)
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
        terms, _ = self._conditions(f)
        ri = rule_instances.c
        q = (select(sales.c.seller, func.count().label("n"), func.sum(ri.total_score).label("sum"),
                    func.avg(ri.total_score).label("average"), func.avg(ri.normalized_score).label("normalized"))
             .select_from(rule_instances).join(sales, sales.c.id == ri.sale_id)
             .where(ri.status == EXECUTED, *terms).group_by(sales.c.seller).order_by(sales.c.seller))
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"seller": r.seller, "surveys": int(r.n), "sum": round(float(r.sum or 0), 4),
                 "average": round(float(r.average or 0), 4), "normalized_average": round(float(r.normalized or 0), 4)}
                for r in rows]

    @staticmethod
    def seller_scores_csv(rows: list[dict[str, Any]]) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(["seller", "surveys", "sum", "average", "normalized_average"])
        for r in rows:
            writer.writerow([_cell(r["seller"]), r["surveys"], r["sum"], r["average"], r["normalized_average"]])
        return buf.getvalue()


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


__all__ = ["SECTIONS", "Panel", "PanelFilter"]
