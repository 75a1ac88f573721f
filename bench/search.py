"""Full-text search latency: GET /api/v1/cases?q=... as CaseService.list_cases runs it,
over a database of ``--messages`` messages (10 per case), on SQLite and PostgreSQL.

The target (issue 21) is p95 < 50 ms at 1,000,000 messages; run small on a shared machine.
The queries mix what agents type: a rare word, an accent-less spelling of an accented word,
a common word, two words that meet in different texts of a case, a name, a case number,
the beginning of a common word.
Prints one JSON object.

    .venv/bin/python bench/search.py [--messages 1000000] [--queries 200] [--only sqlite|postgres] [--keep NAME]

With ``--keep NAME`` the database is kept after the run (bench.support.kept_location says
where) and the next run with the same name and ``--messages`` measures it again without
filling it: the fill of 1,000,000 messages takes long, the queries take seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/email.py would shadow the standard
# library's email package: put the repo there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import functools  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from sqlalchemy import text  # noqa: E402

from posventa.core.cases import CaseFilter, CaseService  # noqa: E402
from bench.support import add_database_argument, bulk_insert, emit, machine_load, on_each_database, settle, timed_calls  # noqa: E402
from posventa.core.outgoing import Outgoing  # noqa: E402
from posventa.core.persistence import Database  # noqa: E402
from posventa.core.persistence.schema import cases, contacts, messages  # noqa: E402
from posventa.core.ports import SystemClock  # noqa: E402

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
    batch = 5000
    for start in range(0, n_cases, batch):
        ids = range(start + 1, min(n_cases, start + batch) + 1)
        await bulk_insert(db, contacts, [
            {"id": i, "name": f"{rng.choice(NAMES)} {rng.choice(NAMES)}", "email": f"c{i}@example.com",
             "language": "es", "created_at": now} for i in ids])
        await bulk_insert(db, cases, [
            {"id": i, "created_at": now, "updated_at": now, "contact_id": i, "case_type": "request",
             "title": sentence(rng, 4), "description": sentence(rng, 20), "channel": "email", "language": "es",
             "activity": "preliminary_analysis", "budget_mode": "not_used", "reply_token": secrets.token_hex(12),
             "self_served": False} for i in ids])
        await bulk_insert(db, messages, [
            {"case_id": i, "contact_id": i, "channel": "email", "direction": "in" if k % 2 == 0 else "out",
             "author": "customer" if k % 2 == 0 else "agent", "created_at": now, "external_id": f"m{i}-{k}",
             # A rare word (not in the vocabulary): in one case in 1000, spread over the years.
             "text": ("código xyzzy-erro " if k == 0 and i % 1000 == 1 else "") + sentence(rng, 30)}
            for i in ids for k in range(PER_CASE)])
    if not db.is_sqlite:
        async with db.transaction() as conn:
            # Explicit ids bypassed the sequences.
            for table in ("contacts", "cases"):
                await conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n_cases})"))

    await settle(db)
    return n_cases


async def measure(db: Database, n_messages: int, n_queries: int) -> dict:
    rng = random.Random(21)
    expected_cases = max(1, n_messages // PER_CASE)
    async with db.engine.connect() as conn:
        held = await conn.scalar(text("SELECT count(*) FROM cases"))
    fill_s: float | None = None
    if held == expected_cases:  # a kept database, filled by an earlier run
        n_cases = held
    elif held:
        raise SystemExit(f"the kept database holds {held} cases, not {expected_cases}: use another --keep name, "
                         "or drop it (bench.support.kept_location)")
    else:
        t0 = time.perf_counter()
        n_cases = await fill(db, n_messages, rng)
        fill_s = round(time.perf_counter() - t0, 1)
    service = CaseService(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=3), clock=SystemClock())
    queries = ["licenca", "renovacion", "garantia impresora", "xyzzy", "conceicao", "instalacao atualizacao",
               str(n_cases // 2), "refund broken", "c42@example.com", "entrega", "garant"]
    for q in queries:  # warm-up: each statement prepared once, untimed
        await service.list_cases(CaseFilter(text=q, limit=50))
    load_at_start = machine_load()
    # Each query's calls one after the other, so that the server's CPU is counted per query.
    order = [q for q in queries for _ in range(max(1, n_queries // len(queries)))]
    every = await timed_calls(db, [functools.partial(search, service, q, n_cases) for q in order], labels=order)
    by_query = every.pop("by_label")
    # The costliest query's CPU: its own p95 in this process plus its mean in the server.
    worst_cpu = max(t["client_cpu_p95_ms"] + t.get("server_cpu_mean_ms", 0.0) for t in by_query.values())
    return {
        "messages": n_cases * PER_CASE, "cases": n_cases, "fill_s": fill_s, "reused": fill_s is None, "queries": len(order),
        **every, "p95_under_50ms": every["p95_ms"] < 50, "worst_query_cpu_ms": round(worst_cpu, 2),
        "worst_query_cpu_under_50ms": worst_cpu < 50, "load_avg_at_search_start": load_at_start,
        "by_query": by_query,
    }


async def search(service: CaseService, q: str, n_cases: int) -> None:
    found = await service.list_cases(CaseFilter(text=q, limit=50))
    assert found or q == "xyzzy" and n_cases < 1000, q


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", metavar="NAME", help="keep the filled database under this name and reuse it")
    add_database_argument(parser)
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "search", "target": "p95 < 50 ms at 1,000,000 messages"}
    out.update(await on_each_database(args.only, lambda db: measure(db, args.messages, args.queries),
                                        keep=args.keep))
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
