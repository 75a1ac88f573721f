"""Telegram intake throughput: N updates from 200 simulated customers, polled through the
fake Bot API server, into a real Service (SQLite and PostgreSQL), against a bare
python-telegram-bot echo Application fed the same updates in the same run.

What "done" means for each side:

- posventa: every update is stored (committed, with its case and the desk/ack rows in the
  outbox) and confirmed upstream by the next getUpdates offset;
- echo: every update has been answered with a sendMessage (PTB's Updater confirmed each
  batch before handling it).

Prints one JSON object with updates/second for both and their ratio (target ≥ 0.5).

``--processes N`` runs ``posventa serve`` as N subprocesses on one database instead of a
Service inside this process (N > 1 needs PostgreSQL; SQLite is single-process), and the
echo as a subprocess too, so both sides pay the same process boundary. Telegram allows
one ``getUpdates`` per bot, so of N processes exactly one polls (the holder of an
advisory lock); more processes add no intake capacity, and ``getupdates_conflicts``
(409 answers from the fake) shows that they never poll at once.

    .venv/bin/python bench/telegram.py [--updates 4000] [--customers 200] [--only sqlite|postgres]
                                       [--processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, and its name would shadow
# the python-telegram-bot package ("telegram"), so the folder goes and the repo comes in.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import aiohttp  # noqa: E402
import posventa.bots.telegram  # noqa: E402,F401  (sets PTB_TIMEDELTA before PTB builds any error)
from sqlalchemy import func, select  # noqa: E402
from telegram import Update  # noqa: E402
from telegram.ext import Application, ContextTypes, MessageHandler, filters  # noqa: E402

from posventa.core.config import Config  # noqa: E402
from posventa.core.persistence import Database, upgrade  # noqa: E402
from posventa.core.persistence.schema import messages, outbox  # noqa: E402
from posventa.service import Service  # noqa: E402
from bench.support import scratch_url  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram  # noqa: E402

LANGS = ("es", "pt", "en")
PHRASES = ("mi pedido no llegó", "la factura está duplicada", "no puedo iniciar sesión", "el equipo hace ruido",
           "quiero cambiar el producto", "¿cuándo llega el técnico?")


def build_updates(count: int, customers: int) -> list[dict[str, Any]]:
    """The same contract-checked updates for every run: round-robin over the customers."""
    scratch = FakeTelegram()
    for i in range(count):
        user = 10_000 + i % customers
        scratch.private_text(user, f"{PHRASES[i % len(PHRASES)]} ({i})", language_code=LANGS[user % 3],
                             first_name=f"Cliente {user}")
    return list(scratch.pending_updates)


def feed(fake: FakeTelegram, updates: list[dict[str, Any]]) -> None:
    # All at once, as a backlog Telegram kept for us; the fake's push_update would number
    # them again, so the prepared list goes straight into its queue.
    fake.pending_updates.extend(updates)
    fake._wake()  # noqa: SLF001  (wake the long poll waiting for news)


async def until(condition, *, timeout: float, interval: float = 0.002) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(interval)


async def run_echo(updates: list[dict[str, Any]]) -> dict[str, float]:
    async with FakeTelegram(max_long_poll=5.0) as fake:
        kw = fake.bot_kwargs()
        answered = 0
        done = asyncio.Event()

        async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            nonlocal answered
            await context.bot.send_message(update.effective_chat.id, update.message.text)
            answered += 1
            if answered == len(updates):
                done.set()

        app = Application.builder().token(kw["token"]).base_url(kw["base_url"]).base_file_url(
            kw["base_file_url"]).build()
        app.add_handler(MessageHandler(filters.TEXT, echo))
        async with app:
            await app.updater.start_polling(poll_interval=0, timeout=5)
            await app.start()
            await until(lambda: fake.waiting_polls > 0, timeout=10)
            t0 = time.perf_counter()
            feed(fake, updates)
            await asyncio.wait_for(done.wait(), timeout=600)
            elapsed = time.perf_counter() - t0
            await app.updater.stop()
            await app.stop()
    return {"updates_s": round(len(updates) / elapsed, 1), "seconds": round(elapsed, 3)}


def service_config(url: str, data_dir: str, fake: FakeTelegram) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        database=dataclasses.replace(base.database, url=url),
        service=dataclasses.replace(base.service, data_dir=data_dir, log_level="WARNING"),
        http=dataclasses.replace(base.http, enabled=False),
        email=dataclasses.replace(base.email, enabled=False),
        webchat=dataclasses.replace(base.webchat, enabled=False),
        surveys=dataclasses.replace(base.surveys, enabled=False),
        telegram=dataclasses.replace(base.telegram, enabled=True, token=fake.token, api_base_url=fake.api_base_url,
                                     poll_timeout_seconds=5),
    )


async def run_posventa(url: str, updates: list[dict[str, Any]], customers: int) -> dict[str, float]:
    last = updates[-1]["update_id"]
    async with FakeTelegram(max_long_poll=5.0) as fake:
        with tempfile.TemporaryDirectory() as data_dir:
            service = Service(service_config(url, data_dir, fake))
            await service.start()
            try:
                await until(lambda: fake.waiting_polls > 0, timeout=10)
                t0 = time.perf_counter()
                feed(fake, updates)
                # Confirmed upstream = stored: the poller only advances after the commit.
                await until(lambda: fake.confirmed_offset > last, timeout=600)
                elapsed = time.perf_counter() - t0
                await until(lambda: len(fake.calls_to("sendMessage")) >= customers, timeout=120, interval=0.01)
                acks_at = time.perf_counter() - t0
                async with service.db.engine.connect() as conn:
                    stored = (await conn.execute(select(func.count()).select_from(messages).where(
                        messages.c.direction == "in"))).scalar_one()
                    queued = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
            finally:
                await service.stop()
    if stored != len(updates):
        raise SystemExit(f"stored {stored} of {len(updates)} updates")
    return {"updates_s": round(len(updates) / elapsed, 1), "seconds": round(elapsed, 3),
            "acks_sent_s": round(acks_at, 3), "stored": stored, "outbox_rows": queued,
            "poll_batches": service.telegram.poller.batches}


# --- serve processes (--processes N) -------------------------------------------------------------


class SentCounter:
    """sendMessage calls answered by the fake so far, counted incrementally (the list is long)."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake, self.seen, self.count = fake, 0, 0

    def __call__(self) -> int:
        calls = self.fake.calls
        for i in range(self.seen, len(calls)):
            self.count += calls[i].method == "sendMessage"
        self.seen = len(calls)
        return self.count


