"""The survey API over real HTTP against a running Service, on both databases, with
every response validated against the OpenAPI document the server publishes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import aiohttp
import jsonschema
import pytest

from posventa.core.domain import ChannelName
from posventa.service import Service
from tests.intake.console.harness import PASSWORD, ConsoleClient
from tests.support import API_TOKEN, FakeClock, RecordingChannel, make_config

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
OPENS = datetime(2026, 3, 9, 3, 0, tzinfo=UTC)


@pytest.fixture
async def running(database_url, tmp_path):
    clock = FakeClock(START)
    service = Service(make_config(database_url, tmp_path, surveys={"enabled": True, "tick_seconds": 3600}),
                      clock=clock)
    telegram = RecordingChannel(ChannelName.TELEGRAM)
    service.channels[ChannelName.TELEGRAM] = telegram
    async with service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            async with http.get("/api/v1/openapi.json") as r:
                doc = await r.json()
            yield service, http, Spec(doc), clock, telegram


class Spec:
    def __init__(self, doc):
        self.doc = doc

    def operation(self, method: str, template: str) -> dict:
        return self.doc["paths"]["/api/v1" + template][method.lower()]

    def check(self, method: str, template: str, status: int, body) -> None:
        schema = self.operation(method, template)["responses"][str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(body, {"$ref": "#/$defs/target", "$defs": {"target": schema},
                                   "components": self.doc["components"]})

    def check_request(self, method: str, template: str, body) -> None:
        schema = self.operation(method, template)["requestBody"]["content"]["application/json"]["schema"]
        jsonschema.validate(body, {"$ref": "#/$defs/target", "$defs": {"target": schema},
                                   "components": self.doc["components"]})


async def call(running, method, template, path=None, *, status, json=None):
    _, http, spec, _, _ = running
    if json is not None and status < 300:
        spec.check_request(method, template, json)  # what we send is what the docs promise works
    async with http.request(method, "/api/v1" + (path or template), json=json) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        assert r.status == status, body
        if status < 300 and status != 204:
            spec.check(method, template, status, body)
        elif status >= 400:
            assert set(body) >= {"error", "message"}
        return body


ATTENTION = {"code": "attention", "scale": "1-5", "text": {"es": "¿Atención?", "pt": "Atendimento?", "en": "Service?"},
             "weights": [-100, -50, 0, 50, 100]}
WORKING = {"code": "working", "scale": "yes/no", "text": {"es": "¿Funciona?", "pt": "Funciona?", "en": "Works?"},
           "weights": {"yes": 100, "no": -100}}


async def test_catalog_sales_panel_and_manual_answers(running):
    service, http, spec, clock, telegram = running
    q1 = await call(running, "POST", "/surveys/questions", status=201, json=ATTENTION)
    q2 = await call(running, "POST", "/surveys/questions", status=201, json=WORKING)
    bad = await call(running, "POST", "/surveys/questions", status=422,
                     json={**ATTENTION, "code": "x", "weights": {"1": -100, "2": 0, "3": 0, "4": 0, "5": 999}})
    # The declared range (-100..100) refuses it before core, naming the score.
    assert bad["field"] == "weights.5" and bad["message"] == "weights.5 must be at most 100"
    await call(running, "POST", "/surveys/questions", status=422, json={**ATTENTION, "code": "y", "scale": "1-50"})
    await call(running, "PATCH", "/surveys/questions/{id}", f"/surveys/questions/{q1['id']}", status=200,
               json={"text": {"es": "¿Cómo te atendieron?", "pt": "Como foi?", "en": "How was it?"}})
    assert len((await call(running, "GET", "/surveys/questions", status=200))["questions"]) == 2

    rule = await call(running, "POST", "/surveys/rules", status=201, json={
        "name": "Primera semana", "start_after_days": 7, "expires_after_days": 3, "note": "entrega",
        "questions": ["working"], "operators": ["ana"]})
    rid = rule["id"]
    rule = await call(running, "POST", "/surveys/rules/{id}/questions", f"/surveys/rules/{rid}/questions",
                      status=200, json={"question": q1["id"], "position": 1})
    assert [q["code"] for q in rule["questions"]] == ["attention", "working"]
    rule = await call(running, "POST", "/surveys/rules/{id}/operators", f"/surveys/rules/{rid}/operators",
                      status=200, json={"operator": "beto"})
    rule = await call(running, "DELETE", "/surveys/rules/{id}/operators",
                      f"/surveys/rules/{rid}/operators?operator=beto", status=200)
    assert rule["operators"] == ["ana"]
    tmp = await call(running, "POST", "/surveys/questions", status=201, json={**WORKING, "code": "tmp"})
    await call(running, "POST", "/surveys/rules/{id}/questions", f"/surveys/rules/{rid}/questions", status=200,
               json={"question": "tmp"})
    rule = await call(running, "DELETE", "/surveys/rules/{id}/questions/{question_id}",
                      f"/surveys/rules/{rid}/questions/{tmp['id']}", status=200)
    assert [q["code"] for q in rule["questions"]] == ["attention", "working"]
    await call(running, "DELETE", "/surveys/questions/{id}", f"/surveys/questions/{tmp['id']}", status=204)
    await call(running, "POST", "/surveys/rules", status=422,
               json={"name": "x", "start_after_days": -1, "expires_after_days": 3})

    profile = await call(running, "POST", "/surveys/profiles", status=201,
                         json={"name": "Equipos", "rules": ["Primera semana"]})
    product = await call(running, "POST", "/surveys/products", status=201,
                         json={"code": "PRN", "name": "Impresora", "profile": profile["id"]})
    assert product["profile"]["name"] == "Equipos"
    await call(running, "GET", "/surveys/products/{id}", "/surveys/products/99999", status=404)

    # Sales: one (201, then 200 as a duplicate), a bad one (422), and a bulk with an error.
    one = {"external_id": "ERP-1", "product": "PRN", "seller": "marta", "closed_at": "2026-03-02",
           "customer": {"name": "Ana", "telegram_id": "1001"}}
    created = await call(running, "POST", "/sales", status=200, json=one)
    assert created["surveys"] == 1 and not created["duplicate"]
    again = await call(running, "POST", "/sales", status=200, json=one)
    assert again["duplicate"] and again["sale_id"] == created["sale_id"]
    await call(running, "POST", "/sales", status=422, json={**one, "external_id": "ERP-X", "product": "NOPE"})
    bulk = await call(running, "POST", "/sales", status=200, json={"sales": [
        {**one, "external_id": "ERP-2", "seller": "pedro", "customer": {"telegram_id": "1002"}},
        {**one, "external_id": "ERP-3", "closed_at": "mañana"},
        {**one, "external_id": "ERP-4", "seller": "pedro", "customer": {"phone": "555"}},
    ]})
    assert (bulk["created"], bulk["duplicates"]) == (2, 0)
    assert [(e["index"], e["field"]) for e in bulk["errors"]] == [(1, "closed_at")]

    # The window opens; the panel shows it as "my rules" for ana only.
    clock.current = OPENS
    tick = await call(running, "POST", "/surveys/tick", status=200)
    assert (tick["opened"], tick["unreachable"]) == (2, 1)
    await telegram.wait_for(2)
    panel = await call(running, "GET", "/surveys/panel", "/surveys/panel?operator=ana", status=200)
    assert panel["counts"]["my_rules"] == 3 and panel["filters"]["operator"] == "ana"
    assert (await call(running, "GET", "/surveys/panel", "/surveys/panel?operator=beto",
                       status=200))["counts"]["my_rules"] == 0
    await call(running, "GET", "/surveys/panel", "/surveys/panel?from=2026-13-01", status=422)
    await call(running, "GET", "/surveys/panel", "/surveys/panel?section=nope", status=422)
    await call(running, "GET", "/surveys/panel", "/surveys/panel?limit=0", status=422)
    await call(running, "GET", "/surveys/panel", "/surveys/panel?rule=abc", status=422)

    # Operators record answers by hand.
    items = {i["sale"]: i for i in panel["items"]["my_rules"]}
    iid = items["ERP-4"]["id"]
    wrong = await call(running, "POST", "/surveys/instances/{id}/answers", f"/surveys/instances/{iid}/answers",
                       status=422, json={"operator": "zoe", "answers": [{"question": "attention", "score": "5"}]})
    assert wrong["field"] == "operator"
    done = await call(running, "POST", "/surveys/instances/{id}/answers", f"/surveys/instances/{iid}/answers",
                      status=200, json={"operator": "ana", "answers": [{"question": "attention", "score": "4"},
                                                                      {"question": q2["id"], "score": "yes"}]})
    assert done["status"] == "executed" and done["total_score"] == 150 and done["executed_by"] == "ana"
    await call(running, "POST", "/surveys/instances/{id}/answers", f"/surveys/instances/{iid}/answers",
               status=409, json={"operator": "ana", "answers": [{"question": "attention", "score": "4"}]})
    await call(running, "POST", "/surveys/instances/{id}/resume", f"/surveys/instances/{iid}/resume", status=409,
               json={"operator": "ana"})
    got = await call(running, "GET", "/surveys/instances/{id}", f"/surveys/instances/{iid}", status=200)
    assert [a["score"] for a in got["answers"]] == ["4", "yes"]

    scores = await call(running, "GET", "/surveys/seller-scores", "/surveys/seller-scores?from=2026-03-01&to=2026-03-31",
                        status=200)
    assert scores["sellers"] == [{"seller": "pedro", "surveys": 1, "sum": 150, "average": 150,
                                  "normalized_average": 75, "detractors": 0, "detractors_closed": 0}]
    async with http.get("/api/v1/surveys/seller-scores?format=csv") as r:
        assert r.status == 200 and r.content_type == "text/csv"
        assert (await r.text()).splitlines() == [
            "seller,surveys,sum,average,normalized_average,detractors,detractors_closed", "pedro,1,150.0,150.0,75.0,0,0"]
    async with http.get("/api/v1/surveys/panel?operator=ana&format=csv") as r:
        assert r.status == 200 and r.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert {(row["section"], row["sale"]) for row in rows} >= {("executed", "ERP-4"), ("my_rules", "ERP-1")}

    # The window ends: the unanswered ones are inconsistencies.
    clock.current = OPENS + timedelta(days=3)
    await call(running, "POST", "/surveys/tick", status=200)
    panel = await call(running, "GET", "/surveys/panel", "/surveys/panel?operator=ana&section=inconsistencies",
                       status=200)
    assert panel["counts"]["inconsistencies"] == 2 and len(panel["items"]["inconsistencies"]) == 2

    # Deleting things with history is refused; without history it works.
    await call(running, "DELETE", "/surveys/rules/{id}", f"/surveys/rules/{rid}", status=400)
    await call(running, "DELETE", "/surveys/products/{id}", f"/surveys/products/{product['id']}", status=400)
    await call(running, "DELETE", "/surveys/profiles/{id}", f"/surveys/profiles/{profile['id']}", status=204)


async def test_survey_routes_need_a_token_and_are_all_documented(running):
    service, http, spec, _, _ = running
    base = f"http://127.0.0.1:{service.http.bound_port}"
    async with aiohttp.ClientSession() as anon:
        for path in ("/api/v1/surveys/panel", "/api/v1/surveys/questions"):
            async with anon.get(base + path) as r:
                assert r.status == 401
        async with anon.post(base + "/api/v1/sales", json={}) as r:
            assert r.status == 401
    jsonschema.Draft202012Validator.check_schema({"$defs": spec.doc["components"]["schemas"]})
    documented = {(m.upper(), p) for p, ops in spec.doc["paths"].items() for m in ops}
    routes = {(r.method, r.resource.canonical) for r in service.app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith(("/api/v1/surveys", "/api/v1/sales"))}
    assert routes and routes <= documented
    assert "normalized_average" in spec.operation("GET", "/surveys/seller-scores")["description"]
    assert "inconsistencies" in spec.operation("GET", "/surveys/panel")["description"]
    async with http.post("/api/v1/sales", json={"sales": "nope"}) as r:
        assert r.status == 422
    async with http.post("/api/v1/sales", data=b"{bad") as r:
        assert r.status == 400


async def test_detractor_thresholds_cases_and_the_detractors_view(running):
    service, http, spec, clock, telegram = running
    # Per question: its own threshold, "off", or null (the config default, -50).
    q1 = await call(running, "POST", "/surveys/questions", status=201, json={**ATTENTION, "detractor_threshold": -80})
    assert q1["detractor_threshold"] == -80
    q2 = await call(running, "POST", "/surveys/questions", status=201, json=WORKING)
    assert q2["detractor_threshold"] is None
    off = await call(running, "PATCH", "/surveys/questions/{id}", f"/surveys/questions/{q2['id']}", status=200,
                     json={"detractor_threshold": "off"})
    assert off["detractor_threshold"] == "off"
    bad = await call(running, "PATCH", "/surveys/questions/{id}", f"/surveys/questions/{q2['id']}", status=422,
                     json={"detractor_threshold": "sometimes"})
    assert bad["field"] == "detractor_threshold"
    await call(running, "PATCH", "/surveys/questions/{id}", f"/surveys/questions/{q2['id']}", status=200,
               json={"detractor_threshold": None})
    rule = await call(running, "POST", "/surveys/rules", status=201, json={
        "name": "Entrega", "start_after_days": 7, "expires_after_days": 3, "questions": ["attention", "working"],
        "operators": ["ana", "beto"], "resurvey_after_close": True})
    assert rule["resurvey_after_close"] is True
    await call(running, "POST", "/surveys/rules", status=422, json={
        "name": "x", "start_after_days": 7, "expires_after_days": 3, "resurvey_after_close": "yes"})
    profile = await call(running, "POST", "/surveys/profiles", status=201, json={"name": "P", "rules": ["Entrega"]})
    await call(running, "POST", "/surveys/products", status=201,
               json={"code": "PRN", "name": "Impresora", "profile": profile["id"]})
    await call(running, "POST", "/sales", status=200, json={
        "external_id": "ERP-9", "product": "PRN", "seller": "marta", "closed_at": "2026-03-02",
        "customer": {"name": "Ana", "phone": "555"}})
    clock.current = OPENS
    await call(running, "POST", "/surveys/tick", status=200)
    [item] = (await call(running, "GET", "/surveys/panel", "/surveys/panel?section=my_rules",
                         status=200))["items"]["my_rules"]
    iid = item["id"]

    # -50 is above this question's own -80: no case. Then "no" (-100) on the default threshold.
    partial = await call(running, "POST", "/surveys/instances/{id}/answers", f"/surveys/instances/{iid}/answers",
                         status=200, json={"operator": "beto", "answers": [{"question": "attention", "score": "2"}]})
    assert partial["case"] is None
    done = await call(running, "POST", "/surveys/instances/{id}/answers", f"/surveys/instances/{iid}/answers",
                      status=200, json={"operator": "beto", "answers": [{"question": "working", "score": "no"}]})
    number = done["case"]["number"]
    assert done["case"]["activity"] == "preliminary_analysis" and done["followup"] is None

    case = await call(running, "GET", "/cases/{number}", f"/cases/{number}", status=200)
    assert (case["origin"], case["type"], case["assigned_agent"]) == ("survey", "complaint", "ana")
    assert case["survey"] == {"instance_id": iid, "status": "executed", "rule": {"id": rule["id"], "name": "Entrega"},
                              "sale": {"id": case["survey"]["sale"]["id"], "external_id": "ERP-9", "seller": "marta"}}
    listed = await call(running, "GET", "/cases", "/cases?type=complaint", status=200)
    assert [(c["number"], c["origin"], c["survey_instance_id"]) for c in listed["cases"]] == [(number, "survey", iid)]

    view = await call(running, "GET", "/surveys/detractors", "/surveys/detractors?seller=marta", status=200)
    assert view["counts"] == {"open": 1, "answered": 0, "closed": 0}
    assert [(i["case_number"], i["state"], i["first_response_seconds"]) for i in view["items"]] == [
        (number, "open", None)]
    assert (await call(running, "GET", "/surveys/detractors", "/surveys/detractors?operator=zoe",
                       status=200))["items"] == []
    await call(running, "GET", "/surveys/detractors", "/surveys/detractors?state=lost", status=422)
    await call(running, "GET", "/surveys/detractors", "/surveys/detractors?limit=0", status=422)
    async with http.get("/api/v1/surveys/detractors?format=csv") as r:
        assert r.status == 200 and r.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert [(r["case_number"], r["state"], r["sale"]) for r in rows] == [(str(number), "open", "ERP-9")]
    scores = await call(running, "GET", "/surveys/seller-scores", status=200)
    assert [(s["seller"], s["detractors"], s["detractors_closed"]) for s in scores["sellers"]] == [("marta", 1, 0)]


async def test_panel_declares_csv_and_refuses_empty_dates(running):
    service, http, spec, clock, telegram = running
    for path in ("/surveys/panel", "/surveys/seller-scores"):
        ok = spec.doc["paths"]["/api/v1" + path]["get"]["responses"]["200"]["content"]
        assert set(ok) == {"application/json", "text/csv"}
        for query in ("to=", "from=", "from=2026-02-30", "to=yesterday"):
            async with http.get(f"/api/v1{path}?{query}") as r:
                body = await r.json()
                assert r.status == 422 and body["field"] == query.split("=")[0], (path, query, body)
        async with http.get(f"/api/v1{path}?format=csv&from=2026-01-01&to=2026-01-31") as r:
            assert r.status == 200 and r.content_type == "text/csv"


async def test_a_detractor_case_and_its_erased_customer_in_the_readers_language(running):
    """The detractors view names its rows' contact (``customer_id``), so the console shows
    an erased customer's name in the reader's language; the detractor case's history, and
    its erasure, read in Spanish on the case page."""
    service, _, _, clock, _ = running
    await call(running, "POST", "/surveys/questions", status=201, json=WORKING)
    await call(running, "POST", "/surveys/rules", status=201, json={
        "name": "Entrega", "start_after_days": 7, "expires_after_days": 3, "questions": ["working"],
        "operators": ["ana", "beto"]})
    profile = await call(running, "POST", "/surveys/profiles", status=201, json={"name": "P", "rules": ["Entrega"]})
    await call(running, "POST", "/surveys/products", status=201,
               json={"code": "PRN", "name": "Impresora", "profile": profile["id"]})
    await call(running, "POST", "/sales", status=200, json={
        "external_id": "ERP-9", "product": "PRN", "seller": "marta", "closed_at": "2026-03-02",
        "customer": {"name": "Ana", "phone": "555"}})
    clock.current = OPENS
    await call(running, "POST", "/surveys/tick", status=200)
    [item] = (await call(running, "GET", "/surveys/panel", "/surveys/panel?section=my_rules",
                         status=200))["items"]["my_rules"]
    done = await call(running, "POST", "/surveys/instances/{id}/answers", f"/surveys/instances/{item['id']}/answers",
                      status=200, json={"operator": "beto", "answers": [{"question": "working", "score": "no"}]})
    number = done["case"]["number"]
    contact_id = item["customer_id"]
    await service.contacts.erase(contact_id, actor="test")

    [row] = (await call(running, "GET", "/surveys/detractors", status=200))["items"]
    assert (row["case_number"], row["customer_id"], row["customer"]) == (number, contact_id,
                                                                         f"erased contact #{contact_id}")
    await service.console.users.create("gerente", PASSWORD, role="manager", display_name="Gerente")
    async with ConsoleClient(f"http://127.0.0.1:{service.http.bound_port}") as manager:
        assert (await manager.login("gerente"))[0] == 200
        spanish = {"Accept-Language": "es"}
        status, page = await manager.get("/console/panel/detractors", headers=spanish)
        assert status == 200 and f'data-case="{number}"' in page
        assert f"<td>contacto borrado #{contact_id}</td>" in page and "erased contact" not in page
        status, page = await manager.get(f"/console/cases/{number}?tab=history", headers=spanish)
        history = page.split('id="history"', 1)[1].split("</table>", 1)[0]
        assert status == 200 and f"respuesta detractora en la encuesta {item['id']} (venta ERP-9)" in history
        assert "entre los operadores de la regla (ana, beto)" in history
        assert "contacto borrado</small>" in history and "Borrado" in history
        assert "detractor answer" not in history and "contact erased" not in history
