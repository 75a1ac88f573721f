"""Full-text search latency: GET /api/v1/cases?q=... as CaseService.list_cases runs it,
over a database of ``--messages`` messages (10 per case), on SQLite and PostgreSQL.

The target (issue 21) is p95 < 50 ms at 1,000,000 messages; run small on a shared machine.
The queries mix what agents type: a rare word, an accent-less spelling of an accented word,
a common word, two words that meet in different texts of a case, a name, a case number.
Prints one JSON object.

    .venv/bin/python bench/search.py [--messages 1000000] [--queries 200] [--only sqlite|postgres]
"""

from __future__ import annotations

# See bench/inbox.py: bench/email.py must not shadow the standard library's email package.
import sys as _sys
from pathlib import Path as _Path

_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from core.cases import CaseFilter, CaseService  # noqa: E402
from core.outgoing import Outgoing  # noqa: E402
from core.persistence import Database, upgrade  # noqa: E402
from core.persistence.schema import cases, contacts, messages  # noqa: E402
from core.ports import SystemClock  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PER_CASE = 10
VOCABULARY = ("pedido envío factura licença renovación garantía impresora pantalla batería cargador "
              "entrega devolución reembolso cobro tarjeta suscripción contraseña cuenta acesso instalação "
              "atualização produto quebrado llegó roto tarde nunca ayuda gracias obrigado please refund "
              "order broken screen battery warranty invoice delivery account password").split()
NAMES = ("Ana", "João", "Lucía", "Pedro", "Marta", "José", "Conceição", "Peter", "Mary", "Iñaki")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(n))


async def fill(db: Database, n_messages: int, rng: random.Random) -> int:
    n_cases = max(1, n_messages // PER_CASE)
    now = datetime.now(UTC)
    batch = 2000
    for start in range(0, n_cases, batch):
        ids = range(start + 1, min(n_cases, start + batch) + 1)
        async with db.transaction() as conn:
            await conn.execute(insert(contacts), [
                {"id": i, "name": f"{rng.choice(NAMES)} {rng.choice(NAMES)}", "email": f"c{i}@example.com",
                 "language": "es", "created_at": now} for i in ids])
            await conn.execute(insert(cases), [
                {"id": i, "created_at": now, "updated_at": now, "contact_id": i, "case_type": "request",
                 "title": sentence(rng, 4), "description": sentence(rng, 20), "channel": "email", "language": "es",
                 "activity": "preliminary_analysis", "budget_mode": "not_used", "reply_token": secrets.token_hex(12),
                 "self_served": False} for i in ids])
            await conn.execute(insert(messages), [
                {"case_id": i, "contact_id": i, "channel": "email", "direction": "in" if k % 2 == 0 else "out",
                 "author": "customer" if k % 2 == 0 else "agent", "text": sentence(rng, 30), "created_at": now,
                 "external_id": f"m{i}-{k}"} for i in ids for k in range(PER_CASE)])
    return n_cases


async def measure(db: Database, n_messages: int, n_queries: int) -> dict:
    rng = random.Random(21)
    t0 = time.perf_counter()
    n_cases = await fill(db, n_messages, rng)
    fill_s = time.perf_counter() - t0
    # A rare word (not in the vocabulary, planted in one message in 1000).
    async with db.transaction() as conn:
        await conn.execute(insert(messages), [
            {"case_id": i, "channel": "email", "direction": "in", "author": "customer", "text": "código xyzzy-erro",
             "created_at": datetime.now(UTC), "external_id": f"rare-{i}"} for i in range(1, n_cases + 1, 1000)])
    service = CaseService(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=3), clock=SystemClock())
    queries = ["licenca", "renovacion", "garantia impresora", "xyzzy", "conceicao", "instalacao atualizacao",
               str(n_cases // 2), "refund broken", "c42@example.com", "entrega"]
    latencies: dict[str, list[float]] = {q: [] for q in queries}
    for i in range(n_queries):
        q = queries[i % len(queries)]
        t = time.perf_counter()
        found = await service.list_cases(CaseFilter(text=q, limit=50))
        latencies[q].append(time.perf_counter() - t)
        assert found or q == "xyzzy" and n_cases < 1000, q
    every = sorted(x for xs in latencies.values() for x in xs)
    return {
        "messages": n_cases * PER_CASE, "cases": n_cases, "fill_s": round(fill_s, 1), "queries": n_queries,
        "p50_ms": round(every[len(every) // 2] * 1000, 2),
        "p95_ms": round(every[int(len(every) * 0.95) - 1] * 1000, 2),
        "p95_under_50ms": every[int(len(every) * 0.95) - 1] < 0.05,
        "p95_ms_by_query": {q: round(sorted(xs)[int(len(xs) * 0.95) - 1] * 1000, 2) for q, xs in latencies.items()},
    }


async def run_one(url: str, args) -> dict:
    db = Database(url)
    try:
        await upgrade(db)
        return await measure(db, args.messages, args.queries)
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "search", "target": "p95 < 50 ms at 1,000,000 messages"}
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            out["sqlite"] = await run_one(f"sqlite+aiosqlite:///{tmp}/bench.db", args)
    if args.only in (None, "postgres"):
        import asyncpg

        name = f"pv_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            out["postgres"] = await run_one(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", args)
        finally:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
