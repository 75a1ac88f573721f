"""Inbound email throughput: N small mails over 20 concurrent SMTP connections (each
reused), to ``posventa serve`` (SQLite and PostgreSQL) and, in the same run, to a bare
aiosmtpd whose handler only answers 250. Both servers run as separate processes.
Afterwards every accepted mail must be in the database. Prints one JSON object.

``--processes N`` (PostgreSQL only; SQLite is single-process) starts N ``posventa serve``
processes on one database, each with its own SMTP and HTTP port, and N bare servers,
and spreads the connections round-robin over them, so the ratio compares like with like.

    .venv/bin/python bench/email.py [--mails 3000] [--connections 20] [--only sqlite|postgres]
                                    [--processes 1]
"""

from __future__ import annotations

# Scripts run from bench/ get bench/ first on sys.path, where email.py would shadow the
# standard library's email package: drop it (imports below come from the repo root).
import sys as _sys
from pathlib import Path as _Path

_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

BARE_SERVER = textwrap.dedent("""
    import asyncio, sys
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 OK"

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Handler(), enable_SMTPUTF8=True), "127.0.0.1", int(sys.argv[1]))
        await asyncio.Event().wait()

    asyncio.run(main())
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def make_mail(i: int, run: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Cliente {i % 500} <cliente{i % 500}@bench.example>"
    m["To"] = "support@example.com"
    m["Subject"] = f"Consulta {i}"
    m["Message-ID"] = f"<bench-{run}-{i}@bench.example>"
    m.set_content(f"Hola, consulta número {i}. Mi pedido no llegó todavía.")
    return m


async def load(ports: list[int], mails: int, connections: int, run: str) -> dict:
    latencies: list[float] = []
    accepted: list[str] = []
    queue = list(range(mails))

    async def worker(port: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        await client.connect()
        try:
            while queue:
                i = queue.pop()
                msg = make_mail(i, run)
                t = time.perf_counter()
                try:
                    await client.send_message(msg)
                    accepted.append(msg["Message-ID"])
                except aiosmtplib.SMTPResponseException:
                    pass
                latencies.append(time.perf_counter() - t)
        finally:
            await client.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(ports[k % len(ports)]) for k in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"accepted": len(accepted), "mails_s": round(len(accepted) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2), "_ids": accepted}


async def bare(mails: int, connections: int, processes: int = 1) -> dict:
    ports = [free_port() for _ in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)]) for port in ports]
    try:
        for port in ports:
            await wait_port(port)
        result = await load(ports, mails, connections, secrets.token_hex(4))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    result.pop("_ids")
    return result


def write_config(cfg: Path, url: str, tmp: Path, smtp_port: int, http_port: int) -> None:
    cfg.write_text(textwrap.dedent(f"""
        [database]
        url = "{url}"
        [service]
        data_dir = "{tmp}/data"
        log_level = "WARNING"
        [http]
        port = {http_port}
        [email]
        listen_port = {smtp_port}
        domains = ["example.com"]
        address = "support@example.com"
        [email.outbound]
        enabled = false
    """))


async def posventa(url: str, mails: int, connections: int, tmp: Path, processes: int = 1) -> dict:
    # One config per process: same database and data folder, own SMTP and HTTP ports.
    smtp_ports = [free_port() for _ in range(processes)]
    configs = []
    for n, smtp_port in enumerate(smtp_ports):
        cfg = tmp / ("bench.toml" if n == 0 else f"bench{n}.toml")
        write_config(cfg, url, tmp, smtp_port, free_port())
        configs.append(cfg)
    if not url.startswith("sqlite"):
        subprocess.run([sys.executable, "-m", "posventa", "db", "upgrade", "--config", str(configs[0])], cwd=REPO,
                       check=True, capture_output=True)
    procs = [subprocess.Popen([sys.executable, "-m", "posventa", "serve", "--config", str(cfg)], cwd=tmp,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for cfg in configs]
    try:
        for smtp_port in smtp_ports:
            await wait_port(smtp_port)
        result = await load(smtp_ports, mails, connections, secrets.token_hex(4))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    # Every accepted mail must be in the database.
    sys.path.insert(0, str(REPO))
    from sqlalchemy import select

    from posventa.core.persistence import Database
    from posventa.core.persistence.schema import messages

    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            stored = {r[0] for r in await conn.execute(select(messages.c.external_id).where(
                messages.c.channel == "email", messages.c.direction == "in"))}
    finally:
        await db.dispose()
    ids = result.pop("_ids")
    result["missing_in_database"] = len(set(ids) - stored)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--processes", type=int, default=1,
                        help="serve processes on one database (and bare servers); >1 needs PostgreSQL")
    args = parser.parse_args()
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    out: dict = {"benchmark": "email", "mails": args.mails, "connections": args.connections,
                 "processes": args.processes}
    out["bare_aiosmtpd"] = await bare(args.mails, args.connections, args.processes)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sqlite") and args.processes > 1:
            out["sqlite"] = {"skipped": "n/a: SQLite is single-process"}
        elif args.only in (None, "sqlite"):
            out["sqlite"] = await posventa(f"sqlite+aiosqlite:///{tmp}/bench.db", args.mails, args.connections,
                                           Path(tmp))
    if args.only in (None, "postgres"):
        import asyncpg

        name = f"pv_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out["postgres"] = await posventa(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
                                                 args.mails, args.connections, Path(tmp), args.processes)
        finally:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    for kind in ("sqlite", "postgres"):
        if kind in out and "mails_s" in out[kind]:
            out[kind]["ratio_to_bare"] = round(out[kind]["mails_s"] / out["bare_aiosmtpd"]["mails_s"], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