async def serve_echo(api_base_url: str, token: str) -> None:
    """The bare PTB echo of ``run_echo``, as a process of its own (``--echo-serve``)."""

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await context.bot.send_message(update.effective_chat.id, update.message.text)

    app = Application.builder().token(token).base_url(f"{api_base_url}/bot").base_file_url(
        f"{api_base_url}/file/bot").build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=5)
        await app.start()
        await stop.wait()
        await app.updater.stop()
        await app.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Subprocesses with their output in temporary files; SIGTERM (then SIGKILL) on exit."""

    def __init__(self, argvs: list[list[str]]) -> None:
        self.argvs = argvs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [tempfile.TemporaryFile() for _ in argvs]

    def __enter__(self) -> Processes:
        env = {**os.environ, "PYTHONPATH": str(_HERE.parent)}
        self.procs = [subprocess.Popen(argv, cwd=_HERE.parent, env=env, stdout=log, stderr=log)
                      for argv, log in zip(self.argvs, self.logs, strict=True)]
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"{proc.args} exited {proc.returncode}:\n"
                                 f"{log.read().decode(errors='replace')[-3000:]}")


async def run_echo_process(updates: list[dict[str, Any]]) -> dict[str, float]:
    async with FakeTelegram(max_long_poll=5.0) as fake:
        sent = SentCounter(fake)
        with Processes([[sys.executable, str(Path(__file__).resolve()), "--echo-serve", fake.api_base_url,
                         fake.token]]) as procs:
            await until(lambda: fake.waiting_polls > 0 or procs.check_alive(), timeout=60, interval=0.05)
            t0 = time.perf_counter()
            feed(fake, updates)
            await until(lambda: sent() >= len(updates), timeout=600, interval=0.01)
            elapsed = time.perf_counter() - t0
    return {"updates_s": round(len(updates) / elapsed, 1), "seconds": round(elapsed, 3), "processes": 1}


def serve_config(path: Path, *, url: str, data_dir: Path, http_port: int, fake: FakeTelegram) -> None:
    path.write_text(f"""
