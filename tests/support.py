"""Test helpers that are not fixtures: a settable clock, a recording channel, the
skip-or-fail rule for optional infrastructure, and ways to build a test Service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posventa.core.domain import ChannelName, ClaimedDelivery
from posventa.core.errors import DeliveryError

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "tests" / "contracts"


def require_all() -> bool:
    return os.environ.get("POSVENTA_REQUIRE_ALL") == "1"


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip with a visible reason, or fail when POSVENTA_REQUIRE_ALL=1 (CI)."""
    if condition:
        return
    if require_all():
        pytest.fail(f"{reason} (POSVENTA_REQUIRE_ALL=1 forbids skipping)")
    pytest.skip(reason)


_pg_state: dict[str, bool] = {}


def pg_available() -> bool:
    if "ok" not in _pg_state:
        try:
            with socket.create_connection(("127.0.0.1", 5432), timeout=2):
                _pg_state["ok"] = True
        except OSError:
            _pg_state["ok"] = False
    return _pg_state["ok"]


class FakeClock:
    """A clock tests move by hand: no sleeping to reach a retry or a survey window."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kw: float) -> None:
        self.current += timedelta(**kw)


class RecordingChannel:
    """A channel at our own ``Channel.send`` seam that records deliveries, and fails
    on demand with the error a real transport would raise."""

    def __init__(self, name: ChannelName) -> None:
        self.name = ChannelName(name)
        self.sent: list[ClaimedDelivery] = []
        self.failures: list[DeliveryError] = []
        self.on_send: Callable[[ClaimedDelivery], None] | None = None
        self.event = asyncio.Event()

    async def send(self, message: ClaimedDelivery) -> str | None:
        if self.failures:
            raise self.failures.pop(0)
        if self.on_send:
            self.on_send(message)
        self.sent.append(message)
        self.event.set()
        return f"{self.name.value}-{message.outbox_id}"

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[ClaimedDelivery]:
        async def wait() -> None:
            while len(self.sent) < count:
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(wait(), timeout)
        return self.sent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


API_TOKEN = "test-token-0123456789abcdef"


def make_config(database_url: str, tmp_path: Path, **sections):
    """A Config for an in-process Service: the given database, HTTP on a free port,
    everything else off unless a test turns it on. ``sections`` maps a section name to
    a dict of overrides, e.g. ``email={"enabled": True}``."""
    import dataclasses

    from posventa.core.config import Config, validate

    base = Config()
    defaults = {
        "database": {"url": database_url},
        "service": {"data_dir": str(tmp_path / "data")},
        "http": {"port": (port := free_port()), "public_url": f"http://127.0.0.1:{port}"},
        "api": {"tokens": (API_TOKEN,)},
        "email": {"enabled": False},
        "telegram": {"enabled": False},
        "webchat": {"enabled": False},
        "kb": {"enabled": False},
        "surveys": {"enabled": False},
        "outbox": {"poll_seconds": 0.2, "base_delay_seconds": 0.2, "max_delay_seconds": 2.0},
    }
    for name, values in sections.items():
        defaults[name] = {**defaults.get(name, {}), **values}
    replaced = {}
    for name, values in defaults.items():
        current = getattr(base, name)
        nested = {k: v for k, v in values.items() if dataclasses.is_dataclass(getattr(current, k, None))}
        flat = {k: v for k, v in values.items() if k not in nested}
        for k, v in nested.items():
            flat[k] = dataclasses.replace(getattr(current, k), **v)
        replaced[name] = dataclasses.replace(current, **flat)
    config = dataclasses.replace(base, **replaced)
    validate(config)
    return config


@contextlib.asynccontextmanager
async def throwaway_pg_database(*, prefix: str = "pv_t", template: str | None = None) -> AsyncIterator[str]:
    """A PostgreSQL database of its own on the shared server, dropped afterwards (even when
    clients are still connected). Yields its SQLAlchemy URL."""
    import asyncpg

    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def toml_text(doc: Mapping[str, Any]) -> str:
    """TOML for nested dicts of str/int/float/bool/lists: all a posventa config needs."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines: list[str] = []

    def table(prefix: str, body: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, Mapping)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, Mapping):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", doc)
    return "\n".join(lines) + "\n"
