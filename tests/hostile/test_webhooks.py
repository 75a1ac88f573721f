"""Forged Discourse webhooks against ``POST /kb/discourse/webhook`` of a running Service
with the KB on (the fake Discourse behind it). A forgery gets 403, the KB does not
change and the forum is not even asked about the topic; a genuine delivery still works."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from posventa.kb.tables import kb_articles
from posventa.service import Service
from tests.fakes.discourse_api import FakeDiscourse, sign
from tests.hostile.conftest import assert_healthy, assert_no_leak, fuzz
from tests.support import make_config

SECRET = "webhook-secret-123456"
API_KEY = "kb-key-0123456789"


@pytest.fixture
async def forum():
    async with FakeDiscourse(api_key=API_KEY) as fake:
        fake.add_topic("La impresora fiscal no imprime tickets",
                       "Revisar que el papel térmico esté bien colocado y reiniciar la impresora fiscal.")
        yield fake


@pytest.fixture
async def kb(database_url, tmp_path, forum):
    config = make_config(database_url, tmp_path, kb={
        "enabled": True, "api_url": forum.base_url, "api_key": API_KEY, "webhook_secret": SECRET,
        "sync_interval_seconds": 3600})
    async with Service(config) as service:
        await service.kb.sync.sync()
        yield service


async def deliver(service: Service, body: bytes, signature: str | None, event: str = "topic_edited") -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "X-Discourse-Event": event}
    if signature is not None:
        headers["X-Discourse-Event-Signature"] = signature
    url = f"http://127.0.0.1:{service.http.bound_port}/kb/discourse/webhook"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.text()


def topic_requests(forum: FakeDiscourse) -> int:
    """Requests for single topics: what a webhook triggers (the periodic sync lists pages)."""
    return sum(1 for r in forum.requests if r.path.startswith("/t/"))


async def titles(service: Service) -> list[str]:
    async with service.db.engine.connect() as conn:
        return sorted(r[0] for r in await conn.execute(select(kb_articles.c.title)))


def forgeries(body: bytes) -> dict[str, str | None]:
    good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "missing": None, "empty": "", "scheme_only": "sha256=", "no_scheme": good, "wrong_secret": sign("nope", body),
        "empty_secret": sign("", body), "truncated": "sha256=" + good[:32], "one_char_off": "sha256=" + good[:-1]
        + ("0" if good[-1] != "0" else "1"), "extended": "sha256=" + good + "00",
        "sha1": "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
        "sha512": "sha512=" + hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest(),
        "md5": "md5=" + hmac.new(SECRET.encode(), body, hashlib.md5).hexdigest(),
        "plain_sha256": "sha256=" + hashlib.sha256(body).hexdigest(),
        "secret_appended": "sha256=" + hashlib.sha256(SECRET.encode() + body).hexdigest(),
        "replay_other_body": sign(SECRET, body),  # a captured genuine signature, sent with other_body
        "base64": "sha256=" + base64.b64encode(bytes.fromhex(good)).decode(),
        "the_secret_itself": SECRET, "sha256_secret": "sha256=" + SECRET, "unicode": "sha256=" + "é" * 64,
        "nul": "sha256=" + "\x00" * 64, "two_signatures": f"sha256=deadbeef, sha256={good[:10]}",
    }


async def test_forged_signatures_are_refused_and_change_nothing(kb, forum, tally):
    service = kb
    [topic_id] = list(forum.topics)
    before = await titles(service)
    body = json.dumps({"topic": {"id": topic_id}}).encode()
    altered = json.dumps({"topic": {"id": topic_id}, "x": 1}).encode()
    asked = topic_requests(forum)
    for name, signature in forgeries(body).items():
        for event in ("topic_edited", "topic_destroyed"):
            tally.add("webhooks.discourse")
            header_safe = signature is None or all(32 <= ord(c) < 127 for c in signature)
            if not header_safe:
                signature = signature.encode("utf-8").decode("latin-1")  # what a raw header would carry
                if any(ord(c) < 32 for c in signature):
                    continue  # not sendable as an HTTP header at all
            status, text = await deliver(service, body if name != "replay_other_body" else altered, signature, event)
            assert status == 403, (name, event, status, text)
            assert_no_leak(text, [SECRET, API_KEY])
    await asyncio.sleep(0.3)  # a (wrongly) accepted delivery re-fetches in the background
    assert topic_requests(forum) == asked  # the forum was not even asked about the topic
    assert await titles(service) == before
    # The genuine delivery, with a replayed signature on its own unchanged body, is honoured.
    forum.edit_topic(topic_id, title="Título cambiado por el atacante en el foro")
    tally.add("webhooks.discourse")
    assert (await deliver(service, body, sign(SECRET, body)))[0] == 200
    for _ in range(50):
        if await titles(service) != before:
            break
        await asyncio.sleep(0.1)
    assert "Título cambiado por el atacante en el foro" in await titles(service)
    await assert_healthy(f"http://127.0.0.1:{service.http.bound_port}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@fuzz(80, deadline_seconds=10)
@given(body=st.one_of(st.binary(max_size=300), st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n)),
       signature=st.one_of(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
                           st.binary(min_size=32, max_size=32).map(lambda b: "sha256=" + b.hex())),
       event=st.sampled_from(["topic_created", "topic_edited", "post_created", "ping", "", "x" * 300]))
async def test_random_signatures_never_get_in(kb, forum, tally, body, signature, event):
    tally.add("webhooks.discourse")
    asked = topic_requests(forum)
    status, text = await deliver(kb, body, signature, event)
    assert status == 403, (status, text)
    assert_no_leak(text, [SECRET, API_KEY])
    assert topic_requests(forum) == asked


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_signed_but_hostile_bodies_get_a_clear_answer(kb, forum, tally):
    """The signature is right (the secret leaked, or Discourse misbehaves): the body is
    still untrusted and gets a clear 4xx, never a 500."""
    for event, body in [("topic_edited", b"[" * 100_000 + b"]" * 100_000), ("topic_edited", b"\xff\xfe"),
                        ("topic_edited", b'{"topic": {"id": -1}}'), ("topic_edited", b'{"topic": {"id": true}}'),
                        ("post_created", b'{"post": {"topic_id": 1e309}}'), ("topic_edited", b'{"topic": []}'),
                        ("topic_edited", b'{"topic": {"id": 99999999999999999999999}}')]:
        tally.add("webhooks.discourse")
        status, text = await deliver(kb, body, sign(SECRET, body), event)
        assert status in (200, 400, 413), (body[:30], status, text)
        assert_no_leak(text, [SECRET, API_KEY])
    await assert_healthy(f"http://127.0.0.1:{kb.http.bound_port}")
