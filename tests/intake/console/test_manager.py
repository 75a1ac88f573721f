"""Managers' pages over real HTTP: catalog editing with errors next to the field, the
survey panel and its filters, CSV exports, and the charts' data (on both databases)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest

from tests.intake.console.harness import SQLITE_ONLY, ConsoleClient

SELLER = '</script><script>window.__pwned=1</script>=HYPERLINK("x")'


@pytest.fixture
async def manager(running):
    async with ConsoleClient(running.base) as client:
        assert (await client.login(running.users["manager"]))[0] == 200
        yield client


async def _weights(client: ConsoleClient, code: str, weights: dict[str, str], scale: str = "1-5"):
    return await client.post("/console/catalog/questions/new", {
        "code": code, "text_es": "¿Cómo fue la entrega?", "text_pt": "Como foi a entrega?",
        "text_en": "How was the delivery?", "scale": scale, **{f"weight_{k}": v for k, v in weights.items()}})


@SQLITE_ONLY
async def test_catalog_editing_shows_errors_next_to_the_field(running, manager):
    five = {"1": "-100", "2": "-50", "3": "0", "4": "50", "5": "100"}
    status, page = await _weights(manager, "entrega", {**five, "5": "150"})
    assert status == 422 and 'id="error-weights"' in page and "150" in page
    status, page = await _weights(manager, "entrega", {**five, "3": "tres"})
    assert status == 422 and 'id="error-weights"' in page and "whole number" in page
    status, page = await _weights(manager, "entrega", {k: v for k, v in five.items() if k != "4"})
    assert status == 422 and "score 4 is missing" in page
    status, page = await _weights(manager, "entrega", five, scale="1-50")
    assert status == 422 and 'id="error-scale"' in page
    # A new scale re-renders the form with that scale's score inputs.
    status, page = await _weights(manager, "entrega", {}, scale="yes/no")
    assert status == 422 and 'name="weight_yes"' in page and 'name="weight_no"' in page
    status, page = await _weights(manager, "entrega", five)
    assert status == 200 and "Saved." in page and "entrega" in page

    rule = {"name": "Entrega", "start_after_days": "x", "expires_after_days": "7", "questions": "entrega",
            "operators": "manager1, ana"}
    status, page = await manager.post("/console/catalog/rules/new", rule)
    assert status == 422 and 'id="error-start_after_days"' in page
    status, page = await manager.post("/console/catalog/rules/new", {**rule, "start_after_days": "2",
                                                                      "questions": "entrega, nope"})
    assert status == 422 and 'id="error-questions"' in page
    status, page = await manager.post("/console/catalog/rules/new", {**rule, "start_after_days": "2"})
    assert status == 200
    [saved] = await running.service.console.catalog.list_rules()
    assert (saved["start_after_days"], saved["expires_after_days"]) == (2, 7)
    assert [q["code"] for q in saved["questions"]] == ["entrega"] and saved["operators"] == ["ana", "manager1"]

    status, page = await manager.post("/console/catalog/profiles/new", {"name": "", "rules": str(saved["id"])})
    assert status == 422 and 'id="error-name"' in page
    assert (await manager.post("/console/catalog/profiles/new", {"name": "Estándar", "rules": str(saved["id"])}))[0] == 200
    [profile] = await running.service.console.catalog.list_profiles()
    status, page = await manager.post("/console/catalog/products/new", {"code": "IMP-1", "name": "Impresora",
                                                                        "profile": "99999"})
    assert status == 422 and 'id="error-profile"' in page
    assert (await manager.post("/console/catalog/products/new", {"code": "IMP-1", "name": "Impresora",
                                                                 "profile": str(profile["id"])}))[0] == 200
    [product] = await running.service.console.catalog.list_products()
    assert product["profile"]["name"] == "Estándar"
    # Editing: the form shows the stored weights; a change is saved.
    [question] = await running.service.console.catalog.list_questions()
    status, page = await manager.get(f"/console/catalog/questions/{question['id']}")
    assert 'name="weight_5" inputmode="numeric" maxlength="4" value="100"' in page
    status, _ = await manager.post(f"/console/catalog/questions/{question['id']}", {
        "code": "entrega", "text_es": "¿Y la entrega?", "text_pt": "E a entrega?", "text_en": "And the delivery?",
        "scale": "1-5", **{f"weight_{k}": v for k, v in five.items()}, "weight_5": "90"})
    assert status == 200
    assert (await running.service.console.catalog.get_question(question["id"]))["weights"]["5"] == 90


async def _survey_data(running) -> None:
    from posventa.core.surveys import Surveys
    from posventa.core.surveys.sales import Customer, SaleInput

    service = running.service
    surveys = Surveys.build(db=service.db, outgoing=service.outgoing, clock=service.clock,
                            config=service.config.surveys)
    await surveys.catalog.create_question({"code": "nps", "scale": "1-5", "weights": [-100, -50, 0, 50, 100],
                                           "text": {"es": "¿Nos recomienda?", "pt": "Recomenda?", "en": "Recommend?"}})
    await surveys.catalog.create_rule({"name": "A los 3 días", "start_after_days": 3, "expires_after_days": 5,
                                       "questions": ["nps"], "operators": ["manager1"]})
    await surveys.catalog.create_rule({"name": "Al mes", "start_after_days": 30, "expires_after_days": 10,
                                       "questions": ["nps"], "operators": ["otro"]})
    await surveys.catalog.create_profile({"name": "P", "rules": ["A los 3 días", "Al mes"]})
    await surveys.catalog.create_product({"code": "IMP-1", "name": "Impresora", "profile": "P"})
    now = service.clock.now()
    await surveys.sales.record([
        SaleInput(external_id="OLD", product="IMP-1", seller=SELLER, closed_at=now - timedelta(days=60),
                  customer=Customer(name="Ana", email="ana@example.org")),
        SaleInput(external_id="NOW", product="IMP-1", seller="Beto", closed_at=now - timedelta(days=4),
                  customer=Customer(name="Leo", email="leo@example.org")),
    ])
    await surveys.scheduler.tick(now)


async def test_panel_sections_filters_and_csv(running, manager):
    await _survey_data(running)
    status, page = await manager.get("/console/panel")
    assert status == 200
    counts = dict(re.findall(r'data-section="(\w+)">[^<]+<b>(\d+)</b>', page))
    # OLD: both windows over (2 inconsistencies); NOW: the 3-day window is open.
    assert counts == {"my_rules": "1", "executed": "0", "not_executed": "3", "inconsistencies": "2"}
    assert "<script>window.__pwned" not in page and "&lt;/script&gt;&lt;script&gt;window.__pwned" in page
    status, page = await manager.get("/console/panel?section=inconsistencies&mine=1")
    assert page.count("data-instance=") == 1 and "A los 3 días" in page
    status, page = await manager.get("/console/panel?section=my_rules&seller=Beto")
    assert page.count("data-instance=") == 1 and "NOW" in page
    status, page = await manager.get("/console/panel?date_from=2026-13-40&date_to=x")
    assert status == 200 and 'id="error-date_from"' in page and 'id="error-date_to"' in page
    status, page = await manager.get("/console/panel?date_from=2030-01-02&date_to=2030-01-01")
    assert 'id="error-date_from"' in page

    async with manager.http.get(f"{manager.base}/console/exports/panel.csv?section=inconsistencies") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        assert r.headers["Content-Disposition"].startswith("attachment;")
        body = (await r.read()).decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body[1:])))
    assert {r["section"] for r in rows} == {"inconsistencies"} and len(rows) == 2
    assert all(r["seller"].startswith("'=") or r["seller"] == "Beto" or not r["seller"].startswith("=")
               for r in rows)
    async with manager.http.get(f"{manager.base}/console/exports/panel.csv?section=bogus") as r:
        assert r.status == 400
    async with manager.http.get(f"{manager.base}/console/exports/sellers.csv") as r:
        assert r.status == 200 and (await r.read()).decode().lstrip("\ufeff").startswith("seller,surveys")


async def test_charts_data_and_cases_export(running, manager):
    await _survey_data(running)
    from posventa.core.domain import ChannelName, InboundMessage

    await running.service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<c@x>",
                                                       sender="c@example.org", subject="=cmd|' /C calc'!A0",
                                                       text="fórmula"))
    status, page = await manager.get("/console/charts")
    assert status == 200
    raw = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S).group(1)
    assert "</script" not in raw  # tojson escapes < and >, so a name cannot close the block
    data = json.loads(raw)
    assert sum(d["expired"] for d in data["outcomes"]) == 0 or data["outcomes"]
    assert [q["code"] for q in data["scores"]] == ["nps"]
    assert [s["score"] for s in data["scores"][0]["scores"]] == ["1", "2", "3", "4", "5"]
    assert data["cases"] == {"unclassified": {"(no category)": 1}}
    assert 'src="/console/static/vendor/chart-4.6.1.umd.min.js"' in page
    async with manager.http.get(f"{manager.base}/console/static/vendor/chart-4.6.1.umd.min.js") as r:
        assert r.status == 200 and b"Chart.js v4.6.1" in (await r.read())[:200]
    async with manager.http.get(f"{manager.base}/console/exports/cases.csv") as r:
        rows = list(csv.DictReader(io.StringIO((await r.read()).decode().lstrip("\ufeff"))))
    assert [row["title"] for row in rows] == ["'=cmd|' /C calc'!A0"]


@SQLITE_ONLY
async def test_the_demo_shows_in_every_section_of_the_panel(running, manager):
    from posventa.core.surveys import Surveys
    from posventa.core.surveys.demo import load_demo
    from tests.support import REPO

    service = running.service
    surveys = Surveys.build(db=service.db, outgoing=service.outgoing, clock=service.clock,
                            config=service.config.surveys)
    await load_demo(surveys, catalog_toml=(REPO / "examples" / "catalog.toml").read_bytes(), now=service.clock.now())
    status, page = await manager.get("/console/panel")
    assert status == 200
    counts = dict(re.findall(r'data-section="(\w+)">[^<]+<b>(\d+)</b>', page))
    assert counts == {"my_rules": "4", "executed": "3", "not_executed": "7", "inconsistencies": "3"}
    for section in ("my_rules", "executed", "not_executed"):
        status, page = await manager.get(f"/console/panel?section={section}")
        assert page.count("data-instance=") == int(counts[section])
    status, page = await manager.get("/console/panel?section=my_rules&operator=carla")
    assert page.count("data-instance=") == 1 and "Rafael Costa" in page


@SQLITE_ONLY
async def test_catalog_sets_a_questions_detractor_threshold_and_a_rules_resurvey(running, manager):
    five = {"1": "-100", "2": "-50", "3": "0", "4": "50", "5": "100"}
    form = {"code": "entrega", "text_es": "¿Entrega?", "text_pt": "Entrega?", "text_en": "Delivery?", "scale": "1-5",
            **{f"weight_{k}": v for k, v in five.items()}}
    status, page = await manager.post("/console/catalog/questions/new", {**form, "detractor_threshold": "mucho"})
    assert status == 422 and 'id="error-detractor_threshold"' in page
    status, page = await manager.post("/console/catalog/questions/new", {**form, "detractor_threshold": "-80"})
    assert status == 200 and 'data-detractor="entrega">≤ -80' in page
    [question] = await running.service.console.catalog.list_questions()
    assert question["detractor_threshold"] == -80
    status, page = await manager.get(f"/console/catalog/questions/{question['id']}")
    assert 'id="detractor-threshold" maxlength="10" value="-80"' in page
    await manager.post(f"/console/catalog/questions/{question['id']}", {**form, "detractor_threshold": "off"})
    assert (await running.service.console.catalog.get_question(question["id"]))["detractor_threshold"] == "off"
    await manager.post(f"/console/catalog/questions/{question['id']}", {**form, "detractor_threshold": ""})
    assert (await running.service.console.catalog.get_question(question["id"]))["detractor_threshold"] is None

    rule = {"name": "Entrega", "start_after_days": "2", "expires_after_days": "7", "questions": "entrega",
            "operators": "ana", "resurvey_after_close": "1"}
    status, page = await manager.post("/console/catalog/rules/new", rule)
    assert status == 200 and "re-survey after close" in page
    [saved] = await running.service.console.catalog.list_rules()
    assert saved["resurvey_after_close"] is True
    status, page = await manager.get(f"/console/catalog/rules/{saved['id']}")
    assert 'id="resurvey-after-close" checked' in page
    await manager.post(f"/console/catalog/rules/{saved['id']}", {k: v for k, v in rule.items()
                                                                  if k != "resurvey_after_close"})
    assert (await running.service.console.catalog.get_rule(saved["id"]))["resurvey_after_close"] is False
    status, page = await manager.get("/console/panel/detractors?state=open")
    assert status == 200 and "No detractor surveys here." in page
    status, text = await manager.get("/console/exports/detractors.csv?state=closed")
    assert status == 200 and text.lstrip("\ufeff").startswith("id,status,rule,sale,seller")
    assert (await manager.get("/console/exports/detractors.csv?state=lost"))[0] == 400
