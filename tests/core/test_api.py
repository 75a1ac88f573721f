"""The REST API over real HTTP against a running Service, on both databases; and its
OpenAPI document checked against what the server really answers."""

from __future__ import annotations

import asyncio

import aiohttp
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.persistence.schema import products
from posventa.service import Service
from tests.support import API_TOKEN, RecordingChannel, make_config


@pytest.fixture
async def running(database_url, tmp_path):
    service = Service(make_config(database_url, tmp_path))
    email = RecordingChannel(ChannelName.EMAIL)
    service.channels[ChannelName.EMAIL] = email
    async with service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http, email


class Spec:
    """Validates responses against the schemas the server itself publishes."""

    def __init__(self, doc):
        self.doc = doc

    def check(self, method: str, template: str, status: int, body) -> None:
        op = self.doc["paths"]["/api/v1" + template][method.lower()]
        schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(body, {"$ref": "#/$defs/target", "$defs": {"target": schema},
                                   "components": self.doc["components"]})


@pytest.fixture
async def spec(running):
    _, http, _ = running
    async with http.get("/api/v1/openapi.json") as r:
        assert r.status == 200
        return Spec(await r.json())


async def call(http, spec, method, template, path=None, *, status, json=None):
    async with http.request(method, "/api/v1" + (path or template), json=json) as r:
        body = await r.json()
        assert r.status == status, body
        if status < 400:
            spec.check(method, template, status, body)
        else:
            assert set(body) >= {"error", "message"}
        return body


async def test_auth_bad_json_and_unknown_ids(running):
    service, http, _ = running
    base = f"http://127.0.0.1:{service.http.bound_port}"
    async with aiohttp.ClientSession() as anon:
        for headers in ({}, {"Authorization": "Bearer wrong-token-xxxxxxxx"}, {"Authorization": API_TOKEN}):
            async with anon.get(f"{base}/api/v1/cases", headers=headers) as r:
                body = await r.json()
                assert r.status == 401 and body["error"] == "unauthorized"
                assert "POSVENTA_API_TOKENS or [api] tokens" in body["message"]  # where tokens come from
    async with http.post("/api/v1/cases", data=b"{not json") as r:
        assert r.status == 400 and "JSON" in (await r.json())["message"]
    async with http.post("/api/v1/cases", json=[1, 2]) as r:
        assert r.status == 400
    async with http.get("/api/v1/cases/999999") as r:
        assert r.status == 404 and (await r.json())["error"] == "not_found"
    async with http.get("/api/v1/cases/abc") as r:
        assert r.status == 404


