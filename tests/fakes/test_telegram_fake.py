"""The fake Bot API server, exercised through the real python-telegram-bot ``Bot``.

If these pass, PTB accepts what the fake answers and the fake accepts what PTB sends, so the
bot's own tests can trust the fake as a stand-in for Telegram.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter

from tests.fakes.telegram_api import (
    BotApiContract,
    ContractViolation,
    FakeTelegram,
    fake_telegram,  # noqa: F401  (the fixture)
    load_fixture,
)

AGENTS = -1002233445566
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Sí", callback_data="kb:yes:18"),
                                  InlineKeyboardButton("No", callback_data="kb:no:18")]])


@pytest.fixture
async def bot(fake_telegram: FakeTelegram) -> AsyncIterator[Bot]:  # noqa: F811
    async with Bot(**fake_telegram.bot_kwargs()) as bot:
        yield bot


@pytest.fixture
def tg(fake_telegram: FakeTelegram) -> FakeTelegram:  # noqa: F811
    return fake_telegram


async def test_get_me_describes_the_bot(tg: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "posventa_bot", True)
    assert tg.calls_to("getMe")[-1].status == 200


async def test_send_message_with_inline_keyboard_to_private_chat(tg: FakeTelegram, bot: Bot) -> None:
    tg.private_text(42, "Hola, mi pantalla no enciende")
    sent = await bot.send_message(42, "¿Te sirvió esta respuesta?", reply_markup=KEYBOARD)

    assert sent.chat.id == 42 and sent.chat.type == "private"
    assert sent.message_id == 2  # the customer's message was 1 in this chat
    assert sent.reply_markup == KEYBOARD
    reply = await bot.send_message("42", "Seguimos", reply_to_message_id=1)
    assert reply.reply_to_message.text == "Hola, mi pantalla no enciende"
    call = await tg.wait_for_call("sendMessage")
    assert call.params["chat_id"] == 42  # decoded to an int, not the form's "42"
    assert call.params["reply_markup"]["inline_keyboard"][0][0] == {"text": "Sí", "callback_data": "kb:yes:18"}
    assert [m["text"] for m in tg.sent_messages(42)] == ["¿Te sirvió esta respuesta?", "Seguimos"]


async def test_html_is_rendered_and_bad_html_rejected_like_telegram(bot: Bot) -> None:
    sent = await bot.send_message(42, "<b>Caso #18</b> &lt;abierto&gt;", parse_mode="HTML")
    assert sent.text == "Caso #18 <abierto>"
    with pytest.raises(BadRequest, match="(?i)can't parse entities"):
        await bot.send_message(42, "cliente escribió <script>", parse_mode="HTML")


async def test_forum_topic_is_created_and_messages_land_in_it(tg: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(AGENTS, "#18 Ana — pantalla rota")
    sent = await bot.send_message(AGENTS, "Nuevo caso", message_thread_id=topic.message_thread_id,
                                  reply_markup=KEYBOARD)

    assert topic.name == "#18 Ana — pantalla rota"
    assert sent.message_thread_id == topic.message_thread_id and sent.is_topic_message
    assert sent.chat.is_forum and sent.chat.type == "supergroup"
    assert [m["text"] for m in tg.sent_messages(AGENTS, topic.message_thread_id) if "text" in m] == ["Nuevo caso"]
    assert await bot.edit_forum_topic(AGENTS, topic.message_thread_id, name="#18 cerrado")
    assert tg.topics[(AGENTS, topic.message_thread_id)]["name"] == "#18 cerrado"
    with pytest.raises(BadRequest, match="(?i)message thread not found"):
        await bot.send_message(AGENTS, "perdido", message_thread_id=9999)


async def test_agent_message_in_topic_arrives_as_topic_update(tg: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(AGENTS, "#19")
    tg.group_text(AGENTS, 7004211, "Hola Ana", thread_id=topic.message_thread_id)

    (update,) = await bot.get_updates()
    assert update.message.chat.id == AGENTS
    assert update.message.message_thread_id == topic.message_thread_id and update.message.is_topic_message
    assert update.message.from_user.id == 7004211


async def test_agent_photo_and_document_in_topic_arrive_and_download(tg: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(AGENTS, "#20")
    thread = topic.message_thread_id
    tg.group_photo(AGENTS, 7004211, thread_id=thread, file_bytes=b"\xff\xd8\xff big photo \xff\xd9")
    tg.group_document(AGENTS, 7004211, thread_id=thread, file_name="manual.pdf", caption="El manual",
                      file_bytes=b"%PDF-1.4 manual", file_size=30_000_000)
    photo, document = await bot.get_updates()
    assert photo.message.is_topic_message and photo.message.message_thread_id == thread
    assert len(photo.message.photo) == 2  # sizes, the largest last, as Telegram sends them
    file = await bot.get_file(photo.message.photo[-1].file_id)
    assert await file.download_as_bytearray() == bytearray(b"\xff\xd8\xff big photo \xff\xd9")
    assert document.message.caption == "El manual" and document.message.document.file_name == "manual.pdf"
    assert document.message.document.file_size == 30_000_000  # as reported, whatever the bytes
    with pytest.raises(ValueError, match="no topic"):
        tg.group_document(AGENTS, 7004211, thread_id=thread + 999)


async def test_get_updates_offset_confirms_and_drops_earlier_updates(tg: FakeTelegram, bot: Bot) -> None:
    first, second, third = (tg.private_text(42, t)["update_id"] for t in ("uno", "dos", "tres"))
    assert [u.update_id for u in await bot.get_updates()] == [first, second, third]
    assert [u.update_id for u in await bot.get_updates()] == [first, second, third]  # nothing confirmed yet

    assert [u.update_id for u in await bot.get_updates(offset=second, limit=1)] == [second]
    assert tg.confirmed_offset == second
    assert [u["update_id"] for u in tg.pending_updates] == [second, third]

    assert [u.update_id for u in await bot.get_updates(offset=-1)] == [third]
    assert await bot.get_updates(offset=third + 1) == ()
    assert tg.pending_updates == [] and tg.confirmed_offset == third + 1


async def test_allowed_updates_keeps_other_kinds_from_being_created(tg: FakeTelegram, bot: Bot) -> None:
    await bot.get_updates(allowed_updates=["callback_query"])
    tg.private_text(42, "ignorado")
    assert await bot.get_updates() == ()


async def test_long_poll_returns_as_soon_as_an_update_is_pushed() -> None:
    async with FakeTelegram(max_long_poll=60) as tg, Bot(**tg.bot_kwargs()) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=60, read_timeout=5))
        for _ in range(500):  # until the fake holds the request open
            if tg.waiting_polls:
                break
            await asyncio.sleep(0.01)
        pushed = tg.private_text(42, "¿hay alguien?")
        # Bounded wait: a poll that did not wake up would only return after 60 s.
        (update,) = await asyncio.wait_for(poll, timeout=10)
        assert update.update_id == pushed["update_id"]


async def test_long_poll_is_bounded_and_second_poller_conflicts() -> None:
    async with FakeTelegram(max_long_poll=30) as tg, Bot(**tg.bot_kwargs()) as bot:
        older = asyncio.create_task(bot.get_updates(timeout=30, read_timeout=5))
        for _ in range(500):
            if tg.waiting_polls:
                break
            await asyncio.sleep(0.01)
        async with Bot(**tg.bot_kwargs()) as other:
            assert await other.get_updates() == ()
        with pytest.raises(Conflict, match="(?i)terminated by other getUpdates"):
            await asyncio.wait_for(older, timeout=10)
    async with FakeTelegram(max_long_poll=0.05) as tg, Bot(**tg.bot_kwargs()) as bot:
        assert await asyncio.wait_for(bot.get_updates(timeout=30), timeout=10) == ()


async def test_webhook_blocks_polling_and_receives_updates_with_secret(tg: FakeTelegram, bot: Bot) -> None:
    received: list[tuple[str | None, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/tg", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
        assert await bot.set_webhook(url, secret_token="s3cr3t_token")
        with pytest.raises(Conflict, match="(?i)webhook is active"):
            await bot.get_updates()
        update = tg.private_text(42, "por webhook")
        assert (await bot.get_webhook_info()).pending_update_count == 1
        assert await tg.deliver_pending_webhook() == [200]
        assert received == [("s3cr3t_token", update)]
        assert (await bot.get_webhook_info()).pending_update_count == 0
        assert await bot.delete_webhook()
        assert await bot.get_updates() == ()
    finally:
        await runner.cleanup()


async def test_photo_from_customer_downloads_through_get_file(tg: FakeTelegram, bot: Bot) -> None:
    jpeg = b"\xff\xd8\xff\xe0 serial-number-photo \xff\xd9"
    tg.private_photo(42, caption="número de serie", file_bytes=jpeg)
    (update,) = await bot.get_updates()

    assert update.message.caption == "número de serie"
    file = await bot.get_file(update.message.photo[-1].file_id)
    assert file.file_size == len(jpeg)
    assert await file.download_as_bytearray() == bytearray(jpeg)


async def test_document_and_voice_updates_parse(tg: FakeTelegram, bot: Bot) -> None:
    tg.private_document(42, file_name="factura.pdf")
    tg.private_voice(42, duration=7)
    doc, voice = await bot.get_updates()
    assert doc.message.document.file_name == "factura.pdf"
    assert voice.message.voice.mime_type == "audio/ogg"
    with pytest.raises(BadRequest, match="(?i)invalid file_id"):
        await bot.get_file("no-such-file")


async def test_uploaded_photo_is_recorded_and_downloadable(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_photo(42, InputFile(b"\xff\xd8png?", filename="guia.jpg"), caption="Mira")
    call = tg.calls_to("sendPhoto")[-1]
    assert call.files["photo"].content == b"\xff\xd8png?" and call.params["caption"] == "Mira"
    file = await bot.get_file(sent.photo[-1].file_id)
    assert await file.download_as_bytearray() == bytearray(b"\xff\xd8png?")
    doc = await bot.send_document(AGENTS, InputFile(b"a,b\n", filename="ventas.csv"))
    assert doc.document.file_name == "ventas.csv"


async def test_edit_and_delete_messages(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(42, "¿Te sirvió?", reply_markup=KEYBOARD)
    edited = await bot.edit_message_text("¡Gracias!", chat_id=42, message_id=sent.message_id)
    assert edited.text == "¡Gracias!" and edited.reply_markup is None and edited.edit_date is not None
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_text("¡Gracias!", chat_id=42, message_id=sent.message_id)
    await bot.edit_message_reply_markup(chat_id=42, message_id=sent.message_id, reply_markup=KEYBOARD)
    assert await bot.delete_message(42, sent.message_id)
    with pytest.raises(BadRequest, match="(?i)message to delete not found"):
        await bot.delete_message(42, sent.message_id)


async def test_customer_edit_arrives_as_edited_message(tg: FakeTelegram, bot: Bot) -> None:
    original = tg.private_text(42, "pantala rota")
    tg.edited_private_text(42, original["message"]["message_id"], "pantalla rota")
    first, edit = await bot.get_updates()
    assert first.message.text == "pantala rota"  # the earlier update is left as it was
    assert edit.edited_message.text == "pantalla rota" and edit.edited_message.edit_date


async def test_callback_query_and_answer(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(42, "¿Te sirvió?", reply_markup=KEYBOARD)
    tg.callback(42, "kb:yes:18")
    (update,) = await bot.get_updates()

    query = update.callback_query
    assert query.data == "kb:yes:18" and query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="¡Gracias!")
    assert tg.answered_callbacks[query.id]["text"] == "¡Gracias!"
    with pytest.raises(BadRequest, match="(?i)query is too old"):
        await bot.answer_callback_query(query.id)


async def test_chat_action_and_commands(tg: FakeTelegram, bot: Bot) -> None:
    assert await bot.send_chat_action(42, "typing")
    assert await bot.set_my_commands([("start", "Empezar"), ("estado", "Estado de mi caso")])
    assert tg.commands[1] == {"command": "estado", "description": "Estado de mi caso"}
    with pytest.raises(BadRequest, match="(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([("Estado!", "mal")])


async def test_429_surfaces_as_retry_after(tg: FakeTelegram, bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB 22 warns on the int form of retry_after
    tg.fail_next("sendMessage", retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(42, "hola")
    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    assert tg.calls_to("sendMessage")[-1].status == 429
    assert (await bot.send_message(42, "hola")).text == "hola"  # only the next call failed


async def test_blocked_user_surfaces_as_forbidden(tg: FakeTelegram, bot: Bot) -> None:
    tg.block_user(42)
    with pytest.raises(Forbidden, match="(?i)bot was blocked by the user"):
        await bot.send_message(42, "hola")


async def test_invalid_token_surfaces_as_invalid_token(tg: FakeTelegram) -> None:
    tg.token_valid = False
    with pytest.raises(InvalidToken):
        async with Bot(**tg.bot_kwargs()):
            pass
    wrong = tg.bot_kwargs() | {"token": "999:wrong"}
    tg.token_valid = True
    with pytest.raises(InvalidToken):
        async with Bot(**wrong) as bot:
            await bot.get_me()


async def test_wire_level_errors_match_telegram(tg: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        base = f"{tg.api_base_url}/bot{tg.token}"
        async with http.post(f"{base}/sendMesage", data={"chat_id": "1", "text": "x"}) as resp:
            assert resp.status == 404 and (await resp.json())["ok"] is False
        async with http.post(f"{base}/sendMessage", json={"chat_id": 1, "txt": "x"}) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["description"].startswith("Bad Request: unknown parameter")
        async with http.get(f"{base}/sendMessage", params={"chat_id": "1"}) as resp:
            assert (await resp.json())["description"] == "Bad Request: text is empty"
        async with http.post(f"{base}/SENDMESSAGE", json={"chat_id": 1, "text": "ok"}) as resp:
            assert (await resp.json())["result"]["text"] == "ok"  # method names are case-insensitive
        async with http.post(f"{base}/sendMessage", data={"chat_id": "1", "text": "x",
                                                           "reply_markup": "{not json"}) as resp:
            assert resp.status == 400
    with pytest.raises(BadRequest, match="(?i)unknown parameter"):
        async with Bot(**tg.bot_kwargs()) as bot:
            await bot.send_message(1, "x", api_kwargs={"made_up": 1})


def test_contract_validator_rejects_malformed_objects() -> None:
    contract = BotApiContract.load()
    update = load_fixture("forum_topic_reply_update.json")
    contract.check(update, "Update")
    assert Update.de_json(update, None).message.reply_to_message.forum_topic_created.name.startswith("#18")

    missing = load_fixture("forum_topic_reply_update.json")
    del missing["message"]["date"]
    unknown = load_fixture("forum_topic_reply_update.json") | {"mesage": {}}
    wrong_type = load_fixture("forum_topic_reply_update.json")
    wrong_type["message"]["chat"]["id"] = "-100223"
    bad_button = load_fixture("callback_query_update.json")
    bad_button["callback_query"]["message"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] = 5
    for broken, why in [(missing, "missing required field 'date'"), (unknown, "unknown field 'mesage'"),
                        (wrong_type, "chat.id: expected Integer"), (bad_button, "callback_data")]:
        with pytest.raises(ContractViolation, match=why):
            contract.check(broken, "Update")


async def test_fake_refuses_to_build_an_invalid_update(tg: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(ContractViolation):
        tg.push_update({"message": {"message_id": 1, "text": "sin chat ni fecha"}})
    pushed = tg.push_update(load_fixture("callback_query_update.json"))
    (update,) = await bot.get_updates()
    assert update.update_id == pushed["update_id"] and update.callback_query.from_user.language_code == "pt-br"


async def test_a_bug_in_the_fake_fails_the_test_at_stop() -> None:
    fake = FakeTelegram()
    await fake.start()
    fake.bot_user["is_bot"] = "yes"  # simulate the fake building a malformed User
    with pytest.raises(Exception, match="(?i)fake bug"):
        async with Bot(**fake.bot_kwargs()):
            pass
    with pytest.raises(ContractViolation, match="(?i)is_bot: expected Boolean"):
        await fake.stop()


async def test_ptb_application_polls_replies_and_confirms_offset(tg: FakeTelegram) -> None:
    from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await context.bot.send_message(update.effective_chat.id, f"eco: {update.message.text}")

    kwargs = tg.bot_kwargs()
    app = (ApplicationBuilder().token(kwargs["token"]).base_url(kwargs["base_url"])
           .base_file_url(kwargs["base_file_url"]).build())
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=5, drop_pending_updates=True)
        await app.start()
        try:
            pushed = tg.private_text(42, "hola")
            call = await tg.wait_for_call("sendMessage", lambda c: c.params["text"] == "eco: hola")
            assert call.params["chat_id"] == 42
        finally:
            await app.updater.stop()
            await app.stop()
    assert tg.confirmed_offset == pushed["update_id"] + 1
    assert tg.calls_to("deleteWebhook")[0].params == {"drop_pending_updates": True}
