"""The /chat/ws protocol against a running Service over a real websocket, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

import aiohttp
import pytest
from sqlalchemy import func, select

from posventa.core.domain import ChannelName, OutboxStatus
from posventa.core.outbox import DEFAULT_CLAIM_BATCH
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases, contacts, messages, outbox, webchat_sessions
from posventa.intake.webchat.channel import WebchatChannel
from posventa.intake.webchat.sessions import hash_token
from posventa.service import Service
from tests.intake.webchat.support import ChatClient
from tests.support import API_TOKEN, FakeClock, RecordingChannel, make_config


@dataclass
class Running:
    service: Service
    base: str
    http: aiohttp.ClientSession  # no auth: what a browser has
    api: aiohttp.ClientSession  # bearer token: what an agent tool has
    db: Database

    async def chat(self, **kw) -> ChatClient:
        return await ChatClient.connect(self.http, self.base, **kw)

    async def reply(self, case: int, text: str) -> dict:
        async with self.api.post(f"/api/v1/cases/{case}/reply", json={"text": text, "agent": "ana"}) as r:
            assert r.status == 202, await r.text()
            return await r.json()

    async def case(self, number: int) -> dict:
        async with self.api.get(f"/api/v1/cases/{number}") as r:
            assert r.status == 200
            return await r.json()

    async def scalar(self, stmt):
        async with self.db.engine.connect() as conn:
            return (await conn.execute(stmt)).scalar()

    async def rows(self, stmt):
        async with self.db.engine.connect() as conn:
            return (await conn.execute(stmt)).all()

    async def outbox_status(self, outbox_id: int) -> str:
        return await self.scalar(select(outbox.c.status).where(outbox.c.id == outbox_id))

    async def wait_outbox(self, outbox_id: int, *statuses: str, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while (status := await self.outbox_status(outbox_id)) not in statuses:
                await asyncio.sleep(0.05)
        return status


@pytest.fixture
async def start(database_url, tmp_path):
    """``await start(clock=..., email=..., **webchat_overrides)`` → a running service."""
    async with contextlib.AsyncExitStack() as stack:

        async def starter(*, clock=None, email_channel: RecordingChannel | None = None, **webchat) -> Running:
            config = make_config(database_url, tmp_path, webchat={"enabled": True, **webchat})
            service = Service(config, **({"clock": clock} if clock else {}))
            if email_channel is not None:
                service.channels[ChannelName.EMAIL] = email_channel
            await stack.enter_async_context(service)
            base = f"http://127.0.0.1:{service.http.bound_port}"
            http = await stack.enter_async_context(aiohttp.ClientSession())
            api = await stack.enter_async_context(
                aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {API_TOKEN}"}))
            db = Database(database_url)
            stack.push_async_callback(db.dispose)
            return Running(service, base, http, api, db)

        yield starter


async def new_chat(running: Running, **hello) -> ChatClient:
    chat = await running.chat()
    welcome = await chat.hello(**hello)
    assert welcome["type"] == "welcome", welcome
    return chat


# --- the happy path ---------------------------------------------------------------------------


async def test_ack_only_after_commit_and_case_opened(start):
    running = await start()
    chat = await new_chat(running)
    assert chat.case is None and len(chat.session) >= 22  # ≥ 128 bits, URL-safe base64

    ack = await chat.say("c-1", "Hola, la impresora no imprime")
    assert ack["type"] == "ack" and ack["id"] == "c-1"
    # The ack was sent after commit: the row is there the moment the client has the ack.
    row = (await running.rows(select(messages.c.text, messages.c.case_id, messages.c.direction)
                              .where(messages.c.id == ack["message_id"])))[0]
    assert row.text == "Hola, la impresora no imprime" and row.direction == "in" and row.case_id == ack["case"]
    case = await running.case(ack["case"])
    assert case["channel"] == "webchat" and case["title"].startswith("Hola, la impresora")

    # The bot's acknowledgement of the new case arrives as a server message with buttons.
    [bot] = await chat.messages_until(lambda f: f["from"] == "bot")
    assert f"#{ack['case']}" in bot["text"]
    assert bot["question"] == f"case_type:{ack['case']}"
    assert {c["value"] for c in bot["choices"]} == {"request", "complaint", "incident"}

    # A second message joins the same case; the token is stored only as its hash.
    ack2 = await chat.say("c-2", "Modelo X200")
    assert ack2["case"] == ack["case"] and ack2["message_id"] > ack["message_id"]
    stored = await running.rows(select(webchat_sessions.c.token_hash, webchat_sessions.c.public_id))
    assert [r.token_hash for r in stored] == [hash_token(chat.session)]
    assert chat.session not in {r.public_id for r in stored}


async def test_duplicate_client_id_gets_the_same_ack_and_stores_nothing(start):
    running = await start()
    chat = await new_chat(running)
    first = await chat.say("dup-1", "primer envío")
    again = await chat.say("dup-1", "primer envío")
    assert again == first
    await chat.close()
    # After a reconnect (the widget resends its queue with the same ids) too.
    chat2 = await new_chat(running, session=chat.session)
    assert await chat2.say("dup-1", "primer envío") == first
    count = await running.scalar(select(func.count()).select_from(messages).where(messages.c.direction == "in"))
    assert count == 1


async def test_choice_answers_the_bots_question(start):
    running = await start()
    chat = await new_chat(running, lang="en")
    ack = await chat.say("m-1", "My order arrived broken")
    [bot] = await chat.messages_until(lambda f: f["from"] == "bot")
    await chat.send({"type": "choice", "id": "ch-1", "question": bot["question"], "value": "complaint"})
    choice_ack = await chat.answer("ch-1")
    assert choice_ack["type"] == "ack" and choice_ack["case"] == ack["case"]
    assert (await running.case(ack["case"]))["type"] == "complaint"
    # The history shows the button's label, not its value.
    text = await running.scalar(select(messages.c.text).where(messages.c.id == choice_ack["message_id"]))
    assert text == "Complaint"
    noted = await chat.messages_until(lambda f: "Complaint" in f["text"] and f["from"] == "bot")
    assert noted


async def test_agent_reply_is_pushed_live_to_every_tab(start):
    running = await start()
    chat = await new_chat(running)
    ack = await chat.say("m-1", "¿Tienen stock?")
    tab2 = await new_chat(running, session=chat.session)
    result = await running.reply(ack["case"], "Sí, <b>hay stock</b>")
    for client in (chat, tab2):
        [*_, reply] = await client.messages_until(lambda f: f["from"] == "agent")
        assert reply["text"] == "Sí, <b>hay stock</b>"
        assert isinstance(reply["message_id"], int)
    assert await running.wait_outbox(result["outbox_id"], "sent") == "sent"


async def test_a_tab_opening_while_a_reply_is_queued_does_not_keep_it_from_the_others(start):
    running = await start()
    tab1 = await new_chat(running)
    ack = await tab1.say("m-1", "hola")
    await tab1.messages_until(lambda f: f["from"] == "bot")
    [worker] = [w for w in running.service.workers if w.channel_name == ChannelName.WEBCHAT]
    await worker.stop()  # hold the push: the reply sits in the outbox
    result = await running.reply(ack["case"], "respuesta en cola")
    tab2 = await new_chat(running, session=tab1.session)
    [*_, replayed] = await tab2.messages_until(lambda f: f["text"] == "respuesta en cola")
    # tab2 saw it in its replay, but tab1 is open too: the outbox still owes tab1 the push.
    assert await running.outbox_status(result["outbox_id"]) == OutboxStatus.QUEUED.value
    await worker.start()
    [*_, live] = await tab1.messages_until(lambda f: f["from"] == "agent")
    assert live["message_id"] == replayed["message_id"]
    assert await running.wait_outbox(result["outbox_id"], "sent") == "sent"


# --- reconnects and replay ----------------------------------------------------------------------


async def test_replay_after_reconnect_sends_exactly_what_was_missed(start):
    running = await start()
    chat = await new_chat(running)
    ack1 = await chat.say("m-1", "uno")
    [bot] = await chat.messages_until(lambda f: f["from"] == "bot")
    ack2 = await chat.say("m-2", "dos")
    await chat.close()

    # A new page (last_seen null) gets the whole history, own messages included with their ids.
    fresh = await new_chat(running, session=chat.session)
    history = await fresh.messages_until(lambda f: f["message_id"] == ack2["message_id"])
    assert [(f["from"], f["text"]) for f in history] == [("customer", "uno"), ("bot", bot["text"]),
                                                         ("customer", "dos")]
    assert [f.get("id") for f in history] == ["m-1", None, "m-2"]
    assert history[1]["choices"] and history[1]["question"] == bot["question"]
    assert fresh.case == ack1["case"]
    await fresh.close()

    # A reconnect with last_seen gets only what came after it.
    again = await new_chat(running, session=chat.session, last_seen=bot["message_id"])
    [only] = await again.messages_until(lambda f: True)
    assert only["message_id"] == ack2["message_id"]
    await again.say("m-3", "tres")
    assert not [f for f in again.frames if f["type"] == "message"]


async def test_reply_while_disconnected_waits_and_is_delivered_on_reconnect(start):
    running = await start()
    chat = await new_chat(running)
    ack = await chat.say("m-1", "¿Cuándo llega?")
    [bot] = await chat.messages_until(lambda f: f["from"] == "bot")
    await chat.close()

    result = await running.reply(ack["case"], "Mañana por la tarde")
    # Nobody is connected: the push fails softly and the item waits in the outbox.
    assert await running.wait_outbox(result["outbox_id"], "awaiting_retry") == "awaiting_retry"

    back = await new_chat(running, session=chat.session, last_seen=bot["message_id"])
    [reply] = await back.messages_until(lambda f: f["from"] == "agent")
    assert reply["text"] == "Mañana por la tarde"
    # The replay counts as the delivery.
    assert await running.outbox_status(result["outbox_id"]) == OutboxStatus.SENT.value


async def test_undelivered_reply_goes_by_email_once_after_the_fallback_delay(start):
    clock = FakeClock()
    email = RecordingChannel(ChannelName.EMAIL)
    running = await start(clock=clock, email_channel=email, email_fallback_after_seconds=900)
    chat = await new_chat(running, name="Lucía", email="Lucia@Example.com")
    ack = await chat.say("m-1", "Necesito la factura")
    await chat.messages_until(lambda f: f["from"] == "bot")
    await chat.close()
    contact = (await running.rows(select(contacts.c.name, contacts.c.email)))[0]
    assert (contact.name, contact.email) == ("Lucía", "lucia@example.com")

    result = await running.reply(ack["case"], "Adjuntamos la factura")
    await running.wait_outbox(result["outbox_id"], "awaiting_retry")
    assert email.sent == []
    clock.advance(seconds=901)
    running.service.signal.notify()
    [mail] = await email.wait_for(1)
    assert mail.recipient == "lucia@example.com" and mail.text == "Adjuntamos la factura"
    assert mail.case_number == ack["case"] and not mail.automatic
    assert await running.wait_outbox(result["outbox_id"], "sent") == "sent"
    clock.advance(seconds=3600)
    running.service.signal.notify()
    await asyncio.sleep(0.5)
    assert len(email.sent) == 1
    # The reply is still in the chat history when the visitor comes back.
    back = await new_chat(running, session=chat.session)
    assert any(f["text"] == "Adjuntamos la factura" for f in await back.messages_until(lambda f: f["from"] == "agent"))


async def test_storage_down_means_no_ack_then_the_resend_is_stored_once(start):
    running = await start()
    chat = await new_chat(running)
    await running.service.inbox.stop()  # the inbox refuses: nothing can be committed
    await chat.send({"type": "message", "id": "m-1", "text": "¿hay alguien?"})
    assert await chat.closed() == 1013  # try again later; no ack was sent
    assert not [f for f in chat.frames if f["type"] == "ack"]
    await running.service.inbox.start()
    again = await new_chat(running, session=chat.session)
    ack = await again.say("m-1", "¿hay alguien?")
    assert ack["type"] == "ack"
    assert await running.scalar(select(func.count()).select_from(messages).where(messages.c.direction == "in")) == 1


# --- security and limits ------------------------------------------------------------------------


async def test_bad_and_foreign_tokens_are_unauthorized(start):
    running = await start()
    alice = await new_chat(running)
    await alice.say("a-1", "secreto de Alicia")
    public_id = await running.scalar(select(webchat_sessions.c.public_id))

    mallory = await running.chat()
    for token in (alice.session[:-2] + "xx", public_id, "x" * 129):
        err = await mallory.hello(session=token)
        assert err == {"type": "error", "code": "unauthorized", "message": err["message"]}
    assert await mallory.closed() == 1008  # three wrong tokens on one connection
    assert not [f for f in mallory.frames if f["type"] == "message"]

    # Sending before hello is refused too, and then a proper hello works on the same socket.
    eve = await running.chat()
    await eve.send({"type": "message", "id": "e-1", "text": "hola"})
    assert (await eve.answer("e-1"))["code"] == "unauthorized"
    assert (await eve.hello())["type"] == "welcome"


async def test_sessions_are_isolated(start):
    running = await start()
    alice = await new_chat(running)
    ack_a = await alice.say("same-id", "pedido de Alicia")
    [bot_a] = await alice.messages_until(lambda f: f["from"] == "bot")
    bob = await new_chat(running)
    # The same client id from another visitor is a different message, in a different case.
    ack_b = await bob.say("same-id", "pedido de Bob")
    assert ack_b["message_id"] != ack_a["message_id"] and ack_b["case"] != ack_a["case"]
    # Bob pressing the button of Alicia's question changes nothing on her case.
    await bob.send({"type": "choice", "id": "b-2", "question": bot_a["question"], "value": "incident"})
    assert (await bob.answer("b-2"))["type"] == "ack"
    assert (await running.case(ack_a["case"]))["type"] == "unclassified"

    await running.reply(ack_a["case"], "solo para Alicia")
    await alice.messages_until(lambda f: f["text"] == "solo para Alicia")
    await running.reply(ack_b["case"], "solo para Bob")
    got = await bob.messages_until(lambda f: f["text"] == "solo para Bob")
    await bob.close()
    replay = await (await new_chat(running, session=bob.session)).messages_until(
        lambda f: f["text"] == "solo para Bob")
    for frame in got + replay:
        assert "Alicia" not in frame["text"] and frame["message_id"] not in (ack_a["message_id"], bot_a["message_id"])


async def test_origin_is_checked(start):
    running = await start(allowed_origins=("https://shop.example.com", "https://*.tienda.example"))
    for origin in ("https://evil.example", "https://shop.example.com.evil.example", "null", "http://shop.example.com"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await running.chat(origin=origin)
        assert refused.value.status == 403
    for origin in ("https://shop.example.com", "https://www.tienda.example", "HTTPS://SHOP.EXAMPLE.COM:443"):
        chat = await running.chat(origin=origin)
        assert (await chat.hello())["type"] == "welcome"
        await chat.close()


async def test_same_origin_only_by_default(start):
    running = await start()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await running.chat(origin="https://shop.example.com")
    chat = await running.chat(origin=running.base)  # the demo page's own origin (public_url)
    assert (await chat.hello())["type"] == "welcome"


async def test_a_forged_host_does_not_pass_the_origin_check(start):
    """The audit's probe: Origin and Host both the attacker's. Only public_url and
    allowed_origins count, never the Host the request claims to be for."""
    running = await start()
    port = running.service.http.bound_port
    for origin, host in (("http://evil.example", "evil.example"),
                         (f"http://localhost:{port}", f"localhost:{port}")):  # same server, not public_url
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await running.chat(origin=origin, headers={"Host": host})
        assert refused.value.status == 403
    listed = await start(allowed_origins=("https://shop.example.com",))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await listed.chat(origin="http://evil.example", headers={"Host": "evil.example"})
    assert refused.value.status == 403


async def test_size_limits(start):
    running = await start(max_frame_bytes=1024, max_text_chars=300)
    chat = await new_chat(running)
    err = await chat.say("big-1", "a" * 301)
    assert (err["code"], err["id"]) == ("too_large", "big-1")
    await chat.send({"type": "message", "id": "big-2", "text": "ñ" * 600})  # 1,200 bytes > 1,024
    assert (await chat.answer("big-2"))["code"] == "too_large"
    assert (await chat.say("ok-1", "a" * 300))["type"] == "ack"
    # Past the hard cap aiohttp stops reading and closes (1009); the server carries on.
    await chat.ws.send_str("x" * 200_000)
    assert await chat.closed() == 1009
    other = await new_chat(running)
    assert (await other.say("ok-2", "sigo aquí"))["type"] == "ack"


async def test_rate_limits_per_session_and_per_ip(start):
    running = await start(messages_per_minute_per_session=3, messages_per_minute_per_ip=5,
                          new_sessions_per_minute_per_ip=3)
    chat = await new_chat(running)
    for i in range(3):
        assert (await chat.say(f"s-{i}", f"m{i}"))["type"] == "ack"
    limited = await chat.say("s-3", "uno más")
    assert limited["code"] == "rate_limited" and limited["id"] == "s-3" and limited["retry_after"] > 0
    other = await new_chat(running)
    assert (await other.say("o-1", "a"))["type"] == "ack"
    assert (await other.say("o-2", "b"))["type"] == "ack"
    # The address's budget (5) is spent across both sessions.
    assert (await other.say("o-3", "c"))["code"] == "rate_limited"
    # Three new sessions a minute from one address: the fourth is refused.
    third = await running.chat()
    assert (await third.hello())["type"] == "welcome"
    fourth = await running.chat()
    assert (await fourth.hello())["code"] == "rate_limited"
    assert await fourth.closed() == 1013  # the widget comes back after its backoff
    count = await running.scalar(select(func.count()).select_from(messages).where(messages.c.direction == "in"))
    assert count == 5


async def test_bad_frames_are_refused_without_harm(start):
    running = await start(frames_per_second_per_connection=100)
    chat = await new_chat(running)
    bad = ["not json", "[1,2]", '"hola"', "{}", '{"type":"nope"}', '{"type":"message","id":"x"}',
           '{"type":"message","id":5,"text":"a"}', '{"type":"message","id":"x","text":{"a":1}}',
           '{"type":"message","id":"x","text":"   "}', '{"type":"message","id":"' + "i" * 65 + '","text":"a"}',
           '{"type":"choice","id":"x","question":"q","value":[1]}', '{"type":"choice","id":"x","question":"","value":1}',
           "[" * 500 + "]" * 500, '{"type":"hello","session":null}']
    for raw in bad:
        await chat.ws.send_str(raw)
        err = await chat.next(lambda f: f["type"] == "error")
        assert err["code"] == "bad_request", raw
    await chat.ws.send_bytes(b"\x00\x01")
    assert (await chat.next(lambda f: f["type"] == "error"))["code"] == "bad_request"
    # Control characters are stripped, the connection still works.
    ack = await chat.say("fine-1", "ho\x00la\x1b")
    assert ack["type"] == "ack"
    assert await running.scalar(select(messages.c.text).where(messages.c.id == ack["message_id"])) == "hola"


async def test_frame_flood_closes_the_socket(start):
    running = await start(frames_per_second_per_connection=5)
    chat = await new_chat(running)
    for _ in range(60):
        await chat.ws.send_str("{}")
    assert await chat.closed() == 1008
    codes = {f["code"] for f in chat.frames if f["type"] == "error"}
    assert "rate_limited" in codes


async def test_a_session_sending_only_rejected_frames_is_closed_with_1008(start):
    """The audit's flood at any rate: each refused frame earns an error, and
    ``max_rejected_frames`` of them in a row close the socket, with a reason."""
    running = await start(max_rejected_frames=5, frames_per_second_per_connection=1000,
                          messages_per_minute_per_session=2)
    chat = await new_chat(running)

    async def refused(raw: str) -> str:
        await chat.ws.send_str(raw)
        return (await chat.next(lambda f: f["type"] == "error"))["code"]

    # Refused frames interrupted by an accepted one do not add up.
    assert [await refused("not json") for _ in range(4)] == ["bad_request"] * 4
    assert (await chat.say("ok-1", "hola"))["type"] == "ack"
    assert [await refused("{}") for _ in range(4)] == ["bad_request"] * 4
    assert (await chat.say("ok-2", "sigo"))["type"] == "ack"
    # Over the session's message budget, valid messages are refused too: they count.
    for i in range(4):
        assert (await chat.say(f"over-{i}", "otra vez"))["code"] == "rate_limited"
    await chat.ws.send_str("[]")  # the fifth refusal in a row
    async with asyncio.timeout(10):
        while (msg := await chat.ws.receive()).type == aiohttp.WSMsgType.TEXT:
            chat.frames.append(json.loads(msg.data))
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert (chat.ws.close_code, msg.extra) == (1008, "too many rejected frames")
    assert [f["code"] for f in chat.frames if f["type"] == "error"] == ["bad_request"]
    # Another visitor is untouched.
    assert (await (await new_chat(running)).say("b-1", "hola"))["type"] == "ack"


async def test_a_second_customer_behind_a_busy_address_connects(start):
    """200 sockets from one address (an office NAT, a mobile carrier) used to refuse the
    next customer with 429. The address ceiling is high; the limits that bite are each
    session's own."""
    running = await start(messages_per_minute_per_session=3)
    # A session of its own: the default one's connector holds 100 connections at most.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as office:
        busy = [await ChatClient.connect(office, running.base) for _ in range(200)]
        await customers_behind_a_busy_address(running)
        await asyncio.gather(*(c.close() for c in busy))