async def test_phone_case_lifecycle(running, spec):
    service, http, email = running
    cat = await call(http, spec, "POST", "/categories", status=201, json={"name": "Facturación"})
    sub = await call(http, spec, "POST", "/categories", status=201, json={"name": "Notas de crédito", "parent_id": cat["id"]})
    await call(http, spec, "POST", "/categories", status=422, json={"name": "Nieta", "parent_id": sub["id"]})
    tree = await call(http, spec, "GET", "/categories", status=200)
    assert tree["categories"][0]["subcategories"][0]["name"] == "Notas de crédito"

    case = await call(http, spec, "POST", "/cases", status=201, json={
        "title": "No puedo emitir factura", "description": "El sistema da error 500 al emitir.",
        "type": "incident", "contact": {"name": "Ana Pérez", "email": "Ana@Cliente.com"},
        "organization": "Cliente SA", "category_id": cat["id"], "subcategory_id": sub["id"], "agent": "maria"})
    n = case["number"]
    assert case["type"] == "incident" and case["activity"] == "preliminary_analysis"
    assert case["kb"]["problem"] == "El sistema da error 500 al emitir."
    assert case["organization"] == "Cliente SA" and case["subcategory"]["name"] == "Notas de crédito"

    await call(http, spec, "POST", "/cases", status=422, json={"title": "x", "description": "y", "contact": {}})
    # A case opened by hand carries its type: without one (or "unclassified") it is refused.
    for missing in ({}, {"type": "unclassified"}):
        refused = await call(http, spec, "POST", "/cases", status=422, json={
            "title": "x", "description": "y", "contact": {"name": "Ana"}, **missing})
        assert refused["field"] == "type" and refused["message"] in (
            "type is required", "type must be one of: request, complaint, incident")
    await call(http, spec, "POST", "/cases/{number}/activity", f"/cases/{n}/activity", status=409,
               json={"activity": "derived"})  # no sector
    derived = await call(http, spec, "POST", "/cases/{number}/activity", f"/cases/{n}/activity", status=200,
                         json={"activity": "derived", "sector": "Sistemas", "agent": "maria"})
    assert derived["sector"] == "Sistemas"

    reply = await call(http, spec, "POST", "/cases/{number}/reply", f"/cases/{n}/reply", status=202,
                       json={"text": "Ya lo corregimos.", "agent": "maria"})
    assert reply["channel"] == "email"
    [sent] = await email.wait_for(1)
    assert sent.recipient == "ana@cliente.com" and sent.text == "Ya lo corregimos." and not sent.automatic
    assert sent.email and sent.email.message_id.startswith("<pv.")

    await call(http, spec, "POST", "/cases/{number}/notes", f"/cases/{n}/notes", status=201,
               json={"text": "Llamó de nuevo, está molesta"})
    patched = await call(http, spec, "PATCH", "/cases/{number}", f"/cases/{n}", status=200,
                         json={"type": "complaint", "assigned_agent": "juan", "kb": {"answer": "Reinstalar el módulo"}})
    assert patched["type"] == "complaint" and patched["assigned_agent"] == "juan"
    await call(http, spec, "PATCH", "/cases/{number}", f"/cases/{n}", status=422, json={"bogus": 1})
    async with service.db.transaction() as conn:
        await conn.execute(products.insert().values(code="LIC", name="Licencia"))
    budget = await call(http, spec, "PUT", "/cases/{number}/budget", f"/cases/{n}/budget", status=200, json={
        "mode": "products_with_amounts", "lines": [{"product": "LIC", "quantity": 2, "unit_amount": "10.50"}]})
    assert budget["budget_lines"] == [{"product": "LIC", "quantity": 2.0, "unit_amount": 10.5}]
    assert budget["budget_total"] == 21.0 and budget["budget_total_text"] == "$21,00"
    linked = await call(http, spec, "POST", "/cases/{number}/kb-action", f"/cases/{n}/kb-action", status=200,
                        json={"action": "link", "url": "https://forum.example.com/t/factura/12"})
    assert linked["kb"]["action"] == "link" and linked["kb"]["url"].endswith("/12")
    await call(http, spec, "POST", "/cases/{number}/activity", f"/cases/{n}/activity", status=200,
               json={"activity": "closed"})
    await call(http, spec, "POST", "/cases/{number}/activity", f"/cases/{n}/activity", status=409,
               json={"activity": "derived", "sector": "X"})

    full = await call(http, spec, "GET", "/cases/{number}", f"/cases/{n}", status=200)
    kinds = [h["kind"] for h in full["history"]]
    # Closing told the customer (``[cases] notify_closed`` is on by default).
    assert kinds[:3] == ["opened", "activity", "reply"] and kinds[-2:] == ["activity", "customer_told"]
    # ... and the closing notice is in the thread, from the bot.
    assert [m["author"] for m in full["messages"]] == ["customer", "agent", "note", "bot"]


async def test_list_filters_and_text_search_are_parameters_not_sql(running, spec):
    service, http, _ = running
    for i, (sender, text) in enumerate([("1", "impresora rota"), ("2", "factura duplicada"), ("3", "100% fallo_x")]):
        await service.inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id=f"m{i}", sender=sender,
                                                   text=text))
    found = await call(http, spec, "GET", "/cases", "/cases?q=factura", status=200)
    assert [c["title"] for c in found["cases"]] == ["factura duplicada"]
    assert found["counts"]["preliminary_analysis"] == 3
    # Words, not LIKE patterns: "%" holds none, "fallo_x" is the two words "fallo" and "x".
    assert len((await call(http, spec, "GET", "/cases", "/cases?q=%25", status=200))["cases"]) == 0
    assert [c["title"] for c in (await call(http, spec, "GET", "/cases", "/cases?q=fallo_x",
                                            status=200))["cases"]] == ["100% fallo_x"]
    assert len((await call(http, spec, "GET", "/cases", "/cases?q=' OR 1=1 --", status=200))["cases"]) == 0
    assert len((await call(http, spec, "GET", "/cases", "/cases?channel=telegram&type=unclassified&open=1",
                           status=200))["cases"]) == 3
    await call(http, spec, "GET", "/cases", "/cases?channel=fax", status=422)
    await call(http, spec, "GET", "/cases", "/cases?limit=abc", status=422)


