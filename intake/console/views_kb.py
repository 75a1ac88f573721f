"""The KB editor's server side: images pasted or uploaded into the Markdown editor, the
files themselves, and the sanitised preview.

The editor posts with the page's CSRF token in ``X-CSRF-Token`` (the console's guard
checks it before this code runs, and leaves the body unread). An image is read part by
part with a byte bound and stored by core (KbImages), like any attachment.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from posventa.core.errors import NotFound, ValidationError
from posventa.core.kb_images import KB_IMAGE_PATH, MAX_IMAGE_BYTES
from posventa.intake.console.app import PREFIX, SESSION_KEY, Console
from posventa.intake.console.forms import message_of
from posventa.intake.console.i18n import _l
from posventa.intake.console.markdown import MAX_MARKDOWN_CHARS

log = logging.getLogger(__name__)

assert KB_IMAGE_PATH.startswith(PREFIX + "/"), "KB images are served by the console"
_IMAGE_ROUTE = KB_IMAGE_PATH[len(PREFIX):]


async def _read_part(request: web.Request, name: str, limit: int) -> tuple[bytes, str | None]:
    """The bytes and filename of the multipart field ``name``, refused past ``limit`` bytes."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise ValidationError(_l("send the image as multipart/form-data"), field=name) from None
    while (part := await reader.next()) is not None:
        if getattr(part, "name", None) != name:
            await part.release()
            continue
        chunks, size = [], 0
        while chunk := await part.read_chunk(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ValidationError(_l("the image is larger than %(mb)d MB", mb=limit // (1024 * 1024)), field=name)
            chunks.append(chunk)
        return b"".join(chunks), part.filename
    raise ValidationError(_l("no image in the request"), field=name)


def register(router: web.UrlDispatcher, console: Console) -> None:
    renderer = console.markdown

    def invalid(exc: ValidationError) -> web.Response:
        return web.json_response({"error": "invalid", "message": console.locales.translate(message_of(exc)),
                                  "field": exc.field}, status=422)

    async def upload_image(request: web.Request) -> web.StreamResponse:
        try:
            number = int(request.match_info["number"])
            data, filename = await _read_part(request, "image", MAX_IMAGE_BYTES)
            image = await console.kb_images.add(number, data, filename=filename,
                                                agent=request[SESSION_KEY].user.username)
        except ValidationError as exc:
            log.info("console: KB image refused: %s", exc)
            return invalid(exc)
        return web.json_response({"id": image.id, "url": image.path, "filename": image.filename}, status=201)

    async def image_file(request: web.Request) -> web.StreamResponse:
        image = await console.kb_images.get(int(request.match_info["id"]))
        path = console.attachments.path_for(image.sha256)
        if not path.is_file():
            raise NotFound(_l("the image file is missing from the store"))
        return web.FileResponse(path, headers={
            "Content-Type": image.content_type,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(image.filename, safe='')}",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, max-age=86400",
        })

    async def preview(request: web.Request) -> web.StreamResponse:
        text = await request.text()
        if len(text) > MAX_MARKDOWN_CHARS:
            return invalid(ValidationError(_l("the text is longer than %(max)d characters", max=MAX_MARKDOWN_CHARS),
                                           field="text"))
        return web.Response(text=renderer.render(text), content_type="text/html")

    router.add_post("/cases/{number:\\d+}/kb/images", upload_image)
    router.add_get(_IMAGE_ROUTE + "{id:\\d{1,18}}", image_file)
    router.add_get(_IMAGE_ROUTE + "{id:\\d{1,18}}/{name}", image_file)
    router.add_post("/markdown/preview", preview)
