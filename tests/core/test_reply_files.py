"""Files from agents, through the API: a reply with files (multipart/form-data) is checked by
the upload rule as it arrives, recorded on the reply, carried by its delivery, and
downloadable at /api/v1/attachments/{id}; a refused file refuses the whole reply, naming
the field. Over real HTTP against a running Service, on both databases."""

from __future__ import annotations

import hashlib
import zlib

import aiohttp
import pytest

from posventa.core.domain import ChannelName
from posventa.service import Service
from tests.support import API_TOKEN, RecordingChannel, make_config


def png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, grey) PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
#: A Windows executable's header, named like an invoice.
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00" + b"\x00" * 64


@pytest.fixture
async def running(database_url, tmp_path):
    service = Service(make_config(database_url, tmp_path, webchat={"max_upload_bytes": 4096}))
    email = RecordingChannel(ChannelName.EMAIL)
    service.channels[ChannelName.EMAIL] = email
    async with service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            async with http.post("/api/v1/cases", json={
                    "title": "Factura", "description": "No llegó", "type": "request",
                    "contact": {"email": "ana@cliente.com"}}) as r:
                assert r.status == 201, await r.text()
                number = (await r.json())["number"]
            yield service, http, email, number


def form(*files: tuple[str, bytes], **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        data.add_field(name, value)
    for filename, content in files:
        data.add_field("files", content, filename=filename, content_type="application/octet-stream")
    return data


async def test_a_reply_with_files_is_recorded_sent_and_downloadable(running):
    service, http, email, number = running
    image = png()
    async with http.post(f"/api/v1/cases/{number}/reply",
                         data=form(("foto.png", image), ("factura.pdf", PDF), text="Le adjunto la factura.",
                                   agent="maria")) as r:
        assert r.status == 202, await r.text()
        assert (await r.json())["channel"] == "email"
    [sent] = await email.wait_for(1)
    assert sent.text == "Le adjunto la factura."
    assert [(f.filename, f.content_type, f.size) for f in sent.files] == [
        ("foto.png", "image/png", len(image)), ("factura.pdf", "application/pdf", len(PDF))]
    assert sent.files[0].sha256 == hashlib.sha256(image).hexdigest()

    async with http.get(f"/api/v1/cases/{number}") as r:
        case = await r.json()
    reply = next(m for m in case["messages"] if m["author"] == "agent")
    assert [a["filename"] for a in reply["attachments"]] == ["foto.png", "factura.pdf"]
    assert [a["id"] for a in reply["attachments"]] == [f.id for f in sent.files]
    async with http.get(f"/api/v1/attachments/{sent.files[1].id}") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/pdf"
        assert r.headers["Content-Disposition"].startswith('attachment; filename="factura.pdf"')
        assert await r.read() == PDF
    async with http.get("/api/v1/attachments/999999") as r:
        assert r.status == 404 and (await r.json())["error"] == "not_found"
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"http://127.0.0.1:{service.http.bound_port}/api/v1/attachments/{sent.files[0].id}") as r:
            assert r.status == 401


async def test_files_alone_make_a_reply_and_the_same_file_is_stored_once(running):
    service, http, email, number = running
    for _ in range(2):
        async with http.post(f"/api/v1/cases/{number}/reply", data=form(("notas.txt", "Pasos: 1, 2, 3\n".encode()))) as r:
            assert r.status == 202, await r.text()
    first, second = await email.wait_for(2)
    assert first.text == "📎 notas.txt"
    assert first.files[0].content_type == "text/plain; charset=utf-8"
    # Two replies, two attachment rows, one file in the store (content-addressed).
    assert first.files[0].id != second.files[0].id and first.files[0].sha256 == second.files[0].sha256
    stored = list((service.attachments.root / "attachments").rglob(first.files[0].sha256))
    assert len(stored) == 1


@pytest.mark.parametrize(("files", "status", "error"), [
    ([("factura.pdf", EXE)], 415, "file_type"),
    ([("vacio.pdf", b"")], 422, "empty_file"),
    ([("grande.txt", b"a" * 5000)], 413, "too_large"),
    ([("foto.png", png()), ("script.txt", b"#!/bin/sh\nrm -rf /\n")], 415, "file_type"),
])
async def test_a_refused_file_refuses_the_reply_naming_the_field(running, files, status, error):
    service, http, email, number = running
    async with http.post(f"/api/v1/cases/{number}/reply", data=form(*files, text="Adjunto")) as r:
        body = await r.json()
        assert r.status == status, body
    assert body["error"] == error and body["field"] == "files"
    assert files[-1][0] in body["message"]  # which file
    async with http.get(f"/api/v1/cases/{number}") as r:
        case = await r.json()
    assert not [m for m in case["messages"] if m["author"] == "agent"]  # nothing recorded, nothing sent
    assert not email.sent


async def test_a_form_is_checked_like_the_json_body(running):
    service, http, email, number = running
    # Neither text, macro nor files: as the JSON body without text or macro.
    async with http.post(f"/api/v1/cases/{number}/reply", data=form(agent="maria")) as r:
        body = await r.json()
        assert r.status == 422 and body["field"] == "body", body
    async with http.post(f"/api/v1/cases/{number}/reply",
                         data=form(("a.txt", b"hola"), text="x", seen_message_id="no")) as r:
        body = await r.json()
        assert r.status == 422 and body["field"] == "seen_message_id", body
    eleven = [(f"{i}.txt", f"archivo {i}".encode()) for i in range(11)]
    async with http.post(f"/api/v1/cases/{number}/reply", data=form(*eleven, text="x")) as r:
        body = await r.json()
        assert r.status == 422 and body["field"] == "files", body
    # A stale form is refused as a stale JSON body is, and sends nothing.
    async with http.post(f"/api/v1/cases/{number}/reply",
                         data=form(("a.txt", b"hola"), text="x", seen_message_id="0")) as r:
        body = await r.json()
        assert r.status == 409 and body["error"] == "stale_reply", body
    assert not email.sent


async def test_the_description_declares_the_form(running):
    service, http, email, number = running
    async with http.get("/api/v1/openapi.json") as r:
        doc = await r.json()
    content = doc["paths"]["/api/v1/cases/{number}/reply"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    files = content["multipart/form-data"]["schema"]["properties"]["files"]
    assert files["maxItems"] == 10 and files["items"] == {"type": "string", "format": "binary"}
    assert {"413", "415"} <= set(doc["paths"]["/api/v1/cases/{number}/reply"]["post"]["responses"])
    download = doc["paths"]["/api/v1/attachments/{id}"]["get"]["responses"]["200"]["content"]
    assert set(download) == {"application/octet-stream", "image/*", "application/pdf", "text/plain"}


async def test_a_malformed_form_is_a_422_not_a_crash(running):
    service, http, email, number = running
    boundary = "dba91d6b9f2ecbb5"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"g\x00T\"\r\n\r\n{{}}\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nHola\r\n--{boundary}--\r\n").encode()
    async with http.post(f"/api/v1/cases/{number}/reply", data=raw,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}) as r:
        body = await r.json()
        assert r.status == 422 and body["field"] == "body", body
    assert not email.sent