async def customers_behind_a_busy_address(running: Running) -> None:
    first = await new_chat(running)
    acks = [await first.say(f"a-{i}", "hola") for i in range(3)]
    assert [a["type"] for a in acks] == ["ack"] * 3
    assert (await first.say("a-3", "hola"))["code"] == "rate_limited"  # that session's budget
    second = await new_chat(running)  # same address, a new customer
    ack = await second.say("b-1", "buenas, otra consulta")
    assert ack["type"] == "ack" and ack["case"] != acks[0]["case"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # limits live in the process
async def test_the_per_address_ceiling_uses_the_forwarded_address_only_from_a_trusted_proxy(database_url, tmp_path):
    for trusted, third_connects in (((), False), (("127.0.0.1/32",), True)):
        config = make_config(database_url, tmp_path / str(bool(trusted)), http={"trusted_proxies": trusted},
                             webchat={"enabled": True, "max_connections_per_ip": 2})
        async with Service(config) as service, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{service.http.bound_port}"

            async def connect(forwarded: str) -> ChatClient:
                return await ChatClient.connect(http, base, headers={"X-Forwarded-For": forwarded})

            held = [await connect("198.51.100.1"), await connect("198.51.100.1")]
            if third_connects:  # behind the proxy: another customer, another address
                chat = await connect("198.51.100.2")
                assert (await chat.hello())["type"] == "welcome"
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await connect("198.51.100.1")
            else:  # straight from the peer: the header is the client's word, and ignored
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await connect("198.51.100.2")
            assert refused.value.status == 429
            for c in held:
                await c.close()


async def test_silent_and_idle_sockets_are_closed(start):
    running = await start(hello_timeout_seconds=1, idle_timeout_seconds=1)
    silent = await running.chat()
    assert await silent.closed() == 4000
    idle = await new_chat(running)
    assert await idle.closed() == 4000


async def test_a_peer_that_answers_no_ping_is_dropped_and_one_that_answers_stays(start):
    """Our own heartbeat (the watchdog pings a silent socket): a socket whose peer no
    longer answers is closed after about a heartbeat and a half, long before the idle
    timeout; a live one, idle but answering pings, stays. A client's own ping gets its pong."""
    running = await start(heartbeat_seconds=1, idle_timeout_seconds=60)

    pings = {"dead": 0, "alive": 0}
    alive_pinged_thrice = asyncio.Event()

    def on_ping(name: str) -> None:
        pings[name] += 1
        if name == "alive" and pings[name] >= 3:
            alive_pinged_thrice.set()

    async def raw_chat(name: str, *, answer: bool) -> ChatClient:
        # autoping=False: the test sees the server's pings and decides whether to answer.
        # On a loaded machine the first ping can come before the welcome, so the hello reads
        # pings too (ChatClient.next takes text frames only).
        chat = ChatClient(await running.http.ws_connect(f"{running.base}/chat/ws", autoping=False))
        await chat.send({"type": "hello", "session": None, "last_seen": None, "lang": "es"})
        while True:
            msg = await asyncio.wait_for(chat.ws.receive(), 15)
            if msg.type == aiohttp.WSMsgType.PING:
                on_ping(name)
                if answer:
                    await chat.ws.pong(msg.data)
                continue
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            if frame["type"] == "welcome":
                return chat
            chat.frames.append(frame)

    async def read(chat: ChatClient, name: str, *, answer: bool) -> int | None:
        """Until the socket ends: count pings, answer them or not; the close code."""
        while True:
            msg = await chat.ws.receive()
            if msg.type == aiohttp.WSMsgType.PING:
                on_ping(name)
                if answer:
                    await chat.ws.pong(msg.data)
            elif msg.type == aiohttp.WSMsgType.PONG:
                assert msg.data == b"are you there?"
                pings["pong"] = 1
            elif msg.type != aiohttp.WSMsgType.TEXT:
                return chat.ws.close_code

    dead = await raw_chat("dead", answer=False)
    alive = await raw_chat("alive", answer=True)
    answering = asyncio.create_task(read(alive, "alive", answer=True))
    await alive.ws.ping(b"are you there?")
    assert await asyncio.wait_for(read(dead, "dead", answer=False), 15) == 4001
    assert pings["dead"] == 1  # one ping, unanswered, then the close
    # A socket left unanswered is closed within a heartbeat and a half of its ping: three
    # answered pings in a row are two heartbeats past the point where it would have been.
    await asyncio.wait_for(alive_pinged_thrice.wait(), 15)
    assert not answering.done(), "a socket that answers pings was closed"
    assert pings.get("pong") == 1
    answering.cancel()
    await alive.close()


async def test_the_web_chat_worker_claims_in_large_batches(start):
    """Pushes cost microseconds: the web chat's outbox worker claims many at once, so the
    bot's greetings to a crowd of new chats are a few write transactions, not dozens."""
    running = await start()
    sizes = {w.channel_name: w.batch_size for w in running.service.workers}
    assert sizes[ChannelName.WEBCHAT] == WebchatChannel.claim_batch >= 500 > DEFAULT_CLAIM_BATCH
    chats = [await new_chat(running) for _ in range(3)]
    for n, chat in enumerate(chats):
        assert (await chat.say(f"m-{n}", "hola"))["type"] == "ack"
        greeting = await chat.next(lambda f: f["type"] == "message" and f.get("from") == "bot")
        assert greeting["choices"]  # the case-type question, pushed through the outbox


async def test_abandoned_sessions_are_swept(start):
    clock = FakeClock()
    running = await start(clock=clock, abandoned_session_hours=24)
    empty = await new_chat(running)
    talker = await new_chat(running)
    await talker.say("t-1", "hola")
    await empty.close()
    await talker.close()
    await asyncio.sleep(0.2)
    clock.advance(hours=23)
    assert await running.service.webchat.sweep() == 0
    clock.advance(hours=2)
    assert await running.service.webchat.sweep() == 1
    assert (await (await running.chat()).hello(session=empty.session))["code"] == "unauthorized"
    assert (await (await running.chat()).hello(session=talker.session))["type"] == "welcome"


# --- the widget's files ----------------------------------------------------------------------------


async def test_widget_files_are_cacheable(start):
    running = await start(prechat_form=True)
    async with running.http.get(f"{running.base}/chat/widget.js") as r:
        body = await r.read()
        assert r.status == 200 and r.content_type == "application/javascript"
        assert r.headers["Cache-Control"] == "public, max-age=300" and r.headers["ETag"]
        assert r.headers["Content-Encoding"] == "gzip"  # aiohttp decompresses it for us
        assert b"PosventaChat" in body
        etag = r.headers["ETag"]
    async with running.http.get(f"{running.base}/chat/widget.js", headers={"If-None-Match": etag}) as r:
        assert r.status == 304 and await r.read() == b""
    async with running.http.get(f"{running.base}/chat/widget.css") as r:
        assert r.status == 200 and r.content_type == "text/css" and r.headers["ETag"]
    async with running.http.get(f"{running.base}/chat/") as r:
        page = await r.text()
        assert r.status == 200 and "Content-Security-Policy" in r.headers
        assert 'widget.js" data-prechat="true"' in page or 'data-prechat="true"' in page.split("widget.js")[1][:80]
    async with running.http.get(f"{running.base}/chat", allow_redirects=False) as r:
        assert r.status == 308 and r.headers["Location"] == "/chat/"


async def test_webchat_off_serves_nothing(database_url, tmp_path):
    async with Service(make_config(database_url, tmp_path)) as service:
        assert ChannelName.WEBCHAT not in service.channels
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{service.http.bound_port}/chat/widget.js") as r:
            assert r.status == 404


async def test_case_of_welcome_is_the_open_case(start):
    running = await start()
    chat = await new_chat(running)
    ack = await chat.say("m-1", "hola")
    await chat.close()
    back = await new_chat(running, session=chat.session)
    assert back.case == ack["case"]
    async with running.api.patch(f"/api/v1/cases/{ack['case']}", json={"type": "request", "agent": "ana"}) as r:
        assert r.status == 200, await r.text()
    async with running.api.post(f"/api/v1/cases/{ack['case']}/activity",
                                json={"activity": "closed", "agent": "ana"}) as r:
        assert r.status == 200, await r.text()
    later = await new_chat(running, session=chat.session)
    assert later.case is None
    assert await running.scalar(select(func.count()).select_from(cases)) == 1
    assert json.dumps(later.frames)  # nothing unserialisable arrived
