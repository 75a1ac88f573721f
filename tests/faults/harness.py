"""Running ``posventa serve`` as real processes for the fault tests: writing their config,
spawning them, waiting for ``/healthz``, ``kill -9`` and restart, and always cleaning up.

Everything here treats the service as a black box reached over TCP (HTTP, SMTP), exactly as
a customer, an agent or an operator would; the only inside view is the database, which the
checks read with plain SQL after the fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.telegram_api import FakeTelegram
from tests.support import API_TOKEN, REPO, free_port, toml_text

SUPPORT_DOMAIN = "example.com"
SUPPORT_ADDRESS = f"support@{SUPPORT_DOMAIN}"
HEALTH_TIMEOUT = 60.0


def fault_seed(name: str) -> int:
    """The seed of one scenario's random choices (load mix, kill moments, victims).

    ``POSVENTA_FAULT_SEED`` replays a run; otherwise every run explores a new schedule.
    Printed, and repeated in every assertion message, so a failure can be replayed."""
    raw = os.environ.get("POSVENTA_FAULT_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(2**31)
    print(f"[faults] {name}: seed {seed} (replay with POSVENTA_FAULT_SEED={seed})")
    return seed


# --- config ---------------------------------------------------------------------------------


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, Mapping) else v
    return out


def serve_config(*, database_url: str, data_dir: Path, http_port: int, smtp_port: int,
                 relay_port: int | None = None, telegram: FakeTelegram | None = None,
                 overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A config for one serve process under load from a single address (127.0.0.1).

    The per-address abuse limits are raised (every test client shares one IP), the outbox
    retries quickly and keeps trying for much longer than any outage a test stages
    (``max_attempts``), and a claimed delivery whose process died is taken over after a
    few seconds (``lease_seconds``) rather than production's two minutes."""
    doc: dict[str, Any] = {
        "database": {"url": database_url, "pool_size": 4},
        "service": {"data_dir": str(data_dir), "log_level": "INFO"},
        "http": {"port": http_port, "public_url": f"http://127.0.0.1:{http_port}"},
        "api": {"tokens": [API_TOKEN]},
        "email": {
            "enabled": True, "listen_port": smtp_port, "domains": [SUPPORT_DOMAIN], "address": SUPPORT_ADDRESS,
            "auto_replies_per_sender_per_hour": 1_000_000,
            "outbound": {"enabled": relay_port is not None, "host": "127.0.0.1", "port": relay_port or 25,
                         "timeout_seconds": 5.0},
        },
        "telegram": {"enabled": False},
        "webchat": {
            "enabled": True, "messages_per_minute_per_session": 100_000, "messages_per_minute_per_ip": 1_000_000,
            "new_sessions_per_minute_per_ip": 100_000, "frames_per_second_per_connection": 1_000,
            "max_connections_per_ip": 10_000, "email_fallback_after_seconds": 0,
        },
        "kb": {"enabled": False},
        "surveys": {"enabled": False},
        "outbox": {"max_attempts": 1000, "base_delay_seconds": 0.2, "max_delay_seconds": 2.0,
                   "lease_seconds": 10.0, "poll_seconds": 0.5},
    }
    if telegram is not None:
        doc["telegram"] = {"enabled": True, "token": telegram.token, "api_base_url": telegram.api_base_url,
                           "poll_timeout_seconds": 2}
    return merge(doc, overrides or {})


# --- processes ------------------------------------------------------------------------------


@dataclass
class ServeProcess:
    """One ``posventa serve`` process, restartable on the same ports and config."""

    name: str
    workdir: Path
    config: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: Seconds from spawn to a 200 from /healthz, per start.
    startup_seconds: list[float] = field(default_factory=list)
    _spawned_at: float = 0.0

    @property
    def http_port(self) -> int:
        return int(self.config["http"]["port"])

    @property
    def smtp_port(self) -> int:
        return int(self.config["email"]["listen_port"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        self.config_path.write_text(toml_text(self.config), encoding="utf-8")
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start #{self.starts + 1} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "posventa", "serve", "--config", str(self.config_path)],
                cwd=self.workdir, env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self._spawned_at = time.monotonic()

    async def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> float:
        """Wait for /healthz to answer 200, and for the SMTP port to accept (it opens last)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if not self.alive:
                    raise AssertionError(f"{self.name} exited with {self.proc and self.proc.returncode}:\n"
                                         f"{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with http.get(f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200 and await _port_open(self.smtp_port):
                            break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not healthy within {timeout}s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)
        took = time.monotonic() - self._spawned_at
        self.startup_seconds.append(round(took, 2))
        return took

    async def start(self) -> float:
        self.spawn()
        return await self.wait_healthy()

    def kill9(self) -> None:
        """SIGKILL: no shutdown path runs, exactly like a power cut of this process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    async def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait for the drain; SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.proc.poll() is None:
            self.kill9()
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


async def _port_open(port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ServeGroup:
    """Every serve process a test started; ``kill_all`` is the fixture's finaliser, so no
    process outlives its test, whatever the test did."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[ServeProcess] = []

    def add(self, name: str, config: dict[str, Any]) -> ServeProcess:
        process = ServeProcess(name=name, workdir=self.workdir, config=config)
        self.processes.append(process)
        return process

    def alive(self) -> list[ServeProcess]:
        return [p for p in self.processes if p.alive]

    def kill_all(self) -> None:
        for p in self.processes:
            with contextlib.suppress(Exception):
                p.kill9()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(60)}" for p in self.processes)


def ports(count: int) -> list[int]:
    seen: set[int] = set()
    while len(seen) < count:
        seen.add(free_port())
    return list(seen)


# --- restartable fakes ----------------------------------------------------------------------


class SlowRelay(SmtpSink):
    """The outbound relay, taking a moment per message as real ones do, so that deliveries
    are in flight when a process dies (the case that makes a second copy)."""

    def __init__(self, *, delay: float = 0.1) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class RestartableTelegram(FakeTelegram):
    """The fake Bot API server, able to go away and come back on the same address with its
    state (chats, pending updates, confirmed offset) intact, as Telegram does after an outage.
    ``send_latency`` slows sends down like the real network does."""

    port = 0
    send_latency = 0.0

    async def _handle_method(self, request):
        if self.send_latency and request.match_info.get("method", "").lower().startswith("send"):
            await asyncio.sleep(self.send_latency)
        return await super()._handle_method(request)

    async def start(self) -> None:
        from aiohttp import web

        self._closing = False
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.api_base_url = f"http://127.0.0.1:{self.port}"

    def chat_ids_sent_to(self) -> dict[int, int]:
        """chat id → successful sendMessage calls to it."""
        out: dict[int, int] = {}
        for call in self.calls_to("sendMessage"):
            if call.status == 200:
                chat = int(call.params["chat_id"])
                out[chat] = out.get(chat, 0) + 1
        return out
