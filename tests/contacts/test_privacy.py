"""Privacy requests: export everything held about a contact; erase it, keeping the
sellers' survey scores; through the API (admin tokens only), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import insert, select

from posventa.core.domain import ChannelName, ChoiceAnswer, InboundMessage
from posventa.core import case_history
from posventa.core.persistence.schema import case_events, contact_identities, messages, outbox
from posventa.core.surveys import PanelFilter
from tests.core.surveys.conftest import CATALOG, sale
from tests.core.surveys.test_conversations import OPENS, World
from tests.support import API_TOKEN, make_config

ADMIN_TOKEN = "admin-token-0123456789abcdef"


@pytest.fixture
async def world(database_url, tmp_path):
    w = World(database_url, tmp_path)
    w.config = make_config(database_url, tmp_path, surveys={"enabled": True, "tick_seconds": 3600},
                           api={"admin_tokens": (ADMIN_TOKEN,)})
    await w.start()
    await w.service.surveys.catalog.import_toml(CATALOG)
    yield w
    await w.stop()


async def _answered_survey_and_a_case(world) -> tuple[int, int, str]:
    """Ana (Telegram 1001) answers her survey, then writes about a problem with a photo."""
    service = world.service
    await service.surveys.sales.record_many([sale("P-1", telegram_id="1001", name="Ana Pérez")])
    await world.tick(OPENS)
    for value in ("4", "10", "yes"):
        [question] = await world.next(ChannelName.TELEGRAM)
        await world.say(ChannelName.TELEGRAM, "1001", value, choice=ChoiceAnswer(question.question, value))
    await world.next(ChannelName.TELEGRAM)  # the thanks
    photo = await service.attachments.put(b"\x89PNG private photo of Ana's invoice", filename="factura.png",
                                          content_type="image/png")
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.TELEGRAM, external_id="1001:77", sender="1001", sender_name="Ana Pérez",
        text="Mi DNI es 12.345.678 y la impresora no imprime", attachments=(photo,)))
    case = await service.cases.get_case(receipt.case_number)
    await service.cases.add_note(receipt.case_number, "Ana llamó desde el 11 5555 1234", agent="maria")
    return case["contact"]["id"], receipt.case_number, photo.sha256


async def test_export_then_erase_keeps_the_seller_scores(world):
    service = world.service
    contact_id, number, sha = await _answered_survey_and_a_case(world)
    scores_before = await service.surveys.panel.seller_scores(PanelFilter())
    assert scores_before and scores_before[0]["seller"] == "marta"
    # A reply that could not reach her: the case's history names her address (as the
    # outbox writes it when a channel refuses for good).
    async with service.db.transaction() as conn:
        await conn.execute(insert(case_events).values(
            case_id=number, at=datetime.now(UTC), actor="system", kind="delivery_failed",
            **case_history.says(case_history.DELIVERY_FAILED, channel="telegram", recipient="1001",
                                error="Forbidden: bot was blocked by the user 1001")))
    assert service.attachments.path_for(sha).exists()

    base = f"http://127.0.0.1:{service.http.bound_port}/api/v1"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as agent, \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        async with agent.get(f"{base}/contacts/{contact_id}/export") as r:
            assert r.status == 200
            document = await r.json()
        texts = [m["text"] for c in document["cases"] for m in c["messages"]]
        assert "Mi DNI es 12.345.678 y la impresora no imprime" in texts
        assert "Ana llamó desde el 11 5555 1234" in texts  # agents' notes that mention her
        assert document["identities"] == [{"kind": "telegram", "address": "1001", "verified": True,
                                           "created_at": document["identities"][0]["created_at"]}]
        assert [a["score"] for a in document["survey_answers"]] == ["4", "10", "yes"]
        assert document["sales"][0]["external_id"] == "P-1"
        [message] = [m for c in document["cases"] for m in c["messages"] if m["attachments"]]
        assert message["attachments"][0]["filename"] == "factura.png"

        # Only an admin token may erase.
        async with agent.delete(f"{base}/contacts/{contact_id}") as r:
            assert r.status == 403 and (await r.json())["error"] == "forbidden"
        async with admin.delete(f"{base}/contacts/{contact_id}?agent=dpo") as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["files_deleted"] >= 1
        async with admin.delete(f"{base}/contacts/{contact_id}") as r:
            assert r.status == 422 and "already erased" in (await r.json())["message"]
        async with admin.delete(f"{base}/contacts/999999") as r:
            assert r.status == 404
        # The erasure's entry, the same in the contact and in its export: a code, its values
        # and the English sentence (a console reader gets it in their language).
        async with agent.get(f"{base}/contacts/{contact_id}") as r:
            erased = (await r.json())["history"][-1]
        async with agent.get(f"{base}/contacts/{contact_id}/export") as r:
            assert (await r.json())["history"][-1] == erased
        assert erased["code"] == "contact_history_erased" and erased["values"]["cases"] == 1
        assert erased["values"]["files"] == 1 and erased["values"]["messages"] >= 2
        assert erased["detail"] == (f"cases: 1, messages: {erased['values']['messages']}, files: 1")

    contact = await service.contacts.get(contact_id)
    assert contact["name"] == f"erased contact #{contact_id}" and contact["identities"] == []
    assert contact["erased_at"] and contact["history"][-1]["kind"] == "erased"
    assert contact["history"][-1]["actor"] == "agent:dpo"
    case = await service.cases.get_case(number)
    assert "DNI" not in str(case) and "5555" not in str(case) and "factura.png" not in str(case)
    assert [h["actor"] for h in case["history"] if h["kind"] == "erased"] == ["agent:dpo"]
    [failed] = [h for h in case["history"] if h["kind"] == "delivery_failed"]
    assert "1001" not in str(failed) and failed["detail"] is None
    assert not service.attachments.path_for(sha).exists()
    async with service.db.engine.connect() as conn:
        stored = list((await conn.execute(select(messages.c.text))).scalars())
        payloads = list((await conn.execute(select(outbox.c.payload))).scalars())
        assert not (await conn.execute(select(contact_identities).where(
            contact_identities.c.address == "1001"))).first()
    assert not any("DNI" in t or "Ana" in t for t in stored)
    assert not any("Ana" in str(p) for p in payloads)
    assert await service.surveys.panel.seller_scores(PanelFilter()) == scores_before
    assert (await service.contacts.search("ana")) == []
    # She writes again: a stranger to us now, a new contact.
    again = await service.inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="1001:78",
                                                       sender="1001", text="hola"))
    assert (await service.cases.get_case(again.case_number))["contact"]["id"] != contact_id
