"""``posventa demo``: the example catalog and sales dated from today fill every section
of the panel, through the real services, on both databases."""

from __future__ import annotations

from posventa.core.config import SurveysConfig
from posventa.core.outgoing import Outgoing
from posventa.core.surveys import Surveys
from posventa.core.surveys.demo import DEMO_SALES, load_demo
from posventa.core.surveys.panel import PanelFilter
from tests.support import REPO, FakeClock

EXAMPLE_CATALOG = (REPO / "examples" / "catalog.toml").read_bytes()


def build(db, clock) -> Surveys:
    return Surveys.build(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=clock,
                         config=SurveysConfig(timezone="America/Argentina/Buenos_Aires"))


async def test_the_demo_fills_my_rules_executed_and_not_executed(db):
    clock = FakeClock()
    surveys = build(db, clock)
    report = await load_demo(surveys, catalog_toml=EXAMPLE_CATALOG, now=clock.now())
    assert report.catalog == {"questions": 4, "rules": 2, "profiles": 2, "products": 2}
    assert (report.sales_created, report.sales_already_there, report.answered) == (len(DEMO_SALES), 0, 3)
    assert report.tick.opened == 4  # the windows open today start their chat now
    assert report.counts == {"my_rules": 4, "executed": 3, "not_executed": 7, "inconsistencies": 3}
    panel = await surveys.panel.panel(PanelFilter(), limit=50)
    executed = {(i["rule"], i["executed_by"]) for i in panel["items"]["executed"]}
    assert executed == {("Primera semana", "ana"), ("Primera semana", "beto"), ("Primer mes", "carla")}
    assert all(i["normalized_score"] > 0 for i in panel["items"]["executed"])
    assert {i["status"] for i in panel["items"]["inconsistencies"]} == {"expired"}
    # One operator's view: ana runs "Primera semana" only.
    mine = await surveys.panel.panel(PanelFilter(operator="ana"), limit=50)
    assert {i["rule"] for s in mine["items"].values() for i in s} == {"Primera semana"}

    # Again the same day: nothing new. Another day: a fresh set dated from that day.
    again = await load_demo(surveys, catalog_toml=EXAMPLE_CATALOG, now=clock.now())
    assert (again.sales_created, again.answered, again.tick.opened) == (0, 0, 0)
    assert again.counts == report.counts
    clock.advance(days=1)
    later = await load_demo(build(db, clock), catalog_toml=EXAMPLE_CATALOG, now=clock.now())
    assert (later.sales_created, later.answered) == (len(DEMO_SALES), 3)
