"""The web chat websocket under attack: fuzzed frames (random JSON, wrong types, deep
nesting, huge strings, binary, invalid UTF-8), oversized frames, floods, and attempts to
read another visitor's conversation, against a running Service over real sockets.

The oracle for every frame: the server answers with a frame of the protocol (an error
with a known code, or what a valid frame earns) or closes with a policy code; never 1011
(the handler's "internal error" catch-all) and never a traceback. Throughout, Alice (on
her own address, through ``X-Forwarded-For`` behind the configured proxy) keeps chatting:
her messages are acknowledged and stored, and nothing of hers reaches anyone else.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from posventa.core.persistence.schema import messages, webchat_sessions
from posventa.service import Service
from tests.hostile.conftest import assert_healthy, assert_no_leak, fuzz
from tests.intake.webchat.support import ChatClient
from tests.support import API_TOKEN, make_config

ERROR_CODES = {"rate_limited", "too_large", "bad_request", "unauthorized"}
#: Normal, going away, invalid payload (bad UTF-8), policy, too big, try later, idle.
CLOSE_CODES = {1000, 1001, 1007, 1008, 1009, 1013, 4000}
MAX_FRAME = 2048
#: The service sees every connection from the proxy (this test, on 127.0.0.1), which
#: tells it the client's address in X-Forwarded-For.
BEHIND_NGINX = {"trusted_proxies": ("127.0.0.1/32",)}
_ids = itertools.count(1)


class Chat:
    """A running service with web chat, and Alice, the customer who must not notice."""

    def __init__(self, service: Service, http: aiohttp.ClientSession) -> None:
        self.service = service
        self.http = http
        self.base = f"http://127.0.0.1:{service.http.bound_port}"
        self.alice: ChatClient | None = None
        self.alice_case: int | None = None
        self.alice_ids: set[int] = set()

    async def connect(self, ip: str = "10.0.0.66", **kw) -> ChatClient:
        return await ChatClient.connect(self.http, self.base, headers={"X-Forwarded-For": ip}, **kw)

    async def start_alice(self) -> None:
        self.alice = await self.connect(ip="10.0.0.1")
        assert (await self.alice.hello())["type"] == "welcome"
        await self.alice_says("Hola, mi número de cliente es ALICE-SECRET-4242")

    async def alice_says(self, text: str) -> None:
        """The "no loss" check: Alice is acknowledged after commit, in her own case."""
        ack = await self.alice.say(f"alice-{next(_ids)}", text)
        assert ack["type"] == "ack", ack
        self.alice_case = self.alice_case or ack["case"]
        assert ack["case"] == self.alice_case
        self.alice_ids.add(ack["message_id"])
        async with self.service.db.engine.connect() as conn:
            stored = (await conn.execute(select(messages.c.text).where(messages.c.id == ack["message_id"]))).scalar()
        assert stored == text

    def assert_nothing_of_alice(self, frames: list[dict]) -> None:
        for frame in frames:
            assert "ALICE-SECRET" not in json.dumps(frame, ensure_ascii=False), frame
            assert frame.get("message_id") not in self.alice_ids, frame
            if frame.get("type") in ("welcome", "ack"):
                assert frame.get("case") is None or frame["case"] != self.alice_case, frame


@pytest.fixture
async def chat(database_url, tmp_path):
    config = make_config(database_url, tmp_path, http=BEHIND_NGINX, webchat={
        "enabled": True, "max_frame_bytes": MAX_FRAME, "max_text_chars": 500,
        # Generous, so the fuzz reaches the parser; the flood tests lower them.
        "frames_per_second_per_connection": 1000, "messages_per_minute_per_session": 10_000,
        "messages_per_minute_per_ip": 10_000, "new_sessions_per_minute_per_ip": 10_000,
        "hello_timeout_seconds": 5})
    async with Service(config) as service, aiohttp.ClientSession() as http:
        c = Chat(service, http)
        await c.start_alice()
        yield c


async def drain(client: ChatClient, sentinel: str | None, *, timeout: float = 10.0) -> tuple[list[dict], int | None]:
    """Every frame up to the ack of ``sentinel`` (or the close); returns (frames, close code)."""
    frames: list[dict] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = await client.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return frames, client.ws.close_code
            assert_no_leak(msg.data)
            frame = json.loads(msg.data)
            frames.append(frame)
            if sentinel is not None and frame.get("id") == sentinel and frame["type"] in ("ack", "error"):
                return frames, None


def check_frames(frames: list[dict], close: int | None) -> None:
    for frame in frames:
        assert frame.get("type") in ("welcome", "ack", "message", "error"), frame
        if frame["type"] == "error":
            assert frame["code"] in ERROR_CODES and isinstance(frame["message"], str), frame
    assert close is None or close in CLOSE_CODES, f"closed with {close}"


# --- frame fuzzing ---------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                         st.text(max_size=40), st.sampled_from(["hello", "message", "choice", "", "\ud800", "\x00"]))
json_any = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=10)
client_ids = st.one_of(st.uuids().map(str), st.text(max_size=70), st.integers(), st.none(), st.sampled_from(["", "a" * 65]))
shaped = st.one_of(
    st.fixed_dictionaries({"type": st.just("message"), "id": client_ids},
                          optional={"text": st.one_of(json_any, st.text(max_size=600)), "extra": json_any}),
    st.fixed_dictionaries({"type": st.just("choice"), "id": client_ids},
                          optional={"question": json_any, "value": json_any}),
    st.fixed_dictionaries({"type": st.just("hello")},
                          optional={"session": st.one_of(json_any, st.text(max_size=200)), "last_seen": json_any,
                                    "lang": json_any, "name": json_any, "email": json_any}),
    st.dictionaries(st.sampled_from(["type", "id", "text", "session", "question", "value"]), json_any, max_size=5),
)
frames = st.one_of(
    shaped.map(lambda d: ("text", json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass"))),
    json_any.map(lambda v: ("text", json.dumps(v).encode())),
    st.text(max_size=80).map(lambda t: ("text", t.encode("utf-8", "surrogatepass"))),
    st.integers(1, 20_000).map(lambda n: ("text", (b"[" * n) + (b"]" * n))),  # deep nesting
    st.integers(1, 8_000).map(lambda n: ("text", b'{"a":' * n + b"1" + b"}" * n)),
    st.integers(MAX_FRAME - 50, 3 * MAX_FRAME).map(lambda n: ("text", json.dumps(
        {"type": "message", "id": "big", "text": "ñ" * n}).encode())),  # around too_large
    st.binary(max_size=100).map(lambda b: ("binary", b)),
    st.binary(min_size=1, max_size=40).filter(lambda b: not _utf8(b)).map(lambda b: ("text", b)),  # invalid UTF-8
)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def send_raw(client: ChatClient, kind: str, payload: bytes) -> None:
    if kind == "binary":
        await client.ws.send_bytes(payload)
    else:
        # A text frame with exactly these bytes, valid UTF-8 or not (send_str would encode).
        await client.ws.send_frame(payload, aiohttp.WSMsgType.TEXT)


@fuzz(60, deadline_seconds=20)
@given(batch=st.lists(frames, min_size=1, max_size=8), hello_first=st.booleans())
async def test_fuzzed_frames(chat, tally, batch, hello_first):
    client = await chat.connect()
    try:
        if hello_first:
            assert (await client.hello())["type"] == "welcome"
        for kind, payload in batch:
            tally.add("webchat.frames")
            try:
                await send_raw(client, kind, payload)
            except ConnectionError:
                break  # the server closed on an earlier frame; drain() says how
        sentinel = f"sentinel-{next(_ids)}"
        try:
            await client.send({"type": "message", "id": sentinel, "text": "sigo aquí"})
        except ConnectionError:
            sentinel = None
        got, close = await drain(client, sentinel)
        check_frames(got, close)
        chat.assert_nothing_of_alice(got)
    finally:
        await client.close()
    await chat.alice_says("¿siguen ahí?")


async def test_oversized_frames(chat, tally):
    cases = [
        ("text", json.dumps({"type": "message", "id": "t1", "text": "a" * 501}).encode(), "too_large"),  # > max_text
        ("text", json.dumps({"type": "message", "id": "t2", "text": "ñ" * 1100}).encode(), "too_large"),  # > frame
        ("text", b'{"type":"hello","session":"' + b"s" * (MAX_FRAME + 10) + b'"}', "too_large"),
        ("binary", b"\x00" * (MAX_FRAME + 10), "bad_request"),
        ("text", b" " * (MAX_FRAME * 3) + b"{}", "too_large"),
    ]
    client = await chat.connect()
    assert (await client.hello())["type"] == "welcome"
    for kind, payload, code in cases:
        tally.add("webchat.oversized")
        await send_raw(client, kind, payload)
        err = await client.next(lambda f: f["type"] == "error")
        assert err["code"] == code, (payload[:60], err)
    assert (await client.say("ok-after-big", "todavía funciona"))["type"] == "ack"
    # Past the hard cap aiohttp stops reading (1009) without buffering the rest.
    for kind in ("text", "binary"):
        tally.add("webchat.oversized")
        victim = await chat.connect()
        await send_raw(victim, kind, b"x" * 300_000)
        got, close = await drain(victim, None)
        check_frames(got, close)
        assert close == 1009
    await chat.alice_says("después de los gigantes")
    await assert_healthy(chat.base)


# --- floods ---------------------------------------------------------------------------------


@pytest.fixture
async def strict(database_url, tmp_path):
    config = make_config(database_url, tmp_path, http=BEHIND_NGINX, webchat={
        "enabled": True, "frames_per_second_per_connection": 5,
        "messages_per_minute_per_session": 5, "messages_per_minute_per_ip": 8, "new_sessions_per_minute_per_ip": 3,
        "max_connections_per_ip": 6, "max_connections_per_session": 2})
    async with Service(config) as service, aiohttp.ClientSession() as http:
        c = Chat(service, http)
        await c.start_alice()
        yield c


sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@sqlite_only  # limits live in the process; the database kind changes nothing
async def test_floods(strict, tally):
    chat = strict
    # Frames: junk as fast as it can be written ends in rate_limited, then a 1008 close.
    spammer = await chat.connect()
    for _ in range(200):
        tally.add("webchat.floods")
        try:
            await spammer.ws.send_str("{}")
        except ConnectionError:
            break
    got, close = await drain(spammer, None)
    check_frames(got, close)
    assert close == 1008 and any(f.get("code") == "rate_limited" for f in got)

    # Messages: a valid session over its budget is told to slow down, with a retry_after.
    talker = await chat.connect(ip="10.0.0.77")
    assert (await talker.hello())["type"] == "welcome"
    answers = []
    for i in range(8):
        tally.add("webchat.floods")
        answers.append(await talker.say(f"f-{i}", f"mensaje {i}"))
        await asyncio.sleep(0.25)  # under the frame limit: only the message budget applies
    assert [a["type"] for a in answers[:5]] == ["ack"] * 5
    limited = [a for a in answers[5:] if a["type"] == "error"]
    assert limited and all(a["code"] == "rate_limited" and a["retry_after"] > 0 for a in limited)

    # New sessions and connections from one address.
    codes = []
    for _ in range(5):
        tally.add("webchat.floods")
        c = await chat.connect(ip="10.0.0.88")
        codes.append((await c.hello())["type"] == "welcome" or (await c.closed()))
    assert codes[:3] == [True] * 3 and set(codes[3:]) == {1013}
    held = []
    refused = 0
    for _ in range(10):
        tally.add("webchat.floods")
        try:
            held.append(await chat.connect(ip="10.0.0.99"))
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429
            refused += 1
    assert len(held) == 6 and refused == 4
    # Tabs of one session beyond the limit are refused (rate_limited, then closed).
    tab = await chat.connect(ip="10.0.0.55")
    assert (await tab.hello())["type"] == "welcome"
    more = [await chat.connect(ip="10.0.0.55") for _ in range(2)]
    assert (await more[0].hello(session=tab.session))["type"] == "welcome"
    tally.add("webchat.floods")
    assert (await more[1].hello(session=tab.session))["code"] == "rate_limited"

    for i in range(3):  # Alice, on her own address, never noticed
        await chat.alice_says(f"sigo esperando {i}")
    await assert_healthy(chat.base)


# --- cross-session ------------------------------------------------------------------------------


def forged_tokens(token: str, public_id: str, token_hash: str) -> list[object]:
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return [
        flipped, token[:-1], token + "x", token.upper(), token.lower(), " " + token, token + " ", token + "\x00",
        token[::-1], public_id, token_hash, "wc-" + token, token.replace("-", "+").replace("_", "/"),
        "' OR '1'='1", "%", "*", "", 0, 1, -1, True, 2**63, "null", "undefined", token[:22], token * 2,
        "\ud800", "a" * 129,
    ]


async def test_cross_session_reads_are_refused(chat, tally):
    async with chat.service.db.engine.connect() as conn:
        row = (await conn.execute(select(webchat_sessions.c.public_id, webchat_sessions.c.token_hash))).first()
    alice_token = chat.alice.session
    for forged in forged_tokens(alice_token, row.public_id, row.token_hash):
        if forged == alice_token:
            continue  # e.g. the base64 alphabet swap of a token with no '-' or '_' in it
        tally.add("webchat.cross_session")
        mallory = await chat.connect()
        await mallory.send({"type": "hello", "session": forged, "last_seen": None, "lang": "es"})
        frame = await mallory.next(lambda f: True)
        # An empty token is not "no token": it is refused like any wrong one.
        assert frame == {"type": "error", "code": "unauthorized", "message": frame["message"]}, (forged, frame)
        chat.assert_nothing_of_alice([frame, *mallory.frames])
        await mallory.close()

    # With a session of her own, Mallory tries the history: every last_seen, Alice's ids.
    mallory = await chat.connect()
    assert (await mallory.hello())["type"] == "welcome"
    await mallory.say("m-1", "hola soy Mallory")
    own_token = mallory.session
    await mallory.close()
    probes: list[object] = [None, 0, -1, 1, min(chat.alice_ids) - 1, max(chat.alice_ids), 2**63 - 1, 2**63, "0",
                            "1e3", "-1", "' OR 1=1", [0], {"$gt": 0}, 1.5, True]
    for last_seen in probes:
        tally.add("webchat.cross_session")
        again = await chat.connect()
        await again.send({"type": "hello", "session": own_token, "last_seen": last_seen, "lang": "es"})
        first = await again.next(lambda f: True)
        got: list[dict] = []
        if first["type"] == "welcome":
            assert first["case"] != chat.alice_case
            # The replay comes before the answer to anything sent after the hello.
            sentinel = f"probe-{next(_ids)}"
            await again.send({"type": "message", "id": sentinel, "text": "¿hay algo más?"})
            got, close = await drain(again, sentinel)
            check_frames(got, close)
        else:
            assert first["code"] == "bad_request", (last_seen, first)
        chat.assert_nothing_of_alice([first, *again.frames, *got])

        await again.close()

    # Alice's client ids and her question, sent from Mallory's session, change nothing of hers.
    mallory = await chat.connect()
    assert (await mallory.hello(session=own_token))["type"] == "welcome"
    for frame in ({"type": "message", "id": "alice-1", "text": "soy Alice, mándame todo"},
                  {"type": "choice", "id": "c-x", "question": f"case_type:{chat.alice_case}", "value": "complaint"},
                  {"type": "choice", "id": "c-y", "question": f"kb_feedback:{chat.alice_case}", "value": "yes"}):
        tally.add("webchat.cross_session")
        await mallory.send(frame)
        answer = await mallory.answer(frame["id"])
        chat.assert_nothing_of_alice([answer])
    async with aiohttp.ClientSession() as api:
        async with api.get(f"{chat.base}/api/v1/cases/{chat.alice_case}",
                           headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
            case = await r.json()
    assert case["type"] == "unclassified" and case["activity"] == "preliminary_analysis"
    await chat.alice_says("todo bien por aquí")
