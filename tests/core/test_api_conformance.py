"""schemathesis over the running service: what /api/v1/openapi.json says is what the API does.

A real Service (the composition root, as ``posventa serve`` builds it) on a SQLite file,
with the surveys on and an API token, runs on a loop of its own in a thread; schemathesis
(a fixed seed, a bounded number of examples per operation) calls it over HTTP in every
phase (examples, coverage, fuzzing) with every check it has, and the test fails on any
finding, listing each with a curl command that reproduces it. It drives schemathesis'
engine (what its CLI runs) rather than ``schemathesis.pytest.from_fixture``, whose lazy
loading does not work with pytest 9 (it sets ``node._nodeid``, which pytest 9 dropped).
See intake/api/openapi.py for how to declare an endpoint so that it passes.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests
import schemathesis

from aiohttp import web

from posventa.core.domain import ChannelName, InboundMessage
from posventa.intake.api.openapi import PREFIX, ApiRegistry, integer, query, query_param
from posventa.intake.http import HttpServer, api_errors
from posventa.service import Service
from tests.support import API_TOKEN, RecordingChannel, free_port, make_config

#: Examples per operation in the fuzzing phase; the coverage phase adds its own cases
#: (boundaries, each constraint broken once, unexpected methods).
MAX_EXAMPLES = 6
SEED = 16

#: What positive_data_acceptance accepts for a schema-valid request by default
#: (schemathesis' own list, restated because an operation's list replaces it).
_ACCEPTABLE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
_REJECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]


class _ServiceThread:
    """A Service (or anything with start/stop) on its own event loop, so synchronous
    schemathesis can call it."""

    def __init__(self, service: Service | HttpServer) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="api-under-test", daemon=True)

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> _ServiceThread:
        self._thread.start()
        self.run(self.service.start())
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.run(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def _seed(base: str, served: _ServiceThread) -> None:
    """One of everything, so that id 1 of each kind exists and generated requests reach
    the handlers' logic rather than a 404."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {API_TOKEN}"

    def post(path: str, json: dict) -> dict:
        r = http.post(base + PREFIX + path, json=json, timeout=30)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
        return r.json()

    served.run(served.service.console.users.create("ana", "conformance-Pass-2026", role="agent"))
    served.run(served.service.inbox.receive(InboundMessage(
        channel=ChannelName.TELEGRAM, external_id="seed-1", sender="4242", text="la impresora no imprime")))
    post("/cases", {"title": "Factura", "description": "No puedo emitir", "type": "incident",
                    "contact": {"email": "ana@example.com"}})
    post("/macros", {"name": "thanks", "bodies": {"es": "Gracias, {{ customer.name }}"}})
    top = post("/categories", {"name": "Facturación"})
    post("/categories", {"name": "Notas", "parent_id": top["id"]})
    post("/surveys/questions", {"code": "attention", "scale": "1-5", "weights": [-100, -50, 0, 50, 100],
                                "text": {"es": "¿Atención?", "pt": "Atendimento?", "en": "Attention?"}})
    post("/surveys/rules", {"name": "after-sale", "start_after_days": 0, "expires_after_days": 30,
                            "questions": ["attention"], "operators": ["ana"]})
    post("/surveys/profiles", {"name": "standard", "rules": ["after-sale"]})
    post("/surveys/products", {"code": "P1", "name": "Printer", "profile": "standard"})
    post("/sales", {"external_id": "S1", "product": "P1", "seller": "bob", "closed_at": "2026-01-10",
                    "customer": {"telegram_id": "4242"}})


