"""Issue #19's "done when", end to end on both databases: a running Service whose mail
comes in and goes out over real SMTP (our server in, a capturing relay out), agents acting
through the HTTP API, and an injected clock for "yesterday" and "ten days ago".

(The merge of a web chat visitor and an email contact, seen on the contact page, is the
browser test in test_browser_contacts.py; the erasure keeping seller scores is
test_privacy.py.)"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import aiohttp
import aiosmtplib
import pytest

from posventa.service import Service
from tests.fakes.smtp_sink import SmtpSink
from tests.intake.console.harness import PASSWORD, ConsoleClient
from tests.support import API_TOKEN, FakeClock, free_port, make_config

START = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)  # a Wednesday, in business hours


@pytest.fixture
async def sink():
    async with SmtpSink() as s:
        yield s


@pytest.fixture
async def desk(database_url, tmp_path, sink):
    clock = FakeClock(START)
    config = make_config(database_url, tmp_path, email={
        "enabled": True, "listen_port": free_port(), "domains": ("example.com",), "address": "support@example.com",
        "outbound": {"host": "127.0.0.1", "port": sink.port}})
    async with Service(config, clock=clock) as service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http, clock


def mail(sender: str, msgid: str, body: str, *, subject: str = "Mi pedido no llegó", to: str = "support@example.com",
         name: str = "Xavier Pérez", **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"{name} <{sender}>"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = msgid
    for key, value in headers.items():
        m[key.replace("_", "-")] = value
    m.set_content(body)
    return m


async def deliver(service: Service, message: EmailMessage) -> int:
    """Send over SMTP; the case number our server answers with."""
    _, reply = await aiosmtplib.send(message, hostname="127.0.0.1", port=service.smtp.bound_port,
                                     recipients=[message["To"]], timeout=10)
    return int(reply.rsplit("#", 1)[1])


async def api(http: aiohttp.ClientSession, method: str, path: str, body: dict | None = None, status: int = 200):
    async with http.request(method, f"/api/v1{path}", json=body) as r:
        answer = await r.json()
        assert r.status == status, answer
        return answer


async def close(http: aiohttp.ClientSession, number: int) -> None:
    await api(http, "PATCH", f"/cases/{number}", {"type": "request", "agent": "maria"})
    await api(http, "POST", f"/cases/{number}/activity", {"activity": "closed", "agent": "maria"})


def answer_to(notice: EmailMessage, sender: str, msgid: str, body: str) -> EmailMessage:
    """The customer's mail client answering our message: to its Reply-To, in its thread."""
    return mail(sender, msgid, body, subject=f"Re: {notice['Subject']}", to=notice["Reply-To"] or notice["From"],
                In_Reply_To=notice["Message-ID"], References=notice["Message-ID"])


async def test_an_email_from_a_listed_domain_lands_in_the_organization(desk):
    service, http, _ = desk
    acme = await api(http, "POST", "/organizations", {"name": "Acme", "domains": ["acme.example"]}, status=201)
    number = await deliver(service, mail("x@acme.example", "<d1@acme.example>", "No llegó la factura."))
    case = await api(http, "GET", f"/cases/{number}")
    assert case["organization"] == "Acme" and case["organization_id"] == acme["id"]
    org = await api(http, "GET", f"/organizations/{acme['id']}")
    assert [c["email"] for c in org["contacts"]] == ["x@acme.example"]
    assert [c["number"] for c in org["open_cases"]] == [number] and org["open_case_count"] == 1
    # A public mail domain never joins anyone: gmail.com cannot be listed.
    refused = await api(http, "POST", "/organizations", {"name": "Gmail", "domains": ["gmail.com"]}, status=422)
    assert refused["field"] == "domains"


