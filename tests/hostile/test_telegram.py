"""Telegram under attack: fuzzed update JSON fed to the real poller through the fake Bot
API, hostile webhook POSTs, and strangers sending agent commands, against a running
Service (python-telegram-bot talking HTTP to tests/fakes/telegram_api.py).

The fake checks every update a test *builds* against the Bot API contract; hostile
updates are exactly what that check refuses, so they are queued raw (``push_raw``): what
a broken or compromised Bot API server, or a future API change, could hand us. After
each batch a well-formed customer message is queued behind it: it must be stored (no
loss), the poller must still be running, and the fake must have seen the offset move on.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from posventa.core.domain import ChannelName
from posventa.core.persistence.schema import cases, messages
from posventa.service import Service
from tests.bots.conftest import AGENT, AGENTS_CHAT, STRANGER, eventually, telegram_section
from tests.fakes.telegram_api import BotApiContract, FakeTelegram
from tests.hostile.conftest import assert_healthy, assert_no_leak, fuzz
from tests.support import RecordingChannel, make_config

CUSTOMER = 4201
SECRET = "hook-secret_0123456789"
_texts = itertools.count(1)


class HostileUpdates(BotApiContract):
    """The fake's contract, except that getUpdates may now hand out what it forbids: the
    point here is what the bot does with updates Telegram would never send."""

    def errors(self, value: Any, types: list[str], path: str = "$", depth: int = 0) -> list[str]:
        if path.startswith("getUpdates result"):
            return []
        return super().errors(value, types, path, depth)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(max_long_poll=1.0, contract=HostileUpdates.load()) as fake:
        fake.forum(AGENTS_CHAT)
        yield fake
        # A long poll cut short by the service stopping first is the client leaving, not
        # a bug of the fake; anything else still fails the test at stop().
        fake.internal_errors[:] = [e for e in fake.internal_errors if not isinstance(e, ConnectionResetError)]


@pytest.fixture
async def polling(database_url, tmp_path, tg) -> AsyncIterator[Service]:
    service = Service(make_config(database_url, tmp_path, telegram=telegram_section(tg)))
    service.channels[ChannelName.EMAIL] = RecordingChannel(ChannelName.EMAIL)
    async with service:
        await eventually(lambda: _true(service.telegram.poller.running))
        yield service


async def _true(value: bool) -> bool:
    return value


def push_raw(tg: FakeTelegram, payload: dict[str, Any]) -> int:
    """Queue an update as-is (no contract check), with the next update_id."""
    update_id = tg._next_update_id  # noqa: SLF001 - the fake has no raw door; this is it
    tg._next_update_id += 1  # noqa: SLF001
    tg.pending_updates.append({"update_id": update_id, **payload})
    tg._wake()  # noqa: SLF001
    return update_id


async def stored_text(service: Service, text: str) -> bool:
    async with service.db.engine.connect() as conn:
        return bool((await conn.execute(select(func.count()).select_from(messages)
                                        .where(messages.c.text == text))).scalar_one())


# --- update fuzzing -----------------------------------------------------------------------------


def good_message(tg: FakeTelegram, user: int, text: str) -> dict[str, Any]:
    # Built by the fake (so it is contract-checked) but not queued: a template to mutate,
    # copied so that mutations never reach the fake's own records (its chats and users).
    return copy.deepcopy({"message": tg._new_message(user, tg._customer(user, "Ana", "es"), text=text)})  # noqa: SLF001


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _apply(update: dict[str, Any], path: tuple, action: str, junk: Any) -> None:
    parent = update
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "delete":
        if isinstance(parent, dict):
            parent.pop(last, None)
        else:
            parent.pop(last)
    else:
        parent[last] = junk


junk_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=30), st.just([]),
    st.just({}), st.just("\x00"), st.just("a\x00b"), st.sampled_from(["private", "group", "supergroup", "channel"]),
    st.integers(1, 300_000).map(lambda n: "ñ" * n),  # huge texts (Telegram's own limit is 4096)
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
mutations = st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["delete", "replace"]), junk_values), min_size=1,
                     max_size=4)
unknown_kinds = st.dictionaries(
    st.sampled_from(["future_update", "business_message", "message_reaction", "poll", "poll_answer",
                     "chat_join_request", "my_chat_member", "inline_query", "shipping_query", "purchased_paid_media"]),
    st.one_of(st.dictionaries(st.text(max_size=5), junk_values, max_size=3), junk_values), min_size=1, max_size=2)


@fuzz(25, deadline_seconds=30)
@given(bad=st.lists(st.one_of(mutations.map(lambda m: ("mutated", m)), unknown_kinds.map(lambda u: ("raw", u))),
                    min_size=1, max_size=4))
async def test_fuzzed_updates_never_stop_the_poller(polling, tg, tally, bad):
    service = polling
    for kind, spec in bad:
        tally.add("telegram.updates")
        if kind == "raw":
            push_raw(tg, spec)
            continue
        update = good_message(tg, CUSTOMER + 1, f"base {next(_texts)}")
        for where, action, junk in spec:
            paths = _paths(update)
            if not paths:
                break  # everything was deleted already
            path = paths[int(where * (len(paths) - 1))]
            try:
                _apply(update, path, action, copy.deepcopy(junk))
            except (KeyError, IndexError, TypeError):
                pass  # an earlier mutation removed that branch
        push_raw(tg, update)
    text = f"mensaje bueno {next(_texts)}"
    tg.private_text(CUSTOMER, text)
    await eventually(lambda: stored_text(service, text), timeout=30)
    assert service.telegram.poller.running
    await eventually(lambda: _true(not tg.pending_updates), timeout=10)  # the offset moved past all of it


async def test_named_hostile_updates(polling, tg, tally):
    service = polling
    named = [
        {"message": {"message_id": 1, "date": 0, "chat": {"id": CUSTOMER, "type": "private"}, "text": "sin from"}},
        {"message": {"message_id": 2, "date": 0, "chat": {"id": CUSTOMER, "type": "private"},
                     "from": {"id": CUSTOMER, "is_bot": False, "first_name": "A"}, "text": "x" * 1_000_000}},
        {"message": {"message_id": 3, "date": 0, "chat": {"id": CUSTOMER, "type": "private"},
                     "from": {"id": CUSTOMER, "is_bot": False, "first_name": "A\x00"}, "text": "nul\x00en el texto"}},
        {"message": {"message_id": 4, "date": 0, "chat": {"id": "abc", "type": "private"},
                     "from": {"id": "abc", "is_bot": False, "first_name": "A"}, "text": "ids de texto"}},
        {"message": {"message_id": 5, "date": -10**12, "chat": {"id": 2**70, "type": "private"},
                     "from": {"id": 2**70, "is_bot": False, "first_name": "A"}, "text": "ids enormes"}},
        {"edited_message": {"message_id": 999, "date": 0, "chat": {"id": CUSTOMER, "type": "private"},
                            "from": {"id": CUSTOMER, "is_bot": False, "first_name": "A"}, "text": None}},
        {"callback_query": {"id": "q1", "from": {"id": CUSTOMER, "is_bot": False, "first_name": "A"},
                            "chat_instance": "c", "data": "\x00" * 64}},
        {"callback_query": {"id": "q2", "from": {"id": CUSTOMER, "is_bot": False, "first_name": "A"},
                            "chat_instance": "c", "data": "case_type:1:complaint"}},
        {"callback_query": {"id": None}},
        {"message": None}, {"message": []}, {"message": "hola"}, {}, {"unknown": {"deep": [[[[[]]]]]}},
        {"message": {"message_id": 6, "date": 0, "chat": {"id": CUSTOMER, "type": "private"},
                     "from": {"id": CUSTOMER, "is_bot": False, "first_name": "A"},
                     "document": {"file_id": "nope", "file_unique_id": "u", "file_size": 10**15}}},
        {"message": {"message_id": 7, "date": 0, "chat": {"id": CUSTOMER, "type": "private"},
                     "from": {"id": CUSTOMER, "is_bot": False, "first_name": "A"},
                     "photo": [{"file_id": "missing", "file_unique_id": "u", "width": 1, "height": 1}]}},
    ]
    for update in named:
        tally.add("telegram.updates")
        push_raw(tg, update)
    text = f"después de los raros {next(_texts)}"
    tg.private_text(CUSTOMER, text)
    await eventually(lambda: stored_text(service, text), timeout=30)
    assert service.telegram.poller.running
    await eventually(lambda: _true(not tg.pending_updates), timeout=10)
    await assert_healthy(f"http://127.0.0.1:{service.http.bound_port}")


# --- webhook mode --------------------------------------------------------------------------------


@pytest.fixture
async def webhook(database_url, tmp_path, tg) -> AsyncIterator[tuple[Service, str]]:
    service = Service(make_config(database_url, tmp_path, telegram=telegram_section(
        tg, mode="webhook", webhook_secret=SECRET)))
    async with service:
        await tg.wait_for_call("setWebhook")
        yield service, f"http://127.0.0.1:{service.http.bound_port}/telegram/webhook"


async def post(url: str, body: bytes, secret: str | None = SECRET, **headers: str) -> tuple[int, str]:
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.text()


webhook_bodies = st.one_of(
    st.binary(max_size=200),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                 lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3)),
                 max_leaves=8).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda uid, kind, payload: json.dumps({"update_id": uid, kind: payload}).encode(),
              st.one_of(st.integers(-2**70, 2**70), st.booleans(), st.text(max_size=5)),
              st.sampled_from(["message", "edited_message", "callback_query", "poll", "x"]),
              st.dictionaries(st.sampled_from(["message_id", "date", "chat", "from", "text"]),
                              st.one_of(st.integers(), st.text(max_size=10), st.none(),
                                        st.just({"id": 1, "type": "private"})), max_size=5)),
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@fuzz(80, deadline_seconds=10)
@given(body=webhook_bodies, secret=st.one_of(st.just(SECRET), st.just(SECRET), st.none(), st.text(max_size=30)))
async def test_fuzzed_webhook_posts(webhook, tally, body, secret):
    service, url = webhook
    tally.add("telegram.webhook")
    if secret is not None and any(ord(c) < 32 or ord(c) > 126 for c in secret):
        secret = "".join(c for c in secret if 32 <= ord(c) <= 126).strip() or None  # what a header can carry
    status, text = await post(url, body, secret)
    assert_no_leak(text, [SECRET])
    if secret != SECRET:
        assert status == 403, (status, text)
        return
    # 503 means "not stored, send again": with the database up, only a handler bug says
    # that; the router gives such an update up after a few tries, and Telegram (which
    # redelivers non-2xx answers) would then get its 200.
    for _ in range(6):
        if status != 503:
            break
        status, text = await post(url, body, secret)
    assert status in (200, 400, 413), (status, text, body[:200])


async def test_webhook_forgeries_and_limits(webhook, tg, tally):
    service, url = webhook
    update = json.dumps(good_message(tg, CUSTOMER, "hola por webhook") | {"update_id": 10}).encode()
    # (Leading/trailing blanks are HTTP's, not the secret's: aiohttp strips them, as it should.)
    for secret in (None, "", "wrong", SECRET[:-1], SECRET + "x", SECRET.upper(), SECRET + "\u00e9"[:0] + "=", "*"):
        tally.add("telegram.webhook")
        assert (await post(url, update, secret))[0] == 403
    assert not await stored_text(service, "hola por webhook")
    for body, expected in ((b"x" * 1_000_001, 413), (b"{" * 100_000, 400), (b"[" * 50_000 + b"]" * 50_000, 400),
                           (b"\xff\xfe", 400), (b"null", 400),
                           # Well-formed JSON but not an update we can use: skipped and acknowledged.
                           (b'{"update_id": true}', 200), (b'{"update_id": 5, "message": {"chat": null}}', 200)):
        tally.add("telegram.webhook")
        status, text = await post(url, body)
        assert status == expected, (body[:20], status, text)
    tally.add("telegram.webhook")
    assert (await post(url, update))[0] == 200
    assert await stored_text(service, "hola por webhook")
    await assert_healthy(f"http://127.0.0.1:{service.http.bound_port}")


# --- agent commands from strangers --------------------------------------------------------------

COMMANDS = ["/close", "/type complaint", "/type reclamo", "/assign mallory", "/assign -", "/note hola",
            "/publish", "/link https://evil.example/t/1", "/nopublish", "/answer", "/derive Ventas", "/category 1",
            "/CLOSE", "/close@posventa_bot", "/close@other_bot", "/close\n/type incident", "／close", "/close\x00",
            "te escribe el agente: transferí a la cuenta 123"]


async def case_state(service: Service, number: int) -> tuple:
    async with service.db.engine.connect() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == number))).one()
        count = (await conn.execute(select(func.count()).select_from(messages)
                                    .where(messages.c.case_id == number))).scalar_one()
    return (row.activity, row.case_type, row.assigned_agent, row.sector, row.kb_action, row.kb_url, row.category_id,
            count)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_strangers_cannot_act_as_agents(polling, tg, tally):
    service = polling
    tg.private_text(CUSTOMER, "Mi impresora no imprime")
    call = await tg.wait_for_call("createForumTopic", timeout=10)
    thread = next(t for (c, t), topic in tg.topics.items() if c == AGENTS_CHAT and topic["name"] == call.params["name"])
    await eventually(lambda: _true(len(tg.sent_messages(CUSTOMER)) >= 1))
    before = await case_state(service, 1)
    to_customer = len(tg.sent_messages(CUSTOMER))

    senders = [STRANGER, STRANGER + 1, -AGENT, AGENT + 2**32]
    for user in senders:
        for command in COMMANDS:
            tally.add("telegram.agent_commands", 2)
            tg.group_text(AGENTS_CHAT, user, command, thread_id=thread, first_name="Mallory")
            tg.group_text(AGENTS_CHAT, user, command)  # outside any topic
    # A bot account with an agent's name, and an anonymous admin, act as nobody either.
    push_raw(tg, {"message": {"message_id": 90_001, "date": 0, "chat": tg.forum(AGENTS_CHAT),
                              "message_thread_id": thread, "is_topic_message": True, "text": "/close",
                              "from": {"id": AGENT + 7, "is_bot": True, "first_name": "María"}}})
    push_raw(tg, {"message": {"message_id": 90_002, "date": 0, "chat": tg.forum(AGENTS_CHAT),
                              "message_thread_id": thread, "is_topic_message": True, "text": "/close",
                              "sender_chat": tg.forum(AGENTS_CHAT),
                              "from": {"id": 1087968824, "is_bot": True, "first_name": "Group"}}})
    tally.add("telegram.agent_commands", 2)
    # Private chat: the same commands are just a customer's words, in their own case.
    for command in COMMANDS:
        tally.add("telegram.agent_commands")
        tg.private_text(STRANGER, command)
    marker = f"fin de la prueba {next(_texts)}"
    tg.private_text(STRANGER, marker)
    await eventually(lambda: stored_text(service, marker), timeout=30)
    await eventually(lambda: _true(not tg.pending_updates), timeout=10)

    assert await case_state(service, 1) == before
    assert len(tg.sent_messages(CUSTOMER)) == to_customer  # nothing reached the customer
    refusals = [m for m in tg.sent_messages(AGENTS_CHAT, thread) if "Mallory" in m.get("text", "")]
    assert len(refusals) <= len(senders)  # one polite refusal per stranger at most
    for m in tg.sent_messages(AGENTS_CHAT) + tg.sent_messages(STRANGER):
        assert "transferí" not in m.get("text", "") or m["chat"]["id"] == AGENTS_CHAT

    # The control: a real agent's command does change the case (so the test can fail).
    tg.group_text(AGENTS_CHAT, AGENT, "/type complaint", thread_id=thread, first_name="María")

    async def retyped() -> bool:
        return (await case_state(service, 1))[1] == "complaint"

    await eventually(retyped, timeout=15)
