"""An agent's files reach an email customer as real MIME attachments: a reply with files
through the API, the outbox and our SMTP sending path into a capturing SMTP sink, on both
databases."""

from __future__ import annotations

import aiohttp
import pytest

from tests.core.test_reply_files import PDF, form, png
from tests.fakes.smtp_sink import SmtpSink
from tests.support import API_TOKEN, free_port, make_config
from posventa.service import Service


@pytest.fixture
async def sink():
    async with SmtpSink() as s:
        yield s


@pytest.fixture
async def running(database_url, tmp_path, sink):
    config = make_config(database_url, tmp_path, email={
        "enabled": True, "listen_port": free_port(), "domains": ("example.com",), "address": "support@example.com",
        "outbound": {"host": "127.0.0.1", "port": sink.port}})
    async with Service(config) as service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http


async def test_files_go_out_as_mime_attachments(running, sink):
    service, http = running
    async with http.post("/api/v1/cases", json={"title": "Factura", "description": "x", "type": "request",
                                                "contact": {"email": "ana@cliente.com"}}) as r:
        number = (await r.json())["number"]
    image = png()
    async with http.post(f"/api/v1/cases/{number}/reply", data=form(
            ("foto del daño.png", image), ("factura.pdf", PDF), ("pasos.txt", "Reinicie la impresora.\n".encode()),
            text="Le envío la factura y una foto.", agent="maria")) as r:
        assert r.status == 202, await r.text()
    [captured] = await sink.wait_for(1)
    mail = captured.message
    assert mail.get_content_type() == "multipart/mixed"
    assert mail.get_body(("plain",)).get_content().strip() == "Le envío la factura y una foto."
    parts = list(mail.iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        ("foto del daño.png", "image/png"), ("factura.pdf", "application/pdf"), ("pasos.txt", "text/plain")]
    assert parts[0].get_content() == image and parts[1].get_content() == PDF
    assert parts[2].get_content() == "Reinicie la impresora.\n" and parts[2].get_content_charset() == "utf-8"
    assert all(p.get_content_disposition() == "attachment" for p in parts)
    # The attachments are the reply's: the case shows them on the agent's message.
    async with http.get(f"/api/v1/cases/{number}") as r:
        reply = next(m for m in (await r.json())["messages"] if m["author"] == "agent")
    assert [a["filename"] for a in reply["attachments"]] == ["foto del daño.png", "factura.pdf", "pasos.txt"]
    assert reply["delivery"]["state"] in ("sending", "sent")
