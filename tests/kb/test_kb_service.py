"""The knowledge base inside a running Service, against the fake Discourse over HTTP:
sync, suggestions to the customer, "did this solve it?", the three KB actions,
publishing through the outbox (also while Discourse is down), and webhooks."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlalchemy import func, select

from posventa.core.domain import ChannelName, ChoiceAnswer, InboundMessage
from posventa.core.persistence.schema import cases, outbox
from posventa.kb.discourse import DiscourseUnavailable
from posventa.kb.embedding import SentenceEncoder
from posventa.kb.index import KbIndex
from posventa.kb.tables import kb_articles, kb_vectors
from posventa.service import Service
from tests.fakes.discourse_api import FakeDiscourse
from tests.support import API_TOKEN, RecordingChannel, make_config

SECRET = "webhook-secret-123456"


@pytest.fixture
async def forum():
    async with FakeDiscourse(api_key="kb-key-0123456789") as fake:
        fake.add_topic("Cómo restablecer la contraseña del portal",
                       "Si olvidaste tu contraseña, entra al portal y pulsa 'Olvidé mi contraseña'. "
                       "Te llegará un correo para crear una nueva.", tags=["cuenta"])
        fake.add_topic("La impresora fiscal no imprime tickets",
                       "Revisar que el papel térmico esté bien colocado y reiniciar la impresora fiscal.",
                       replies=["Otra opción: actualizar el controlador de la impresora."], accepted_post_number=2)
        fake.add_topic("Plazos de entrega de pedidos al interior",
                       "Los pedidos al interior del país demoran entre 5 y 7 días hábiles.")
        yield fake


@pytest.fixture
async def running(database_url, tmp_path, forum):
    config = make_config(database_url, tmp_path, kb={
        "enabled": True, "api_url": forum.base_url, "api_key": "kb-key-0123456789", "webhook_secret": SECRET,
        "min_score": 40.0, "suggest_limit": 2, "sync_interval_seconds": 3600, "publish_category": 1})
    service = Service(config)
    telegram = RecordingChannel(ChannelName.TELEGRAM)
    service.channels[ChannelName.TELEGRAM] = telegram
    async with service:
        await asyncio.wait_for(service.kb.synced.wait(), 30)  # the background loop's first walk
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http, telegram, forum


def customer(text: str, ext: str = "1:1", **kw) -> InboundMessage:
    return InboundMessage(channel=ChannelName.TELEGRAM, external_id=ext, sender="555", text=text, language="es", **kw)


async def test_sync_indexes_title_first_post_and_accepted_answer(running, db):
    service, _, _, _ = running
    async with db.engine.connect() as conn:
        rows = {r.title: r for r in await conn.execute(select(kb_articles))}
    assert len(rows) == 3 and len(service.kb.index) == 3
    printer = rows["La impresora fiscal no imprime tickets"]
    assert "papel térmico" in printer.body and "controlador" in printer.accepted_answer
    assert printer.url.startswith(service.config.kb.api_url) and printer.url.endswith(f"/{printer.topic_id}")


async def test_passage_vectors_are_encoded_in_the_background_stored_and_reused(running, db):
    service, _, _, _ = running
    assert service.kb.index.semantic
    await asyncio.wait_for(service.kb.index.encoded.wait(), 60)
    async with db.engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(kb_vectors))).scalar_one()
    assert stored >= 3  # at least one passage per article
    # A restart (or another process) takes them from the database and encodes nothing.
    again = KbIndex(db=db, encoder=SentenceEncoder.bundled())
    assert await again.load() == 3
    assert again.encoded.is_set()
    question = "la impresora no saca los tickets"
    ours = await service.kb.index.suggest(question, language="es", limit=3)
    theirs = await again.suggest(question, language="es", limit=3)
    assert [(s.article_id, s.score) for s in ours] == [(s.article_id, s.score) for s in theirs]
    assert ours[0].title == "La impresora fiscal no imprime tickets"


async def test_new_case_gets_suggestions_and_yes_closes_it_self_served(running, db):
    service, http, telegram, _ = running
    receipt = await service.inbox.receive(customer("no me acuerdo la contraseña del portal, cómo la restablezco?"))
    sent = await telegram.wait_for(2)
    suggestions = next(m for m in sent if m.kind == "suggestions")
    assert suggestions.suggestions[0].title == "Cómo restablecer la contraseña del portal"
    assert suggestions.question == f"kb_feedback:{receipt.case_number}"
    assert [c.value for c in suggestions.choices] == ["yes", "no"]
    async with http.get(f"/api/v1/cases/{receipt.case_number}") as r:
        case = await r.json()
    assert case["suggestions"][0]["score"] >= 40
    before = len(telegram.sent)
    await service.inbox.receive(customer("Sí", "1:2", choice=ChoiceAnswer(suggestions.question, "yes")))
    # The type is mandatory before closing: the customer is asked it, and the answer closes.
    [ask] = list(await telegram.wait_for(before + 1))[before:]
    assert ask.question == f"case_type:{receipt.case_number}" and [c.value for c in ask.choices] == [
        "request", "complaint", "incident"]
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == receipt.case_number))).one()
    assert row.activity == "preliminary_analysis" and row.self_served
    await service.inbox.receive(customer("solicitud", "1:3"))
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == receipt.case_number))).one()
    assert row.activity == "closed" and row.self_served and row.case_type == "request"
    assert "Cerramos el caso" in (await telegram.wait_for(before + 2))[-1].text


async def test_no_suggestion_below_min_score(running):
    service, _, telegram, _ = running
    await service.inbox.receive(customer("xyzzy qwerty"))
    await telegram.wait_for(1)
    await asyncio.sleep(0.3)
    assert [m.kind for m in telegram.sent] == ["ack"]


async def test_publish_link_and_none_through_the_api(running, db):
    service, http, _, forum = running
    receipt = await service.inbox.receive(customer("El lector de códigos de barras no lee etiquetas nuevas"))
    n = receipt.case_number
    async with http.post(f"/api/v1/cases/{n}/kb-action", json={"action": "publish"}) as r:
        assert r.status == 422 and (await r.json())["field"] == "kb.answer"  # nothing to publish yet
    async with http.patch(f"/api/v1/cases/{n}", json={"kb": {"answer": "Actualizar el firmware del lector a la 2.1",
                                                             "hotfix": "hf-2231"}}) as r:
        assert r.status == 200
    for _ in range(2):  # publishing twice must not create two topics
        async with http.post(f"/api/v1/cases/{n}/kb-action", json={"action": "publish"}) as r:
            assert r.status == 200

    async def published() -> dict:
        while True:
            async with http.get(f"/api/v1/cases/{n}") as r:
                case = await r.json()
            if case["kb"]["url"]:
                return case
            await asyncio.sleep(0.1)

    case = await asyncio.wait_for(published(), 10)
    topics = [t for t in forum.topics.values() if t.external_id == f"case-{n}"]
    assert len(topics) == 1 and case["kb"]["url"].endswith(f"/{topics[0].id}")
    raw = topics[0].posts[0].raw
    assert "firmware" in raw and "hf-2231" in raw and f"#{n}" in raw
    async with http.post(f"/api/v1/cases/{n}/kb-action", json={"action": "link", "url": "javascript:alert(1)"}) as r:
        assert r.status == 422
    async with http.post(f"/api/v1/cases/{n}/kb-action", json={"action": "none"}) as r:
        assert (await r.json())["kb"]["action"] == "none"


async def test_publishing_waits_while_discourse_is_down(running, db):
    service, http, _, forum = running
    receipt = await service.inbox.receive(customer("Pantalla azul al abrir el sistema de ventas"))
    n = receipt.case_number
    await service.cases.update_kb_fields(n, agent="ana", answer="Reinstalar el runtime de .NET 8 y reiniciar")
    forum.down = True
    await service.cases.kb_action(n, "publish", agent="ana")

    async def status() -> str:
        async with db.engine.connect() as conn:
            return (await conn.execute(select(outbox.c.status).where(outbox.c.kind == "kb_publish"))).scalar()

    for _ in range(100):
        if await status() == "awaiting_retry":
            break
        await asyncio.sleep(0.05)
    assert await status() == "awaiting_retry"
    forum.down = False
    for _ in range(200):
        if await status() == "sent":
            break
        await asyncio.sleep(0.05)
    assert await status() == "sent"
    assert any(t.external_id == f"case-{n}" for t in forum.topics.values())


async def test_webhooks_refresh_the_index_and_forgeries_are_refused(running):
    service, http, _, forum = running
    topic = forum.add_topic("Error 503 al sincronizar stock", "Cuando el stock no sincroniza, revisar la API key.")
    url = f"http://127.0.0.1:{service.http.bound_port}/kb/discourse/webhook"
    assert await forum.send_webhook(url, "topic_created", {"topic": {"id": topic.id}}, "wrong-secret") == 403
    assert await forum.send_webhook(url, "topic_created", {"topic": {"id": topic.id}}, SECRET) == 200
    for _ in range(100):
        found = await service.kb.index.suggest("error 503 sincronizar stock", language="es", limit=1)
        if found and found[0].title.startswith("Error 503"):
            break
        await asyncio.sleep(0.05)
    assert found[0].title == "Error 503 al sincronizar stock"
    forum.delete_topic(topic.id)
    assert await forum.send_webhook(url, "topic_destroyed", {"topic": {"id": topic.id}}, SECRET) == 200
    for _ in range(100):
        found = await service.kb.index.suggest("error 503 sincronizar stock", language="es", limit=1)
        if not found or not found[0].title.startswith("Error 503"):
            break
        await asyncio.sleep(0.05)
    assert not found or found[0].title != "Error 503 al sincronizar stock"


async def test_incremental_then_full_sync(running):
    service, _, _, forum = running
    bumped = next(iter(forum.topics.values()))
    forum.add_reply(bumped.id, "Actualización: también se puede pedir por teléfono.")
    report = await service.kb.sync.sync()
    assert not report.full and report.updated == 1
    forum.delete_topic(bumped.id)
    report = await service.kb.sync.sync(full=True)
    assert report.full and report.removed == 1 and len(service.kb.index) == 2


async def test_cases_still_open_when_discourse_is_down(running):
    service, _, telegram, forum = running
    forum.down = True
    with pytest.raises(DiscourseUnavailable):
        await service.kb.sync.sync()
    receipt = await service.inbox.receive(customer("la impresora fiscal no imprime", "9:9"))
    assert receipt.new_case  # suggestions come from the local index, not from Discourse


async def test_solved_cases_teach_the_matcher(running):
    """A customer who said "yes, this solved it" and a case linked to a post both become
    phrasings of that article, so the next customer asking the same way finds it."""
    service, http, telegram, forum = running
    question = "la caja registradora está trabada"
    assert not await service.kb.index.suggest(question, language="es", limit=1)
    printer = next(t for t in forum.topics.values() if t.title.startswith("La impresora"))
    receipt = await service.inbox.receive(customer(question, "7:1"))
    url = f"{service.config.kb.api_url}/t/{printer.slug}/{printer.id}"
    async with http.post(f"/api/v1/cases/{receipt.case_number}/kb-action", json={"action": "link", "url": url}) as r:
        assert r.status == 200
    assert await service.kb.index.refresh_learned() == 1
    [found] = await service.kb.index.suggest("la caja registradora quedó trabada", language="es", limit=1)
    assert found.title == "La impresora fiscal no imprime tickets"