[database]
url = "{url}"

[service]
data_dir = "{data_dir}"
log_level = "WARNING"

[http]
host = "127.0.0.1"
port = {http_port}

[email]
enabled = false

[webchat]
enabled = false

[surveys]
enabled = false

[telegram]
enabled = true
token = "{fake.token}"
api_base_url = "{fake.api_base_url}"
poll_timeout_seconds = 5
""", encoding="utf-8")


async def wait_healthy(port: int, procs: Processes) -> None:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while True:
            procs.check_alive()
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"serve on port {port} did not become healthy")
            await asyncio.sleep(0.2)


async def run_serve_processes(url: str, updates: list[dict[str, Any]], customers: int,
                              processes: int) -> dict[str, Any]:
    last = updates[-1]["update_id"]
    async with FakeTelegram(max_long_poll=5.0) as fake:
        with tempfile.TemporaryDirectory() as tmp:
            ports, argvs = [], []
            for n in range(processes):
                ports.append(free_port())
                config = Path(tmp) / f"serve{n}.toml"
                serve_config(config, url=url, data_dir=Path(tmp) / "data", http_port=ports[-1], fake=fake)
                argvs.append([sys.executable, "-m", "posventa", "serve", "--config", str(config)])
            sent = SentCounter(fake)
            with Processes(argvs) as procs:
                for port in ports:
                    await wait_healthy(port, procs)
                await until(lambda: fake.waiting_polls > 0, timeout=60, interval=0.05)
                t0 = time.perf_counter()
                feed(fake, updates)
                # Confirmed upstream = stored: the poller only advances after the commit.
                await until(lambda: fake.confirmed_offset > last, timeout=600, interval=0.01)
                elapsed = time.perf_counter() - t0
                await until(lambda: sent() >= customers, timeout=120, interval=0.01)
                acks_at = time.perf_counter() - t0
                procs.check_alive()
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.direction == "in"))).scalar_one()
            queued = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
    finally:
        await db.dispose()
    if stored != len(updates):
        raise SystemExit(f"stored {stored} of {len(updates)} updates")
    polls = fake.calls_to("getUpdates")
    return {"updates_s": round(len(updates) / elapsed, 1), "seconds": round(elapsed, 3),
            "acks_sent_s": round(acks_at, 3), "stored": stored, "outbox_rows": queued,
            "processes": processes, "get_updates_calls": len(polls),
            "getupdates_conflicts": sum(c.status == 409 for c in polls)}


@contextlib.asynccontextmanager
async def database(kind: str):
    """A scratch database's URL (bench.support), migrated, with no connection left open:
    the service processes connect to it themselves."""
    async with scratch_url(kind) as url:
        db = Database(url)
        await upgrade(db)
        await db.dispose()
        yield url


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=4000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    parser.add_argument("--processes", type=int,
                        help="run posventa serve as this many subprocesses on one database (>1 needs PostgreSQL); "
                             "default: a Service inside this process")
    parser.add_argument("--echo-serve", nargs=2, metavar=("API_BASE_URL", "TOKEN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.echo_serve:
        await serve_echo(*args.echo_serve)
        return
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be at least 1")
    updates = build_updates(args.updates, args.customers)
    echo = run_echo if args.processes is None else run_echo_process

    result: dict[str, Any] = {"bench": "telegram", "updates": len(updates), "customers": args.customers,
                              "echo": await echo(updates), "posventa": {}}
    if args.processes is not None:
        result["processes"] = args.processes
    for kind in ("sqlite", "postgres"):
        if args.only and kind != args.only:
            continue
        if kind == "sqlite" and (args.processes or 1) > 1:
            result["posventa"][kind] = {"skipped": "n/a: SQLite is single-process"}
            continue
        try:
            async with database(kind) as url:
                if args.processes is None:
                    figures = await run_posventa(url, updates, args.customers)
                else:
                    figures = await run_serve_processes(url, updates, args.customers, args.processes)
        except OSError as exc:
            result["posventa"][kind] = {"skipped": f"{kind} unavailable: {exc}"}
            continue
        figures["ratio_vs_echo"] = round(figures["updates_s"] / result["echo"]["updates_s"], 2)
        result["posventa"][kind] = figures
    # The echo again, last, so a machine that warmed up or slowed down shows in the figures.
    result["echo_again"] = await echo(updates)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
