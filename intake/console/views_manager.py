"""Managers' pages (filled in below once core/surveys lands)."""

from __future__ import annotations

from aiohttp import web

from intake.console.app import Console


def register(router: web.UrlDispatcher, console: Console) -> None:
    return None