async def test_full_text_search_finds_a_word_only_in_a_reply(running, spec):
    service, http, email = running
    body = {"title": "Pedido 7781", "description": "No puedo activar", "contact": {"email": "rui@cliente.com.br"},
            "language": "pt", "type": "request"}
    number = (await call(http, spec, "POST", "/cases", json=body, status=201))["number"]
    await call(http, spec, "POST", "/cases/{number}/reply", f"/cases/{number}/reply",
               json={"text": "Renovamos a sua licença hoje.", "agent": "ana"}, status=202)
    await call(http, spec, "POST", "/cases", json={**body, "title": "Otro", "description": "nada"}, status=201)
    found = (await call(http, spec, "GET", "/cases", "/cases?q=licenca", status=200))["cases"]
    assert [c["number"] for c in found] == [number]
    match = found[0]["match"]
    assert match["source"] == "message"
    assert [match["snippet"][a:b] for a, b in match["highlights"]] == ["licença"]
    assert [c["number"] for c in (await call(http, spec, "GET", "/cases", f"/cases?q=%23{number}",
                                             status=200))["cases"]][0] == number
    error = await call(http, spec, "GET", "/cases", "/cases?q=" + "x" * 201, status=422)
    assert error["field"] == "q"


async def test_macros_crud_and_a_reply_with_a_macro(running, spec):
    service, http, email = running
    body = {"name": "Renovação", "bodies": {
        "es": "Hola {{ customer.name }}, renovamos su licencia (caso #{{ case.number }}).",
        "pt": "Olá {{ customer.name }}, renovamos a sua licença (caso #{{ case.number }})."},
        "actions": {"type": "request", "note": "Licença renovada"}}
    macro = await call(http, spec, "POST", "/macros", json=body, status=201)
    assert macro["owner"] is None and macro["usage_count"] == 0
    bad = await call(http, spec, "POST", "/macros", json={**body, "name": "x", "bodies": {"pt": "{{ case.numero"}},
                     status=422)
    assert bad["field"] == "bodies.pt"
    bad = await call(http, spec, "POST", "/macros", json={**body, "name": "y", "actions": {"activity": "x"}},
                     status=422)
    assert bad["field"] == "actions.activity"
    mine = await call(http, spec, "POST", "/macros", json={"name": "Só minha", "owner": "rui",
                                                            "bodies": {"pt": "Oi"}}, status=201)
    listed = await call(http, spec, "GET", "/macros", "/macros?agent=ana", status=200)
    assert [m["id"] for m in listed["macros"]] == [macro["id"]]
    case = await call(http, spec, "POST", "/cases", json={
        "title": "Licença", "description": "Expirou", "language": "pt", "type": "request",
        "contact": {"name": "João", "email": "joao@cliente.com.br"}}, status=201)
    number = case["number"]
    sent = await call(http, spec, "POST", "/cases/{number}/reply", f"/cases/{number}/reply",
                      json={"macro": "renovação", "agent": "ana"}, status=202)
    assert sent["text"] == f"Olá João, renovamos a sua licença (caso #{number})." and sent["macro"] == macro["id"]
    [mail] = [m for m in await email.wait_for(1) if m.kind == "reply"]
    assert mail.text == sent["text"]
    detail = await call(http, spec, "GET", "/cases/{number}", f"/cases/{number}", status=200)
    assert detail["type"] == "request" and detail["messages"][-1]["text"] == "Licença renovada"
    await call(http, spec, "POST", "/cases/{number}/reply", f"/cases/{number}/reply",
               json={"macro": mine["id"], "agent": "ana"}, status=404)  # rui's, not ana's
    await call(http, spec, "POST", "/cases/{number}/reply", f"/cases/{number}/reply",
               json={"macro": [1]}, status=422)
    changed = await call(http, spec, "PUT", "/macros/{id}", f"/macros/{macro['id']}",
                         json={**body, "bodies": {"en": "Hi"}}, status=200)
    assert changed["usage_count"] == 1 and changed["bodies"] == {"en": "Hi"}
    async with http.delete(f"/api/v1/macros/{macro['id']}") as r:
        assert r.status == 204
    await call(http, spec, "GET", "/macros/{id}", f"/macros/{macro['id']}", status=404)


