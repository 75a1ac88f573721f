"""tests/browser.py's promise: a missing Chromium is a visible skip, or a failure when
POSVENTA_REQUIRE_ALL=1 says everything must run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import require_chromium

MISSING = Path("/nonexistent/chromium")


def test_missing_chromium_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSVENTA_REQUIRE_ALL", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed at /nonexistent/chromium"):
        require_chromium(MISSING)


def test_missing_chromium_fails_when_everything_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSVENTA_REQUIRE_ALL", "1")
    with pytest.raises(pytest.fail.Exception, match="POSVENTA_REQUIRE_ALL=1"):
        require_chromium(MISSING)