def _config(base: str, api: ApiRegistry, *, max_examples: int = MAX_EXAMPLES) -> schemathesis.Config:
    operations = [
        # By label: include-path and include-method are matched separately, so a path's
        # other method could take the entry.
        {"include-name": f"{op.method} {PREFIX}{op.path}",
         # A refusal the operation declares (a name taken, a reference that does not
         # exist, a rule JSON Schema cannot state) is expected of schema-valid input too.
         "checks": {"positive_data_acceptance": {"expected-statuses": _ACCEPTABLE + sorted(map(str, op.errors))}}}
        for op in api.operations if op.errors
    ]
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": base,
        "headers": {"Authorization": f"Bearer {API_TOKEN}"},
        "generation": {"mode": "all", "max-examples": max_examples, "database": "none"},
        # Coverage: each constraint at its bounds and broken once, and an unexpected method per
        # path; TRACE is the one the audit found answered without Allow, and every method is
        # refused by the same router code, so one is enough for the time this test may take.
        "phases": {"examples": {"enabled": True},
                   "coverage": {"enabled": True, "unexpected-methods": ["trace"],
                                "generate-duplicate-query-parameters": False},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        # A body over [http] max_body_bytes is refused with 413 before it is read.
        "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": _REJECTED + ["413"]}},
        "operations": operations,
    })


def _shorten(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _findings(schema: schemathesis.BaseSchema) -> tuple[list[str], int]:
    """Run every phase and check; each finding as text a developer can act on (what
    failed and the curl that shows it), and how many cases were sent."""
    from schemathesis.engine import Status, from_schema
    from schemathesis.engine.events import EngineFinished, FatalError, NonFatalError, ScenarioFinished

    findings: list[str] = []
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, ScenarioFinished):
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        findings.append(f"{event.recorder.label}: {check.name}: {failure.title}\n"
                                        f"    {failure.message.strip()}\n"
                                        f"    {_shorten(check.failure_info.code_sample)}")
        elif isinstance(event, NonFatalError):
            findings.append(f"{event.label}: error: {event.info.format()}")
        elif isinstance(event, FatalError):
            findings.append(f"fatal: {event.exception!r}")
        elif isinstance(event, EngineFinished):
            assert event.stop_reason == "completed", event.stop_reason
    return sorted(set(findings)), cases


# Hypothesis warns about how examples are drawn: a generated body of megabytes it would print
# (the text fields' maximum lengths), or schemathesis' own use of `random` inside a strategy.
# With warnings as errors each became a "Runtime Error" finding on whichever operation drew
# such an example first. They are notices about test generation, not about the API.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
def test_api_does_what_its_description_says(tmp_path):
    service = Service(make_config(f"sqlite+aiosqlite:///{tmp_path / 'posventa.db'}", tmp_path,
                                  surveys={"enabled": True}))
    # Replies are queued for Telegram; a recording channel takes them instead of the network.
    service.channels[ChannelName.TELEGRAM] = RecordingChannel(ChannelName.TELEGRAM)
    with _ServiceThread(service) as served:
        base = f"http://127.0.0.1:{service.http.bound_port}"
        _seed(base, served)
        schema = schemathesis.openapi.from_url(f"{base}{PREFIX}/openapi.json", config=_config(base, service.api))
        assert len(list(schema.get_all_operations())) == len(service.api.operations)
        findings, cases = _findings(schema)
    assert cases > 10 * len(service.api.operations)  # it really ran
    assert not findings, f"{len(findings)} finding(s):\n" + "\n".join(findings)


def test_a_response_the_description_does_not_declare_is_a_finding():
    """The harness itself: one operation that answers what it does not declare (a 418
    in text/plain) must come out as findings, so a green run means something."""
    api = ApiRegistry()

    async def teapot(request: web.Request) -> web.Response:
        if query(request).get("n", 1) > 3:
            return web.Response(status=418, text="short and stout")
        return web.json_response({"n": query(request).get("n", 1)})

    api.add("GET", "/teapot", teapot, summary="n up to 3 is JSON", tag="test",
            params=[query_param("n", integer(1, 5))],
            response={"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}})
    app = web.Application(middlewares=[api_errors])
    api.install(app, tokens=[API_TOKEN])
    server = HttpServer(app=app, host="127.0.0.1", port=free_port())
    with _ServiceThread(server):
        base = f"http://127.0.0.1:{server.bound_port}"
        schema = schemathesis.openapi.from_url(f"{base}{PREFIX}/openapi.json", config=_config(base, api, max_examples=5))
        findings, _ = _findings(schema)
    assert any("status_code_conformance" in f and "418" in f for f in findings), findings
