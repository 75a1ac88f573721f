"""Telling the customer: a notice on their channel, in their language, through the outbox."""

from __future__ import annotations

import aiohttp
import pytest

from posventa.core.config import load_config
from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.errors import ConfigError
from posventa.service import Service
from tests.support import API_TOKEN, RecordingChannel, make_config


@pytest.fixture
async def make_running(database_url, tmp_path):
    started = []

    async def start(**cases):
        service = Service(make_config(database_url, tmp_path, cases=cases))
        email = RecordingChannel(ChannelName.EMAIL)
        service.channels[ChannelName.EMAIL] = email
        await service.start()
        started.append(service)
        http = aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
        started.append(http)
        return service, http, email

    yield start
    for thing in reversed(started):
        await (thing.close() if isinstance(thing, aiohttp.ClientSession) else thing.stop())


async def _case_in_portuguese(service) -> int:
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<pt1@cliente.example>", sender="joao@cliente.example",
        text="Meu pedido não chegou", subject="Pedido", language="pt-BR", auto_reply_allowed=False))
    return receipt.case_number


async def _move(http, number: int, activity: str) -> None:
    async with http.patch(f"/api/v1/cases/{number}", json={"type": "request"}) as r:  # the moves need a type
        assert r.status == 200, await r.text()
    async with http.post(f"/api/v1/cases/{number}/activity", json={"activity": activity, "agent": "maria"}) as r:
        assert r.status == 200, await r.text()


async def test_closing_tells_the_customer_in_their_language(make_running):
    service, http, email = await make_running()
    number = await _case_in_portuguese(service)
    await _move(http, number, "answer_sent")  # off by default: nothing goes out
    await _move(http, number, "closed")
    [notice] = await email.wait_for(1)
    assert notice.recipient == "joao@cliente.example" and notice.automatic
    assert f"#{number}" in notice.text and "Encerramos" in notice.text and "7 dias" in notice.text
    assert notice.email and notice.email.in_reply_to == "<pt1@cliente.example>"
    async with http.get(f"/api/v1/cases/{number}") as r:
        history = (await r.json())["history"]
    assert [h["to"] for h in history if h["kind"] == "customer_told"] == ["email"]
    assert len(email.sent) == 1


async def test_each_event_is_switched_and_its_text_edited(make_running):
    service, http, email = await make_running(
        notify_answer_sent=True, notify_closed=False, reopen_days=3,
        notice_answer_sent_pt="Caso {number} respondido; responda em {days} dias para reabrir.")
    number = await _case_in_portuguese(service)
    await _move(http, number, "answer_sent")
    [notice] = await email.wait_for(1)
    assert notice.text == f"Caso {number} respondido; responda em 3 dias para reabrir."
    await _move(http, number, "closed")
    async with http.get(f"/api/v1/cases/{number}") as r:
        history = (await r.json())["history"]
    assert [h["detail"] for h in history if h["kind"] == "customer_told"] == ["answer_sent"]


def test_a_notice_text_with_an_unknown_placeholder_stops_start_up(tmp_path):
    path = tmp_path / "posventa.toml"
    path.write_text('[cases]\nnotice_closed_en = "Closed {case}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "cases.notice_closed_en" in str(caught.value) and "{case}" in str(caught.value)
    path.write_text('[cases]\nreopen_days = 0\n')
    with pytest.raises(ConfigError, match="cases.reopen_days"):
        load_config(path, env={})