async def test_closing_tells_the_customer_in_their_language_and_replies_reopen_or_follow_up(desk, sink):
    service, http, clock = desk
    number = await deliver(service, mail("joao@cliente.example", "<p1@cliente.example>",
                                         "Olá, o meu pedido não chegou e já passou uma semana. Obrigado.",
                                         subject="Pedido não chegou", name="João Silva", Content_Language="pt-BR"))
    [ack] = await sink.wait_for(1)
    await close(http, number)

    # Closing sends a notice in the customer's language (pt), on their channel, saying how to reopen.
    notice = (await sink.wait_for(2))[1].message
    text = notice.get_body(("plain",)).get_content()
    assert notice["Content-Language"] == "pt" and "Encerramos" in text and "7 dias" in text
    assert f"#{number}" in text and notice["In-Reply-To"] == "<p1@cliente.example>"
    assert "joao@cliente.example" in notice["To"]

    # The next day the customer answers the notice: the case reopens, its SLA clock running again.
    clock.advance(days=1)
    assert await deliver(service, answer_to(notice, "joao@cliente.example", "<p2@cliente.example>",
                                            "Continua sem chegar.")) == number
    case = await api(http, "GET", f"/cases/{number}")
    assert case["activity"] == "preliminary_analysis" and case["closed_at"] is None
    assert case["due_at"] is not None and case["sla_paused"] is False
    [reopened] = [h for h in case["history"] if h["kind"] == "reopened"]
    assert (reopened["code"], reopened["values"], reopened["detail"]) == ("case_history_reopened", {},
                                                                          "reopened by the customer")

    # Closed again; ten days later an answer opens a new case linked to the old one.
    await api(http, "POST", f"/cases/{number}/activity", {"activity": "closed", "agent": "maria"})
    later = (await sink.wait_for(4))[-1].message  # "we reopened" (3), the second closing notice (4)
    assert "Encerramos" in later.get_body(("plain",)).get_content()
    clock.advance(days=10)
    follow_up = await deliver(service, answer_to(later, "joao@cliente.example", "<p3@cliente.example>",
                                                 "Chegou, mas veio quebrado."))
    assert follow_up != number
    new, old = await api(http, "GET", f"/cases/{follow_up}"), await api(http, "GET", f"/cases/{number}")
    assert new["follow_up_of"] == number and old["follow_ups"] == [follow_up] and old["activity"] == "closed"
    assert new["contact"]["id"] == old["contact"]["id"]
    [opened] = [h for h in new["history"] if h["kind"] == "opened"]
    assert (opened["code"], opened["values"], opened["detail"]) == ("case_history_follow_up", {"case": number},
                                                                    f"follow-up of #{number}")

    # A Spanish agent reads both cases' history in Spanish: the entries' sentences and the
    # activities and channel they moved between (stored as codes, English in the API).
    await service.console.users.create("maria", PASSWORD, role="agent", display_name="María")
    async with ConsoleClient(f"http://127.0.0.1:{service.http.bound_port}") as agent:
        assert (await agent.login("maria"))[0] == 200
        spanish = {"Accept-Language": "es"}
        status, page = await agent.get(f"/console/cases/{number}?tab=history", headers=spanish)
        rows = history_rows(page)
        assert status == 200 and ("Reabierto", "Cerrado", "Análisis preliminar reabierto por el cliente") in rows
        assert ("Cliente avisado", "", "Correo Cerrado") in rows and ("Abierto", "", "Correo") in rows
        assert "reopened by the customer" not in page and "preliminary_analysis" not in page
        status, page = await agent.get(f"/console/cases/{follow_up}?tab=history", headers=spanish)
        assert status == 200 and ("Abierto", "", f"Correo seguimiento de #{number}") in history_rows(page)
        assert "follow-up of" not in page
        status, page = await agent.get(f"/console/cases/{number}?tab=history", headers={"Accept-Language": "pt-BR"})
        assert ("Reaberto", "Fechado", "Análise preliminar reaberto pelo cliente") in history_rows(page)


def history_rows(page: str) -> list[tuple[str, str, str]]:
    """The history table's rows as (what, from, to and what it says), tags and spaces folded."""
    table = page.split('id="history"', 1)[1].split("</table>", 1)[0]
    rows = []
    for row in re.findall(r"<tr data-kind=[^>]*>(.*?)</tr>", table, re.DOTALL):
        cells = [" ".join(re.sub(r"<[^>]+>", " ", html.unescape(c)).split())
                 for c in re.findall(r"<td>(.*?)</td>", row, re.DOTALL)]
        rows.append((cells[2], cells[3], cells[4]))
    return rows
