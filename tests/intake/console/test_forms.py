"""Reading console form bodies: text fields only, stray uploads closed at once."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from posventa.intake.console.forms import form_fields


async def test_form_fields_keep_text_and_close_file_parts_before_the_handler_returns():
    seen: dict[str, object] = {}

    async def handler(request: web.Request) -> web.Response:
        spooled = (await request.post())["upload"]  # aiohttp caches the parsed body
        assert isinstance(spooled, web.FileField) and not spooled.file.closed
        fields = await form_fields(request)
        # aiohttp itself closes spooled files only once a response is finished, which a
        # cancelled handler (client gone, shutdown) never reaches.
        seen["closed"] = spooled.file.closed
        seen["fields"] = sorted(fields.items())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", handler)
    form = aiohttp.FormData()
    form.add_field("note", "hola")
    form.add_field("note", "otra")
    form.add_field("upload", b"x" * 5000, filename="a.bin", content_type="application/octet-stream")
    async with TestServer(app) as server, TestClient(server) as client:
        async with client.post("/", data=form) as r:
            assert r.status == 200
    assert seen == {"closed": True, "fields": [("note", "hola"), ("note", "otra")]}