async def test_openapi_lists_exactly_the_routes_the_server_has(running):
    service, http, _ = running
    async with http.get("/api/v1/openapi.json") as r:
        doc = await r.json()
    jsonschema.Draft202012Validator.check_schema({"$defs": doc["components"]["schemas"]})
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(r.method, r.resource.canonical) for r in service.app.router.routes()
              if r.resource and r.resource.canonical.startswith("/api/v1/") and r.method != "HEAD"
              and r.resource.canonical != "/api/v1/openapi.json"}
    assert documented == served


async def test_health_and_metrics(running):
    service, http, email = running
    await service.inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="h1", sender="9", text="hola"))
    async with http.get("/healthz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
    async with http.get("/metrics") as r:
        text = await r.text()
    assert 'posventa_inbound_messages_total{channel="telegram"} 1.0' in text
    assert 'posventa_outbox_items{channel="telegram",status="queued"} 1.0' in text
    # Totals since start are counters named ..._total; only levels (a backlog, a flag) are gauges.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["posventa_inbox_batches"].type == "counter"
    assert [s.name for s in families["posventa_inbox_batches"].samples] == ["posventa_inbox_batches_total"]
    assert families["posventa_inbox_batches"].samples[0].value >= 1
    assert families["posventa_outbox_delivered"].type == "counter"
    assert {f.name for f in families.values() if "since start" in f.documentation and f.type != "counter"} == set()
    await service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<h2@x>",
                                               sender="ana@example.org", text="hola", subject="Hola"))
    await email.wait_for(1)  # the acknowledgement, sent by this process's email worker

    async def delivered() -> float:
        async with http.get("/metrics") as r:
            families = {f.name: f for f in text_string_to_metric_families(await r.text())}
        return {(s.name, s.labels.get("channel"), s.labels.get("outcome")): s.value
                for s in families["posventa_outbox_delivered"].samples}.get(
            ("posventa_outbox_delivered_total", "email", "sent"), 0.0)

    # The worker counts a delivery when it records it, a moment after the send.
    assert await asyncio.wait_for(_until(delivered, 1.0), 5) == 1.0


async def test_metrics_show_each_periodic_jobs_last_run_and_errors(database_url, tmp_path):
    service = Service(make_config(database_url, tmp_path, surveys={"enabled": True}, webchat={"enabled": True}))
    async with service, aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}") as http:
        jobs = {job.name: job for job in service.periodic_jobs()}
        assert {"survey-tick", "webchat-sweeper", "webchat-watchdog", "console-live-announce"} <= set(jobs)
        assert await jobs["survey-tick"].run_once() is True  # a real tick, as the loop runs it
        ran_at = jobs["survey-tick"].last_run_at
        async with http.get("/metrics") as r:
            families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    last_run = {s.labels["task"]: s.value for s in families["posventa_periodic_last_run_timestamp_seconds"].samples}
    # At least that run: the loop's own first run (at start) may end after it, when the
    # start's other jobs keep the event loop busy.
    assert last_run["survey-tick"] >= ran_at
    runs = {(s.labels["task"], s.labels["outcome"]): s.value for s in families["posventa_periodic_runs"].samples
            if s.name == "posventa_periodic_runs_total"}
    assert runs[("survey-tick", "ok")] >= 1 and runs[("survey-tick", "failed")] == 0
    # One label value per job, named in the code: a bounded set whatever happens at run time.
    assert {task for task, _ in runs} == set(jobs)
    assert "posventa_periodic_last_error_timestamp_seconds" in families


async def _until(read, expected):
    while (value := await read()) != expected:
        await asyncio.sleep(0.02)
    return value




async def test_unsupported_methods_answer_405_with_allow(running):
    _, http, _ = running
    for method, path, allow in (("TRACE", "/api/v1/cases", "GET,POST"),
                                ("DELETE", "/api/v1/cases/1", "GET,PATCH"),
                                ("OPTIONS", "/api/v1/categories", "GET,POST")):
        async with http.request(method, path) as r:
            assert r.status == 405, (method, path)
            assert r.headers["Allow"] == allow
            assert (await r.json())["error"] == "method_not_allowed"


