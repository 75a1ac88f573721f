"""The customer side over the real python-telegram-bot against the fake Bot API, through a
running Service on both databases."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from posventa.core.persistence.schema import attachments, cases, message_edits, messages
from tests.bots.conftest import AGENTS_CHAT, eventually, rows, sqlite_only
from tests.fakes.telegram_api import FakeTelegram

ANA = 4201


def texts_to(tg: FakeTelegram, chat: int) -> list[str]:
    return [m.get("text", "") for m in tg.sent_messages(chat)]


async def inbound(service, chat: int) -> list:
    return await rows(service, select(messages).where(messages.c.channel == "telegram", messages.c.direction == "in",
                                                      messages.c.external_id.startswith(f"{chat}:"))
                      .order_by(messages.c.id))


async def test_conversation_with_photo_opens_a_case_and_stores_the_file(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "Hola, la impresora <HP> no enciende & hace ruido", language_code="es-AR")
    ack = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    assert "abrimos el caso #" in ack.params["text"]
    assert ack.params["parse_mode"] == "HTML"
    labels = [b["text"] for b in ack.params["reply_markup"]["inline_keyboard"][-1]]
    assert labels == ["Solicitud", "Reclamo", "Incidente"]

    jpeg = b"\xff\xd8\xff\xe0 serial-number-photo \xff\xd9"
    tg.private_photo(ANA, caption="el número de serie", file_bytes=jpeg)
    stored = await eventually(lambda: _with_attachment(service))
    [row] = stored  # the message joined with its attachment
    assert row.text == "el número de serie"
    assert row.sha256 == hashlib.sha256(jpeg).hexdigest() and row.content_type == "image/jpeg"
    assert service.attachments.path_for(row.sha256).read_bytes() == jpeg

    [case] = await rows(service, select(cases))
    assert case.channel == "telegram" and case.title.startswith("Hola, la impresora <HP>")
    assert [m.text for m in await inbound(service, ANA)] == [
        "Hola, la impresora <HP> no enciende & hace ruido", "el número de serie"]
    # The desk mirrored both messages into the case's topic, text escaped and the photo forwarded.
    photo = await tg.wait_for_call("sendPhoto", lambda c: c.params["chat_id"] == AGENTS_CHAT)
    assert photo.files["photo"].content == jpeg
    thread = photo.params["message_thread_id"]
    texts = [m.get("text") for m in tg.sent_messages(AGENTS_CHAT, thread) if m.get("text")]
    assert texts[0].startswith(f"📋 Caso #{case.id} · Hola, la impresora <HP>")
    assert texts[1:] == ["👤 Ana · telegram\nHola, la impresora <HP> no enciende & hace ruido",
                         "👤 Ana · telegram · 📎1\nel número de serie"]
    assert tg.topics[(AGENTS_CHAT, thread)]["name"].startswith(f"#{case.id} · Hola, la impresora")


async def _with_attachment(service):
    return await rows(service, select(messages.c.text, attachments.c.sha256, attachments.c.content_type)
                      .join(attachments, attachments.c.message_id == messages.c.id))


async def _topic_messages(tg: FakeTelegram, at_least: int):
    msgs = [m for m in tg.sent_messages(AGENTS_CHAT) if m.get("message_thread_id")]
    return msgs if len(msgs) > at_least else None


async def test_type_keyboard_sets_the_case_type_and_answers_the_callback(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "Me cobraron dos veces", language_code="es")
    ack = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    buttons = {b["text"]: b["callback_data"] for b in ack.params["reply_markup"]["inline_keyboard"][-1]}
    pressed = tg.callback(ANA, buttons["Reclamo"])
    query_id = pressed["callback_query"]["id"]

    await tg.wait_for_call("answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id)
    [case] = await rows(service, select(cases))
    assert case.case_type == "complaint"
    noted = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "Anotado" in c.params["text"])
    assert "Reclamo" in noted.params["text"]
    # The pressed keyboard is taken away so it cannot be pressed again.
    edit = await tg.wait_for_call("editMessageReplyMarkup")
    assert edit.params["chat_id"] == ANA and "reply_markup" not in edit.params
    # The press is recorded in the case as the customer's answer.
    assert [m.text for m in await inbound(service, ANA)] == ["Me cobraron dos veces"]
    choice = await rows(service, select(messages).where(messages.c.external_id == f"cb:{query_id}"))
    assert choice[0].text == "Reclamo" and choice[0].extra == {"choice": {"question": f"case_type:{case.id}",
                                                                          "value": "complaint"}}

    # A forged button for someone else's case changes nothing, and is still answered.
    ack_id = tg.sent_messages(ANA)[0]["message_id"]
    forged = tg.callback(ANA, f"T{case.id + 1}|incident", message_id=ack_id)["callback_query"]["id"]
    await tg.wait_for_call("answerCallbackQuery", lambda c: c.params["callback_query_id"] == forged)
    assert (await rows(service, select(cases.c.case_type)))[0].case_type == "complaint"
    garbage = tg.callback(ANA, "not-ours", message_id=ack_id)["callback_query"]["id"]
    await tg.wait_for_call("answerCallbackQuery", lambda c: c.params["callback_query_id"] == garbage)


@sqlite_only
async def test_start_greets_in_the_users_language_and_help_cases_new(start_service, tg: FakeTelegram):
    service = await start_service()
    for user, lang, expected in [(501, "pt-BR", "Olá, Ana! Sou o assistente"), (502, "en", "Hi, Ana! I'm"),
                                 (503, "fr", "¡Hola, Ana! Soy el asistente"), (504, "es", "¡Hola, Ana!")]:
        tg.private_text(user, "/start", language_code=lang)
        call = await tg.wait_for_call("sendMessage", lambda c, u=user: c.params["chat_id"] == u)
        assert call.params["text"].startswith(expected), call.params["text"]
    assert await rows(service, select(cases)) == []  # commands open no case

    tg.private_text(ANA, "/cases", language_code="es")
    call = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    assert "Todavía no tienes casos" in call.params["text"]

    tg.private_text(ANA, "El router se reinicia solo")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "#1" in c.params["text"])
    tg.private_text(ANA, "/new La factura <b>no</b> llegó")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "#2" in c.params["text"])
    tg.private_text(ANA, "/help")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "/cases" in c.params["text"]
                           and "/new" in c.params["text"] and "/agent" in c.params["text"])
    tg.private_text(ANA, "/cases")
    listing = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA
                                     and c.params["text"].startswith("Tus casos"))
    assert "#2 · La factura &lt;b&gt;no&lt;/b&gt; llegó" in listing.params["text"]
    assert "#1 · El router se reinicia solo — Análisis preliminar" in tg.sent_messages(ANA)[-1]["text"]

    # /new alone asks, with a forced reply; the answer to that prompt opens a new case.
    tg.private_text(ANA, "/new")
    prompt = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA
                                    and "force_reply" in c.params.get("reply_markup", {}))
    sent_prompt = tg.sent_messages(ANA)[-1]
    assert sent_prompt["text"] == prompt.params["text"]
    reply = tg.private_text(ANA, "Otra cosa: la pantalla parpadea")
    reply["message"]["reply_to_message"] = sent_prompt  # as Telegram sends a reply to the prompt
    tg.pending_updates[-1] = reply
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "#3" in c.params["text"])
    assert [(c.id, c.title) for c in await rows(service, select(cases).order_by(cases.c.id))][2] == (
        3, "Otra cosa: la pantalla parpadea")


@sqlite_only
async def test_agent_command_asks_for_a_person_in_the_open_case(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "/agent", language_code="en")
    call = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    assert call.params["text"].startswith("Write your question")
    tg.private_text(ANA, "My invoice is wrong", language_code="en")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "case #1" in c.params["text"])
    tg.private_text(ANA, "/agent please", language_code="en")
    answer = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA
                                    and "An agent will answer you in case #1" in c.params["text"])
    assert answer
    texts = [m.text for m in await inbound(service, ANA)]
    assert texts == ["My invoice is wrong", "🙋 The customer asks to talk to a person.\nplease"]


async def test_edited_message_updates_the_text_and_keeps_history(start_service, tg: FakeTelegram):
    service = await start_service()
    original = tg.private_text(ANA, "la pantala no enciende")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    tg.edited_private_text(ANA, original["message"]["message_id"], "la pantalla no enciende")
    edited = await eventually(lambda: rows(service, select(message_edits)))
    assert edited[0].previous_text == "la pantala no enciende"
    [message] = await inbound(service, ANA)
    assert message.text == "la pantalla no enciende" and message.edited_at is not None


@sqlite_only
async def test_strangers_groups_are_ignored_and_customers_cannot_run_agent_commands(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.forum(-100555, title="Grupo ajeno", is_forum=False)
    tg.group_text(-100555, ANA, "/close", thread_id=None, is_topic=False)
    tg.private_text(ANA, "Necesito ayuda con mi pedido")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    tg.private_text(ANA, "/close")
    tg.private_text(ANA, "/type incident")
    await eventually(lambda: _count(service, 3))
    [case] = await rows(service, select(cases))
    assert case.activity == "preliminary_analysis" and case.case_type == "unclassified"
    assert [m.text for m in await inbound(service, ANA)][1:] == ["/close", "/type incident"]
    assert not [c for c in tg.calls if c.params.get("chat_id") == -100555]
    assert service.telegram.router.ignored == 1


async def _count(service, n):
    return len(await rows(service, select(messages).where(messages.c.direction == "in"))) >= n


@sqlite_only
async def test_files_over_the_limit_are_not_downloaded_but_noted(start_service, tg: FakeTelegram):
    service = await start_service(max_file_bytes=1000)
    tg.private_document(ANA, file_name="manual.pdf", file_bytes=b"%PDF" + b"x" * 5000, caption="el manual")
    tg.private_voice(ANA, file_bytes=b"OggS small")
    await eventually(lambda: _count(service, 2))
    first, second = await inbound(service, ANA)
    assert first.text.startswith("el manual\n[archivo «manual.pdf» de 5004 bytes no guardado")
    assert len(tg.calls_to("getFile")) == 1  # only the voice note
    [att] = await rows(service, select(attachments))
    assert att.message_id == second.id and att.content_type == "audio/ogg" and att.filename.startswith("voice_")


async def test_a_redelivered_command_or_message_is_handled_once(start_service, tg: FakeTelegram):
    service = await start_service()
    start = tg.private_text(ANA, "/start")
    hello = tg.private_text(ANA, "hola")
    tg.push_update({"message": start["message"]})  # Telegram sends the same messages again
    tg.push_update({"message": hello["message"]})
    await eventually(lambda: _count(service, 1))
    await tg.wait_for_call("getUpdates", lambda c: c.params.get("offset", 0) > hello["update_id"] + 2)
    await eventually(lambda: _sent_at_least(tg, ANA, 2))
    texts = texts_to(tg, ANA)
    assert sum(t.startswith("¡Hola, Ana!") for t in texts) == 1
    assert sum("abrimos el caso" in t for t in texts) == 1
    assert len(await inbound(service, ANA)) == 1


async def _sent_at_least(tg, chat, n):
    return len(tg.sent_messages(chat)) >= n
