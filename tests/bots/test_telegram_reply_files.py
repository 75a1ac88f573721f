"""Files from agents on Telegram, against the fake Bot API (every call checked against the
contract in tests/contracts): a reply with files reaches a Telegram customer as sendPhoto /
sendDocument uploads (multipart, as the real API takes them), and the desk's topic shows
them; a photo or document an agent posts in a case's topic (with or without a caption) is
downloaded (getFile, then the file) and becomes a reply with that file; a file the upload
rule refuses is answered in the topic with the reason and nothing is sent. Both databases."""

from __future__ import annotations

import aiohttp
from sqlalchemy import select

from posventa.core.persistence.schema import attachments, messages
from tests.bots.conftest import AGENT, AGENTS_CHAT, rows
from tests.bots.test_telegram_desk import ANA, notices, topic_of_first_case
from tests.core.test_reply_files import EXE, PDF, form, png
from tests.fakes.telegram_api import FakeTelegram
from tests.support import API_TOKEN

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x11" * 200 + b"\xff\xd9"


async def agent_files(service, case: int) -> list[tuple[str, str]]:
    found = await rows(service, select(attachments.c.filename, attachments.c.content_type)
                       .join(messages, messages.c.id == attachments.c.message_id)
                       .where(messages.c.case_id == case, messages.c.author == "agent").order_by(attachments.c.id))
    return [(r.filename, r.content_type) for r in found]


async def test_an_api_reply_with_files_reaches_the_telegram_customer_and_the_topic(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "Se rompió la pantalla")
    thread = await topic_of_first_case(tg, service)
    image = png()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        async with http.post("/api/v1/cases/1/reply", data=form(("pantalla.png", image), ("garantia.pdf", PDF),
                                                                text="Le mando la garantía <firmada>.",
                                                                agent="maria")) as r:
            assert r.status == 202, await r.text()
    photo = await tg.wait_for_call("sendPhoto", lambda c: c.params["chat_id"] == ANA)
    document = await tg.wait_for_call("sendDocument", lambda c: c.params["chat_id"] == ANA)
    assert photo.files["photo"].content == image and photo.files["photo"].filename == "pantalla.png"
    # The text is the first file's caption (escaped for HTML); the second goes bare.
    assert photo.params["caption"] == "Le mando la garantía &lt;firmada&gt;." and photo.params["parse_mode"] == "HTML"
    assert tg.sent_messages(ANA)[-2]["caption"] == "Le mando la garantía <firmada>."
    assert document.files["document"].content == PDF and "caption" not in document.params
    assert not [c for c in tg.calls_to("sendMessage") if c.params["chat_id"] == ANA and "garantía" in c.params["text"]]
    # The team sees the reply and its files in the case's topic.
    await tg.wait_for_call("sendDocument", lambda c: c.params["chat_id"] == AGENTS_CHAT
                           and c.params.get("message_thread_id") == thread)
    await tg.wait_for_call("sendPhoto", lambda c: c.params["chat_id"] == AGENTS_CHAT
                           and c.params.get("message_thread_id") == thread)
    assert any(n.startswith("↩ maria (telegram): Le mando la garantía") for n in notices(tg, thread))


async def test_a_document_with_a_caption_in_the_topic_becomes_a_reply_with_that_file(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "Necesito la factura")
    thread = await topic_of_first_case(tg, service)
    tg.group_document(AGENTS_CHAT, AGENT, thread_id=thread, file_name="factura 0042.pdf", file_bytes=PDF,
                      caption="Aquí tiene su factura", first_name="María")
    sent = await tg.wait_for_call("sendDocument", lambda c: c.params["chat_id"] == ANA)
    assert sent.files["document"].content == PDF and sent.files["document"].filename == "factura 0042.pdf"
    assert sent.params["caption"] == "Aquí tiene su factura"
    assert tg.calls_to("getFile")  # downloaded as the real API has it: getFile, then the file path
    assert await agent_files(service, 1) == [("factura 0042.pdf", "application/pdf")]
    case = await service.cases.get_case(1)
    reply = [m for m in case["messages"] if m["author"] == "agent"][-1]
    assert (reply["text"], reply["author_name"]) == ("Aquí tiene su factura", "María")


async def test_a_photo_without_a_caption_in_the_topic_goes_as_a_photo(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "¿Cómo se conecta?")
    thread = await topic_of_first_case(tg, service)
    tg.group_photo(AGENTS_CHAT, AGENT, thread_id=thread, file_bytes=JPEG)
    sent = await tg.wait_for_call("sendPhoto", lambda c: c.params["chat_id"] == ANA)
    assert sent.files["photo"].content == JPEG  # the largest size, not the thumbnail
    [(name, kind)] = await agent_files(service, 1)
    assert kind == "image/jpeg" and name.endswith(".jpg")
    reply = [m for m in (await service.cases.get_case(1))["messages"] if m["author"] == "agent"][-1]
    assert reply["text"] == f"📎 {name}" and sent.params["caption"] == f"📎 {name}"


async def test_a_refused_file_in_the_topic_is_answered_with_the_reason_and_nothing_is_sent(start_service,
                                                                                           tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "Mándeme el manual")
    thread = await topic_of_first_case(tg, service)
    before = len(notices(tg, thread))
    tg.group_document(AGENTS_CHAT, AGENT, thread_id=thread, file_name="manual.pdf", file_bytes=EXE,
                      caption="El manual")
    tg.group_document(AGENTS_CHAT, AGENT, thread_id=thread, file_name="vacio.txt", mime_type="text/plain",
                      file_bytes=b"")
    tg.group_document(AGENTS_CHAT, AGENT, thread_id=thread, file_name="video.pdf", file_bytes=PDF,
                      file_size=50_000_000)

    def answered() -> list[str]:
        return notices(tg, thread)[before:]

    async def three() -> list[str]:
        return answered() if len(answered()) >= 3 else []

    from tests.bots.conftest import eventually
    said = await eventually(three)
    assert said[0] == ("⚠️ No se envió al cliente: «manual.pdf» no se acepta. Ese tipo de archivo no se acepta. "
                       "Puedes enviar: imágenes, PDF, texto.")
    assert said[1].startswith("⚠️ No se envió al cliente: «vacio.txt» no se acepta.")
    assert said[2].startswith("⚠️ No se envió al cliente: «video.pdf» no se acepta.") and "MB" in said[2]
    # Too large by what Telegram reports: refused without downloading it.
    assert len(tg.calls_to("getFile")) == 2
    assert not tg.calls_to("sendDocument") or all(c.params["chat_id"] != ANA for c in tg.calls_to("sendDocument"))
    assert await agent_files(service, 1) == []
    assert not [m for m in (await service.cases.get_case(1))["messages"] if m["author"] == "agent"]


async def test_a_picture_telegram_will_not_show_as_a_photo_goes_as_a_document(start_service, tg: FakeTelegram):
    service = await start_service(agent_chat_id=0)  # no desk: its copy would take the injected failure
    tg.private_text(ANA, "¿Tienen el plano?")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)  # the case is open
    tg.fail_next("sendPhoto", status=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS")
    banner = png(4000, 2)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        async with http.post("/api/v1/cases/1/reply", data=form(("plano.png", banner), text="El plano")) as r:
            assert r.status == 202, await r.text()
    sent = await tg.wait_for_call("sendDocument", lambda c: c.params["chat_id"] == ANA)
    assert sent.files["document"].content == banner and sent.params["caption"] == "El plano"
    assert [c.status for c in tg.calls_to("sendPhoto") if c.params["chat_id"] == ANA] == [400]
