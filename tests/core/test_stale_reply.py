"""A reply written before the case's newest message (issue 21, collision warnings): core
refuses it with StaleReply and sends nothing; sending again with the newest id confirms.
Over the API too (``seen_message_id``), on both databases."""

from __future__ import annotations

import aiohttp
import pytest

from posventa.core.cases import NewCase
from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.core.errors import StaleReply
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


async def _case_with_customer_message(service) -> tuple[int, int]:
    case = await service.cases.create_case(NewCase(case_type="request", title="Licencia", description="No activa",
                                                   contact_name="Ana", contact_email="ana@cliente.com"),
                                           actor="agent:maria")
    stored = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<one@cliente.com>", sender="ana@cliente.com", subject="Re: Licencia",
        text="Sigue sin activar", thread=ThreadHints(case_number=case["number"])))
    assert stored.case_number == case["number"]
    detail = await service.cases.get_case(case["number"])
    return case["number"], max(m["id"] for m in detail["messages"])


async def _customer_writes(service, number: int, external_id: str, text: str) -> None:
    await service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id=external_id,
                                               sender="ana@cliente.com", subject="Re: Licencia", text=text,
                                               thread=ThreadHints(case_number=number)))


async def test_core_refuses_a_reply_older_than_the_newest_customer_message_or_agent_reply(running):
    service, _http, email = running
    cases = service.cases
    number, seen = await _case_with_customer_message(service)
    # Nothing new since: it goes out.
    await cases.reply(number, "Probá reiniciar", agent="maria", seen_message_id=seen)
    # Maria's own reply is now newer than what Leo saw: Leo is asked first.
    with pytest.raises(StaleReply) as refused:
        await cases.reply(number, "Reinstale, por favor", agent="leo", seen_message_id=seen)
    latest = refused.value.latest
    assert refused.value.newer == (latest,) and refused.value.field == "seen_message_id"
    # A note is no reason to stop a reply.
    await cases.add_note(number, "Llamó por teléfono", agent="maria")
    await _customer_writes(service, number, "<two@cliente.com>", "Ya probé")
    with pytest.raises(StaleReply) as again:
        await cases.reply(number, "Reinstale, por favor", agent="leo", seen_message_id=latest)
    assert len(again.value.newer) == 1 and again.value.latest > latest
    # Sending with the newest id is the confirmation; without one there is no check at all.
    await cases.reply(number, "Reinstale, por favor", agent="leo", seen_message_id=again.value.latest)
    await cases.reply(number, "Y avísenos", agent="leo")
    sent = await email.wait_for(3)
    assert [m.text for m in sent if m.kind == "reply"] == ["Probá reiniciar", "Reinstale, por favor", "Y avísenos"]


async def test_the_api_answers_409_stale_reply_and_sends_on_confirmation(running):
    service, http, email = running
    number, seen = await _case_with_customer_message(service)
    await _customer_writes(service, number, "<two@cliente.com>", "¿Hay novedades?")
    async with http.post(f"/api/v1/cases/{number}/reply",
                         json={"text": "Lo revisamos", "agent": "maria", "seen_message_id": seen}) as r:
        body = await r.json()
        assert r.status == 409, body
    assert body["error"] == "stale_reply" and body["field"] == "seen_message_id"
    assert len(body["newer"]) == 1 and body["latest_message_id"] == body["newer"][0]
    assert (await service.cases.get_case(number))["messages"][-1]["text"] == "¿Hay novedades?"  # nothing sent
    for bad in (-1, "12", 2**63):
        async with http.post(f"/api/v1/cases/{number}/reply",
                             json={"text": "x", "seen_message_id": bad}) as r:
            assert r.status == 422 and (await r.json())["field"] == "seen_message_id"
    async with http.post(f"/api/v1/cases/{number}/reply", json={
            "text": "Lo revisamos", "agent": "maria", "seen_message_id": body["latest_message_id"]}) as r:
        assert r.status == 202, await r.json()
    [sent] = await email.wait_for(1)
    assert sent.text == "Lo revisamos"
