"""The widget's static files, served with validators and a short public cache.

widget.js is fetched by every page view of every shop that embeds it, so it must be
cacheable (``max-age`` plus an ``ETag`` for cheap revalidation) yet a new release must
reach visitors within minutes, hence a short max-age rather than a fingerprinted URL
the shops would have to change in their snippet. Files are read once at start-up and
kept compressed, so serving costs no disk I/O.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
CACHE_CONTROL = "public, max-age=300"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return cls(body, gzip.compress(body, compresslevel=9, mtime=0), content_type, etag)


def load_asset(name: str, content_type: str, *, directory: Path = STATIC_DIR) -> Asset:
    return Asset.of((directory / name).read_bytes(), content_type)


def demo_page(*, prechat: bool, directory: Path = STATIC_DIR) -> Asset:
    """demo.html, with ``data-prechat="true"`` on the widget's script tag when
    ``[webchat] prechat_form`` is on: the widget reads its options from that tag."""
    html = (directory / "demo.html").read_text(encoding="utf-8")
    if prechat:
        html, count = re.subn(r'(<script\s+src="[^"]*widget\.js")', r'\1 data-prechat="true"', html, count=1)
        if not count:
            log.warning("web chat: demo.html has no widget.js script tag; prechat_form cannot reach the demo")
    return Asset.of(html.encode("utf-8"), "text/html; charset=utf-8")


def respond(request: web.Request, asset: Asset, *, cache_control: str = CACHE_CONTROL,
            extra_headers: dict[str, str] | None = None) -> web.Response:
    headers = {"Cache-Control": cache_control, "ETag": asset.etag, "X-Content-Type-Options": "nosniff",
               "Vary": "Accept-Encoding", **(extra_headers or {})}
    if_none_match = request.headers.get("If-None-Match", "")
    if asset.etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")} or if_none_match == "*":
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = asset.content_type
    return web.Response(body=body, headers=headers)
