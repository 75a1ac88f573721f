"""The bad-input campaign's shared parts: a session-wide tally of the cases tried per
category (written to ``test-artifacts/hostile-summary.json`` when the session ends), the
"no crash, no loss, no leak" checks every attack ends with, and bounded hypothesis
settings so the whole folder stays well under two minutes."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

import aiohttp
import pytest
from hypothesis import HealthCheck, settings

from tests.support import REPO

SUMMARY = REPO / "test-artifacts" / "hostile-summary.json"

#: Signs that an exception escaped into an answer: Python tracebacks, aiosmtpd's generic
#: "500 Error: (TypeError) ..." reply, asyncpg/SQLAlchemy texts.
_LEAK = re.compile(r"Traceback \(most recent|File \"/|Error: \(\w+\)|sqlalchemy|asyncpg|sqlite3|OperationalError"
                   r"|\[SQL:", re.IGNORECASE)


def fuzz(max_examples: int, *, deadline_seconds: float = 10.0) -> settings:
    """Hypothesis settings for an attack on a running service: a bounded number of
    examples, a generous per-example deadline (it catches hangs, not slowness), no
    example database (the service state differs from run to run anyway)."""
    return settings(max_examples=max_examples, deadline=timedelta(seconds=deadline_seconds), database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


class Tally:
    """Cases tried per category, across every test of the session (thread-safe: a few
    attacks run in worker threads)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, category: str, n: int = 1) -> None:
        with self._lock:
            self.counts[category] += n

    def summary(self) -> dict[str, object]:
        return {"categories": dict(sorted(self.counts.items())), "total": sum(self.counts.values())}


@pytest.fixture(scope="session")
def tally():
    t = Tally()
    yield t
    if t.counts:
        SUMMARY.parent.mkdir(exist_ok=True)
        SUMMARY.write_text(json.dumps(t.summary(), indent=2) + "\n", encoding="utf-8")
        print(f"\nhostile cases tried: {json.dumps(t.summary())}")  # noqa: T201 - the report asks for the counts


def assert_no_leak(text: str | bytes, secrets: Iterable[str] = ()) -> None:
    """No traceback, no driver error and none of ``secrets`` in what an outsider got back."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    match = _LEAK.search(text)
    assert match is None, f"internal detail leaked: {text[max(0, match.start() - 80):match.end() + 80]!r}"
    for secret in secrets:
        assert secret not in text, "a secret leaked into a response"


async def assert_healthy(base_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/healthz") as r:
        assert r.status == 200, await r.text()
