"""Fixtures for the web chat widget tests: a Chromium page and the protocol double.

Other suites that need a browser can copy the ``page`` fixture as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.browser import chromium_page, collect_page_errors
from tests.intake.webchat.chat_double import ChatDouble

if TYPE_CHECKING:
    from playwright.async_api import Page


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium_page() as page:
        errors = collect_page_errors(page)
        yield page
    # An exception in the widget is a failure even when the DOM looks right.
    assert errors == []


@pytest.fixture
async def chat() -> AsyncIterator[ChatDouble]:
    async with ChatDouble() as double:
        yield double
