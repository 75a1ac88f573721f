"""Files from web chat visitors (``POST /chat/files``) against a running Service, on both
databases: the type by content, the size limit, the session's own credential, dedup in
the store, the ack only after the commit, the file in the case (API) and in the replay."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import aiohttp
import jsonschema
import pytest
from sqlalchemy import func, select

from posventa.core.errors import StorageUnavailable
from posventa.core.persistence.schema import attachments, messages
from tests.intake.webchat.test_server import Running, new_chat, start  # noqa: F401 (the fixture)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"\x00" * 200
MZ = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(200)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def upload(running: Running, session: str | None, data: bytes, *, client_id: str = "u-1",
                 name: str = "photo.jpg", origin: str | None = None, headers: dict | None = None):
    hdrs = dict(headers or {})
    if session is not None:
        hdrs["Authorization"] = f"Bearer {session}"
    if origin is not None:
        hdrs["Origin"] = origin
    async with running.http.post(f"{running.base}/chat/files", params={"id": client_id, "name": name},
                                 data=data, headers=hdrs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r.headers


async def stored_messages(running: Running) -> int:
    return await running.scalar(select(func.count()).select_from(messages).where(messages.c.direction == "in"))


async def test_a_photo_becomes_a_message_of_the_case_acked_with_its_file(start):
    running = await start()
    chat = await new_chat(running, lang="es")
    status, body, _ = await upload(running, chat.session, PNG, name="broken kettle.jpg")
    assert status == 201, body
    assert body["type"] == "ack" and body["id"] == "u-1" and body["case"] is not None
    [att] = body["attachments"]
    # The name never contradicts the bytes: a PNG named .jpg gets .png after it.
    assert att["filename"] == "broken kettle.jpg.png"
    assert att["content_type"] == "image/png" and att["size"] == len(PNG)
    # The file is in the store under its hash; the message is the case's.
    path = running.service.attachments.path_for(hashlib.sha256(PNG).hexdigest())
    assert path.read_bytes() == PNG
    case = await running.case(body["case"])
    [message] = [m for m in case["messages"] if m["id"] == body["message_id"]]
    assert message["direction"] == "in" and message["channel"] == "webchat"
    assert [(a["id"], a["filename"], a["content_type"]) for a in message["attachments"]] == \
        [(att["id"], "broken kettle.jpg.png", "image/png")]
    # The API's message object is exactly as declared in its OpenAPI description.
    async with running.api.get("/api/v1/openapi.json") as r:
        declared = (await r.json())["components"]["schemas"]["Attachment"]
    jsonschema.validate(message["attachments"][0], declared)
    # The visitor reads it back with the session's credential, as a download.
    async with running.http.get(f"{running.base}/chat/files/{att['id']}",
                                headers={"Authorization": f"Bearer {chat.session}"}) as r:
        assert r.status == 200 and await r.read() == PNG
        assert r.headers["Content-Type"] == "image/png"
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    # A reconnect replays the message with its file.
    again = await running.chat()
    await again.hello(session=chat.session)
    replay = await again.messages_until(lambda f: f["message_id"] == body["message_id"])
    assert replay[-1]["attachments"] == [att] and replay[-1]["id"] == "u-1"


async def test_welcome_offers_the_upload_limits(start):
    running = await start(max_upload_bytes=1000, upload_types=("image",))
    chat = await running.chat()
    welcome = await chat.hello()
    assert welcome["upload"] == {"max_bytes": 1000, "types": ["image"]}
    off = await start(upload_types=())
    chat = await off.chat()
    assert "upload" not in await chat.hello()
    status, body, _ = await upload(off, chat.session, PNG)
    assert status == 404  # no route at all where the chat takes no files


@pytest.mark.parametrize("name,data", [("photo.jpg", ELF), ("photo.jpg", MZ), ("run.txt", b"#!/bin/sh\nrm -rf /\n"),
                                       ("notes.txt", b"caf\xe9 latin-1 text"), ("data.txt", b"text\x00with a NUL"),
                                       ("doc.zip", b"PK\x03\x04" + bytes(100))])
async def test_disguised_executables_and_other_types_are_refused_in_the_visitors_language(start, name, data):
    running = await start()
    chat = await new_chat(running, lang="pt")
    status, body, _ = await upload(running, chat.session, data, name=name)
    assert status == 415, body
    assert body["code"] == "file_refused" and body["id"] == "u-1" and body["field"] == "file"
    assert body["reason"] == "file_type"
    assert body["message"] == "Esse tipo de arquivo não é aceito. Você pode enviar: imagens, PDF, texto."
    # The same words reach the visitor's open socket as an error frame.
    frame = await chat.next(lambda f: f["type"] == "error")
    assert frame == {"type": "error", "code": "file_refused", "id": "u-1", "reason": "file_type",
                     "message": body["message"]}
    assert await stored_messages(running) == 0
    assert await running.scalar(select(func.count()).select_from(attachments)) == 0
    incoming = running.service.attachments.root / "attachments" / "incoming"
    assert list(incoming.iterdir()) == []


@pytest.mark.parametrize("name,data,content_type", [
    ("manual.pdf", PDF, "application/pdf"),
    ("notes", "Nota: la pava no enciende.\r\n\tDesde ayer. ✓\n".encode(), "text/plain; charset=utf-8"),
])
async def test_pdf_and_plain_text_are_taken(start, name, data, content_type):
    running = await start()
    chat = await new_chat(running)
    status, body, _ = await upload(running, chat.session, data, name=name)
    assert status == 201, body
    assert body["attachments"][0]["content_type"] == content_type


async def test_size_limit_by_declared_length_and_by_the_bytes_read(start):
    running = await start(max_upload_bytes=1024)
    chat = await new_chat(running, lang="en")
    status, body, headers = await upload(running, chat.session, PNG + bytes(2000))
    assert status == 413, body
    assert body["message"] == "The file is too large: the limit is 1 KB." and body["reason"] == "too_large"
    assert headers.get("Connection", "").lower() == "close"

    async def chunks():  # no Content-Length: the limit applies to what is read
        for _ in range(10):
            yield bytes(500)

    async with running.http.post(f"{running.base}/chat/files", params={"id": "u-2", "name": "big.txt"},
                                 data=chunks(), headers={"Authorization": f"Bearer {chat.session}"}) as r:
        assert r.status == 413
        assert (await r.json())["code"] == "file_refused" and (await r.json())["reason"] == "too_large"
    assert await stored_messages(running) == 0
    status, body, _ = await upload(running, chat.session, b"", client_id="u-3")
    assert status == 400 and body["message"] == "The file is empty." and body["reason"] == "empty_file"


async def test_only_the_sessions_own_credential_uploads_and_reads_back(start):
    running = await start()
    alice = await new_chat(running)
    bob = await new_chat(running)
    for session in (None, "not-a-session", "x" * 500):
        status, body, _ = await upload(running, session, PNG)
        assert status == 401 and body["code"] == "unauthorized", body
    status, body, _ = await upload(running, alice.session, PNG)
    assert status == 201
    att = body["attachments"][0]["id"]
    # Bob's session cannot read Alice's file: as unknown as a file that does not exist.
    async with running.http.get(f"{running.base}/chat/files/{att}",
                                headers={"Authorization": f"Bearer {bob.session}"}) as r:
        assert r.status == 404
    async with running.http.get(f"{running.base}/chat/files/{att}") as r:
        assert r.status == 401
    # Bob's upload goes to Bob's case, never Alice's.
    status, bob_body, _ = await upload(running, bob.session, PNG)
    assert status == 201 and bob_body["case"] != body["case"]
    # A page not allowed to embed the widget cannot upload even with the token.
    status_forbidden = (await running.http.post(
        f"{running.base}/chat/files", params={"id": "u-9", "name": "a.png"}, data=PNG,
        headers={"Authorization": f"Bearer {alice.session}", "Origin": "https://evil.example"})).status
    assert status_forbidden == 403


async def test_bad_parameters_name_the_field(start):
    running = await start()
    chat = await new_chat(running)
    status, body, _ = await upload(running, chat.session, PNG, client_id="not an id!")
    assert (status, body["field"]) == (400, "id")
    status, body, _ = await upload(running, chat.session, PNG, name="n" * 300)
    assert (status, body["field"]) == (400, "name")


async def test_a_hostile_file_name_is_cleaned(start):
    running = await start()
    chat = await new_chat(running)
    status, body, _ = await upload(running, chat.session, PNG, name="..\\../../etc/pass\x07wd<script>.png")
    assert status == 201, body
    assert body["attachments"][0]["filename"] == "pass_wd_script_.png"


async def test_the_same_file_is_stored_once_and_a_retried_upload_once(start):
    running = await start()
    chat = await new_chat(running)
    first = await upload(running, chat.session, PNG, client_id="u-1")
    retried = await upload(running, chat.session, PNG, client_id="u-1")
    other = await upload(running, chat.session, PNG, client_id="u-2", name="again.png")
    assert first[0] == retried[0] == other[0] == 201
    # A retry (same upload id) is the same message; a second upload is a message of its own.
    assert retried[1]["message_id"] == first[1]["message_id"]
    assert other[1]["message_id"] != first[1]["message_id"]
    assert await stored_messages(running) == 2
    # Two attachment rows, one file on disk.
    rows = await running.rows(select(attachments.c.sha256))
    assert len(rows) == 2 and len({r.sha256 for r in rows}) == 1
    files = [p for p in (running.service.attachments.root / "attachments").rglob("*") if p.is_file()]
    assert len(files) == 1


async def test_the_ack_waits_for_the_commit(start):
    running = await start()
    chat = await new_chat(running)
    uploads = running.service.webchat._uploads
    real = uploads._inbox
    entered, release = asyncio.Event(), asyncio.Event()

    class GatedInbox:
        async def receive(self, message):
            entered.set()
            await release.wait()
            return await real.receive(message)

    uploads._inbox = GatedInbox()
    answer = asyncio.create_task(upload(running, chat.session, PNG))
    await entered.wait()
    # The file is on disk, nothing is committed: no answer yet.
    assert not answer.done()
    assert await stored_messages(running) == 0
    release.set()
    status, body, _ = await answer
    assert status == 201
    # By the time the ack is out, the message and its file are committed.
    assert await running.scalar(select(func.count()).select_from(attachments)
                                .where(attachments.c.message_id == body["message_id"])) == 1


async def test_no_ack_when_the_database_does_not_commit(start):
    running = await start()
    chat = await new_chat(running)
    uploads = running.service.webchat._uploads

    class DownInbox:
        async def receive(self, message):
            raise StorageUnavailable("database down")

    uploads._inbox = DownInbox()
    status, body, headers = await upload(running, chat.session, PNG)
    assert status == 503 and body["type"] == "error" and "Retry-After" in headers
    assert await stored_messages(running) == 0


async def test_cross_origin_preflight_follows_the_widget_origin_policy(start):
    running = await start(allowed_origins=("https://shop.example.com",))
    chat = await new_chat(running)
    async with running.http.options(f"{running.base}/chat/files", headers={
            "Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    async with running.http.options(f"{running.base}/chat/files", headers={"Origin": "https://evil.example"}) as r:
        assert r.status == 403
    status, body, headers = await upload(running, chat.session, PNG, origin="https://shop.example.com")
    assert status == 201 and headers["Access-Control-Allow-Origin"] == "https://shop.example.com"


async def test_an_agents_files_reach_the_visitor_as_links_only_its_session_opens(start):
    running = await start()
    chat = await new_chat(running, lang="es")
    ack = await chat.say("m-1", "¿Me mandan la factura?")
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("text", "Aquí está")
    form.add_field("files", PDF, filename="factura.pdf")
    form.add_field("files", PNG, filename="sello.png")
    async with running.api.post(f"/api/v1/cases/{ack['case']}/reply", data=form) as r:
        assert r.status == 202, await r.text()
    frame = await chat.next(lambda f: f["type"] == "message" and f.get("from") == "agent")
    assert frame["text"] == "Aquí está"
    assert [(a["filename"], a["content_type"], a["size"]) for a in frame["attachments"]] == [
        ("factura.pdf", "application/pdf", len(PDF)), ("sello.png", "image/png", len(PNG))]
    pdf = frame["attachments"][0]
    assert pdf["url"] == f"/chat/files/{pdf['id']}"
    async with running.http.get(running.base + pdf["url"], headers={"Authorization": f"Bearer {chat.session}"}) as r:
        assert r.status == 200 and await r.read() == PDF
    # Another visitor's session cannot open it, nor can anyone without a session.
    other = await new_chat(running, lang="es")
    await other.say("m-1", "Hola")
    async with running.http.get(running.base + pdf["url"], headers={"Authorization": f"Bearer {other.session}"}) as r:
        assert r.status == 404
    async with running.http.get(running.base + pdf["url"]) as r:
        assert r.status == 401
    # The replay after a reconnect carries the same links.
    await chat.close()
    again = await running.chat()
    await again.hello(session=chat.session, lang="es")
    replayed = await again.next(lambda f: f["type"] == "message" and f.get("from") == "agent")
    assert replayed["attachments"] == frame["attachments"]