async def test_bad_query_values_and_undeclared_fields_are_422_naming_the_field(running):
    _, http, _ = running
    for query, field in (("type=AAA", "type"), ("q=", "q"), ("assigned=", "assigned"), ("limit=0", "limit"),
                         ("limit=1.5", "limit"), ("category=", "category"), ("offset=-1", "offset"),
                         ("q=%20%20", "q"), ("q=a%00b", "q")):
        async with http.get(f"/api/v1/cases?{query}") as r:
            body = await r.json()
            assert r.status == 422 and body["field"] == field, (query, body)
    case = {"title": "t", "description": "d", "contact": {"name": "Ana"}, "type": "request"}
    for extra, field, message in (({"agent": "x" * 121}, "agent", "agent must be at most 120 characters"),
                                  ({"agent": "  "}, "agent", "agent must not be blank nor contain NUL"),
                                  ({"contact": {"email": "no-at-sign"}}, "contact.email", None),
                                  ({"title": None}, "title", "title must be of type string"),
                                  ({"category_id": 0}, "category_id", "category_id must be at least 1")):
        async with http.post("/api/v1/cases", json={**case, **extra}) as r:
            body = await r.json()
            assert r.status == 422 and body["field"] == field, (extra, body)
            assert message is None or body["message"] == message
    async with http.post("/api/v1/cases", json={"title": "t", "description": "d", "type": "incident"}) as r:
        assert r.status == 422 and (await r.json())["field"] == "contact"
    # A whole number written 2.0 is the integer 2 (JSON Schema's reading), not a refusal.
    async with http.post("/api/v1/categories", json={"name": "A"}) as r:
        parent = (await r.json())["id"]
    async with http.post("/api/v1/categories", json={"name": "B", "parent_id": float(parent)}) as r:
        assert r.status == 201 and (await r.json())["parent_id"] == parent


async def test_renaming_a_category_onto_a_sibling_is_422_not_a_crash(running):
    _, http, _ = running
    async with http.post("/api/v1/categories", json={"name": "Top"}) as r:
        top = (await r.json())["id"]
    ids = []
    for name in ("One", "Two"):
        async with http.post("/api/v1/categories", json={"name": name, "parent_id": top}) as r:
            ids.append((await r.json())["id"])
    async with http.patch(f"/api/v1/categories/{ids[1]}", json={"name": "One"}) as r:
        assert r.status == 422 and (await r.json())["field"] == "name"
    async with http.patch(f"/api/v1/categories/{ids[1]}", json={"name": "Two"}) as r:  # its own name
        assert r.status == 200


async def test_openapi_declares_every_status_and_content_type(running):
    _, http, _ = running
    async with http.get("/api/v1/openapi.json") as r:
        paths = (await r.json())["paths"]
    listing = paths["/api/v1/cases"]["get"]
    assert set(listing["responses"]) == {"200", "401", "422", "503"}
    assert {p["name"]: p["schema"].get("minLength") for p in listing["parameters"]}["assigned"] == 1
    activity = paths["/api/v1/cases/{number}/activity"]["post"]["responses"]
    assert set(activity) == {"200", "400", "401", "404", "409", "413", "422", "503"}
    assert all(r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
               for status, r in activity.items() if status != "200")
    agent = paths["/api/v1/cases"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["agent"]
    assert agent["maxLength"] == 120 and agent["minLength"] == 1
async def test_an_unclassified_case_cannot_be_answered_or_closed(running, spec):
    service, http, _ = running
    receipt = await service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<t1@x>",
                                                         sender="ana@cliente.com", text="No imprime"))
    n = receipt.case_number
    op = spec.doc["paths"]["/api/v1/cases/{number}/activity"]["post"]
    assert "409" in op["responses"] and "type_required" in op["responses"]["409"]["description"]
    for target in ("answer_sent", "closed"):
        body = await call(http, spec, "POST", "/cases/{number}/activity", f"/cases/{n}/activity", status=409,
                          json={"activity": target})
        assert body["error"] == "type_required" and body["field"] == "type"
        assert body["message"] == ("the case has no type: set type to one of request, complaint, incident "
                                   f"before moving it to {target}")
    assert (await service.cases.get_case(n))["activity"] == "preliminary_analysis"
    await call(http, spec, "PATCH", "/cases/{number}", f"/cases/{n}", status=422, json={"type": "unclassified"})
    await call(http, spec, "PATCH", "/cases/{number}", f"/cases/{n}", status=200, json={"type": "complaint"})
    closed = await call(http, spec, "POST", "/cases/{number}/activity", f"/cases/{n}/activity", status=200,
                        json={"activity": "closed"})
    assert closed["activity"] == "closed" and closed["type"] == "complaint"
