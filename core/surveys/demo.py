"""``posventa demo``: the example catalog and a few sales dated relative to today, so
that a newcomer's panel has something in each section right away: windows open now
(my rules), surveys an operator ran by phone (executed), and windows that passed with
no answer (not executed). ``examples/sales.csv`` stays the format reference; its fixed
dates are long past, which is why the demo makes its own.

Everything goes through the same services as the API and the CLI imports (catalog
import, sales, manual answers, the scheduler's tick), so the demo shows real behaviour.
Customers have addresses on the reserved example.com/.org/.net domains: the survey
questions the tick queues never reach a real person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from posventa.core.errors import ValidationError
from posventa.core.surveys import Surveys
from posventa.core.surveys.panel import PanelFilter
from posventa.core.surveys.sales import Customer, SaleError, SaleInput
from posventa.core.surveys.scheduler import TickReport
from posventa.core.surveys.windows import local_date, start_of_local_day


@dataclass(frozen=True, slots=True)
class DemoSale:
    """A sale closed ``days_ago`` local days before today; with ``answered_by``, that
    operator records ``answers`` for the rule ``rule`` by hand (a phone call)."""

    days_ago: int
    product: str
    seller: str
    name: str
    email: str
    language: str
    rule: str | None = None
    answered_by: str | None = None
    answers: tuple[tuple[str, str], ...] = ()


#: Against examples/catalog.toml: "Primera semana" (PRN-100) is available 7 to 11 days after
#: the sale, "Primer mes" (PRN-100 and LIC-ERP) 30 to 39 days after.
DEMO_SALES = (
    # Open today: the operators' "my rules".
    DemoSale(8, "PRN-100", "Marta", "Lucía Fernández", "lucia.fernandez@example.com", "es"),
    DemoSale(8, "PRN-100", "Pedro", "Marcos Silva", "marcos.silva@example.com.br", "pt"),
    DemoSale(9, "PRN-100", "Pedro", "Emma Brown", "emma.brown@example.org", "en"),
    DemoSale(33, "LIC-ERP", "Marta", "Rafael Costa", "rafael.costa@example.net", "pt"),
    # Run by phone: "executed", with their scores.
    DemoSale(9, "PRN-100", "Marta", "Sofía Romero", "sofia.romero@example.com", "es", rule="Primera semana",
             answered_by="ana", answers=(("delivery", "5"), ("attention", "4"))),
    DemoSale(10, "PRN-100", "Pedro", "Diego Torres", "diego.torres@example.com", "es", rule="Primera semana",
             answered_by="beto", answers=(("delivery", "4"), ("attention", "5"))),
    DemoSale(35, "LIC-ERP", "Marta", "Olivia Smith", "olivia.smith@example.org", "en", rule="Primer mes",
             answered_by="carla", answers=(("working", "yes"), ("recommend", "9"))),
    # Their windows passed unanswered: "not executed".
    DemoSale(16, "PRN-100", "Marta", "Javier Ruiz", "javier.ruiz@example.com", "es"),
    DemoSale(18, "PRN-100", "Pedro", "Ana Lima", "ana.lima@example.com.br", "pt"),
    DemoSale(50, "LIC-ERP", "Pedro", "George Wilson", "george.wilson@example.net", "en"),
)


@dataclass(frozen=True, slots=True)
class DemoReport:
    catalog: dict[str, int]
    sales_created: int
    sales_already_there: int
    answered: int
    tick: TickReport
    counts: dict[str, int]


def demo_sales(now: datetime, surveys: Surveys) -> list[SaleInput]:
    """The demo's sales for today: ids carry the date, so a second run the same day finds
    them (duplicates, nothing new) and a run on another day adds a fresh set."""
    today = local_date(now, surveys.tz)
    out = []
    for n, sale in enumerate(DEMO_SALES, 1):
        # Midday of that local day: the local date is what the windows count from.
        closed = start_of_local_day(today - timedelta(days=sale.days_ago), surveys.tz) + timedelta(hours=12)
        out.append(SaleInput(external_id=f"DEMO-{today:%Y%m%d}-{n:02d}", product=sale.product, seller=sale.seller,
                             closed_at=closed, customer=Customer(name=sale.name, email=sale.email,
                                                                 language=sale.language)))
    return out


async def load_demo(surveys: Surveys, *, catalog_toml: bytes, now: datetime) -> DemoReport:
    catalog = await surveys.catalog.import_toml(catalog_toml, source="examples/catalog.toml")
    inputs = demo_sales(now, surveys)
    results = await surveys.sales.record(inputs)
    refused = [r for r in results if isinstance(r, SaleError)]
    if refused:
        raise ValidationError(f"demo sale {refused[0].external_id}: {refused[0].reason}", field="sales")
    created = sum(1 for r in results if not isinstance(r, SaleError) and not r.duplicate)

    to_answer = {s.external_id: d for s, d in zip(inputs, DEMO_SALES, strict=True) if d.answered_by}
    answered = 0
    open_now = await surveys.panel.panel(PanelFilter(), section="my_rules", limit=500)
    for item in open_now["items"]["my_rules"]:
        demo = to_answer.get(item["sale"])
        if demo is not None and item["rule"] == demo.rule:
            await surveys.runner.record_answers(
                item["id"], [{"question": q, "score": score} for q, score in demo.answers], operator=demo.answered_by)
            answered += 1
    # What serve's timer would do next: windows open now start their chat, passed ones expire.
    tick = await surveys.scheduler.tick()
    panel: dict[str, Any] = await surveys.panel.panel(PanelFilter(), limit=1)
    return DemoReport(catalog=catalog, sales_created=created, sales_already_there=len(results) - created,
                      answered=answered, tick=tick, counts=dict(panel["counts"]))
