"""A web chat visitor's files reach the case's topic on the Telegram desk (sendPhoto for a
photo, sendDocument for anything else), against the fake Bot API, which checks each call
against the Bot API contract (tests/contracts). Both databases."""

from __future__ import annotations

import aiohttp
import pytest

from posventa.core.domain import ChannelName
from posventa.service import Service
from tests.bots.conftest import AGENTS_CHAT, telegram_section
from tests.fakes.telegram_api import FakeTelegram
from tests.intake.webchat.support import ChatClient
from tests.intake.webchat.test_uploads import PDF, PNG
from tests.support import RecordingChannel, make_config


@pytest.fixture
async def service(database_url, tmp_path, tg: FakeTelegram):
    tg.forum(AGENTS_CHAT)
    service = Service(make_config(database_url, tmp_path, telegram=telegram_section(tg), webchat={"enabled": True}))
    service.channels[ChannelName.EMAIL] = RecordingChannel(ChannelName.EMAIL)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def test_a_visitors_photo_and_pdf_are_forwarded_into_the_cases_topic(service: Service, tg: FakeTelegram):
    base = f"http://127.0.0.1:{service.http.bound_port}"
    async with aiohttp.ClientSession() as http:
        chat = await ChatClient.connect(http, base)
        await chat.hello(lang="es", name="Lucía")
        ack = await chat.say("m-1", "Hola, llegó rota la pava")
        assert ack["type"] == "ack"
        answers = []
        for client_id, name, data in (("f-1", "pava.jpg", PNG), ("f-2", "factura.pdf", PDF)):
            async with http.post(f"{base}/chat/files", params={"id": client_id, "name": name}, data=data,
                                 headers={"Authorization": f"Bearer {chat.session}"}) as r:
                assert r.status == 201, await r.text()
                answers.append(await r.json())
        assert {a["case"] for a in answers} == {ack["case"]}
        await chat.close()

    photo = await tg.wait_for_call("sendPhoto", lambda c: c.params["chat_id"] == AGENTS_CHAT)
    assert photo.files["photo"].content == PNG
    document = await tg.wait_for_call("sendDocument", lambda c: c.params["chat_id"] == AGENTS_CHAT)
    assert document.files["document"].content == PDF
    assert document.files["document"].filename == "factura.pdf"
    # Both in the case's own topic, after the visitor's words naming the file.
    thread = photo.params["message_thread_id"]
    assert document.params["message_thread_id"] == thread
    assert tg.topics[(AGENTS_CHAT, thread)]["name"].startswith(f"#{ack['case']} · Hola, llegó rota la pava")
    texts = [m.get("text") for m in tg.sent_messages(AGENTS_CHAT, thread) if m.get("text")]
    assert "👤 Lucía · webchat · 📎1\n📎 pava.jpg.png" in texts
    assert "👤 Lucía · webchat · 📎1\n📎 factura.pdf" in texts
