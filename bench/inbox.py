"""Inbox throughput: 50 concurrent customers, one message at a time each, through
``InboxService.receive`` (waiting for the commit), on SQLite and PostgreSQL.

In the same run, on the same engine, it measures the two bare rates the pipeline sits
between: single-row inserts with a commit each, and inserts batched 100 per commit.
Prints one JSON object.

    .venv/bin/python bench/inbox.py [--messages 6000] [--customers 50] [--only sqlite|postgres]
                                    [--without-fulltext]

``--without-fulltext`` drops the full-text index's triggers and generated columns after
migrating (schema.FULLTEXT_TABLES), to measure the message insert without them in the same
run, with the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/email.py would shadow the standard
# library's email package: put the repo there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, text  # noqa: E402

from bench.support import add_database_argument, emit, on_each_database  # noqa: E402
from core.domain import ChannelName, InboundMessage  # noqa: E402
from core.inbox import InboxService  # noqa: E402
from core.outgoing import Outgoing  # noqa: E402
from core.persistence import Database  # noqa: E402
from core.persistence.schema import FULLTEXT_COLUMN, FULLTEXT_TABLES  # noqa: E402
from core.ports import SystemClock  # noqa: E402
from core.config import Config  # noqa: E402
from core.sla import build_sla_setup  # noqa: E402
from core.sla_store import CaseClockStore  # noqa: E402

bare_meta = MetaData()
bare_rows = Table("bench_bare_rows", bare_meta, Column("id", Integer, primary_key=True),
                  Column("channel", String(20)), Column("external_id", String(100)), Column("text", String(500)))


async def bare_rates(db: Database, rows: int) -> dict[str, float]:
    async with db.engine.begin() as conn:
        await conn.run_sync(bare_meta.create_all)
    t0 = time.perf_counter()
    n_single = max(200, rows // 5)
    for i in range(n_single):
        async with db.transaction() as conn:
            await conn.execute(insert(bare_rows).values(channel="x", external_id=f"s{i}", text="hola"))
    single = n_single / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, rows, 100):
        async with db.transaction() as conn:
            await conn.execute(insert(bare_rows), [{"channel": "x", "external_id": f"b{j}", "text": "hola"}
                                                   for j in range(start, min(rows, start + 100))])
    batched = rows / (time.perf_counter() - t0)
    return {"commit_per_row_rows_s": round(single, 1), "batched_100_rows_s": round(batched, 1)}


async def pipeline(db: Database, messages: int, customers: int, *, sla: CaseClockStore | None = None,
                   prefix: str = "") -> dict[str, float]:
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=5), clock=SystemClock(),
                         sla=sla)
    per_customer = messages // customers
    latencies: list[float] = []

    async def customer(c: int) -> None:
        for i in range(per_customer):
            msg = InboundMessage(channel=ChannelName.WEBCHAT, external_id=f"{prefix}{c}-{i}", sender=f"{prefix}visitor-{c}",
                                 text=f"mensaje {i}: mi pedido no llegó todavía")
            t = time.perf_counter()
            await inbox.receive(msg)
            latencies.append(time.perf_counter() - t)

    async with inbox:
        t0 = time.perf_counter()
        await asyncio.gather(*(customer(c) for c in range(customers)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "messages": per_customer * customers,
        "messages_s": round(per_customer * customers / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "batches": inbox.batches_committed,
        "mean_batch": round(inbox.messages_committed / max(1, inbox.batches_committed), 1),
    }


async def drop_fulltext(db: Database) -> None:
    """The schema as it was before issue 21's full-text index (see migration i21_fulltext)."""
    async with db.transaction() as conn:
        if db.is_sqlite:
            for fts in FULLTEXT_TABLES:
                for suffix in ("ai", "ad", "au"):
                    await conn.execute(text(f"DROP TRIGGER IF EXISTS {fts}_{suffix}"))
        else:
            await conn.execute(text("DROP TRIGGER IF EXISTS cases_search_vector ON cases"))
            for table in ("cases", "messages", "contacts", "contact_identities"):
                await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {FULLTEXT_COLUMN}"))


async def run_one(db: Database, args) -> dict:
    if args.without_fulltext:
        await drop_fulltext(db)
    result = await pipeline(db, args.messages, args.customers)
    bare = await bare_rates(db, args.bare_rows)
    if args.sla_rounds:
        # The SLA clock's cost (due times on new cases, next-response targets on each
        # message): the same load with and without it, alternating on the same database,
        # the best of each (a shared machine's noise only ever slows a round down).
        store = CaseClockStore(build_sla_setup(Config()))
        plain_rates, sla_rates = [result["messages_s"]], []
        for r in range(args.sla_rounds):
            sla_rates.append((await pipeline(db, args.messages, args.customers, sla=store,
                                             prefix=f"sla{r}-"))["messages_s"])
            plain_rates.append((await pipeline(db, args.messages, args.customers, prefix=f"plain{r}-"))["messages_s"])
        result["with_sla_messages_s"] = max(sla_rates)
        result["without_sla_best_messages_s"] = max(plain_rates)
        result["sla_overhead_ratio"] = round(max(plain_rates) / max(sla_rates), 3)
    result.update(bare)
    result["ratio_to_commit_per_row"] = round(result["messages_s"] / bare["commit_per_row_rows_s"], 2)
    result["ratio_to_batched_100"] = round(result["messages_s"] / bare["batched_100_rows_s"], 3)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--bare-rows", type=int, default=10000)
    add_database_argument(parser)
    parser.add_argument("--without-fulltext", action="store_true",
                        help="drop the full-text triggers and columns first (the 'before' figure)")
    parser.add_argument("--sla-rounds", type=int, default=3,
                        help="rounds with and without the SLA clock (0: none, only the plain figure)")
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "inbox", "customers": args.customers,
                              "fulltext": not args.without_fulltext}
    out.update(await on_each_database(args.only, lambda db: run_one(db, args)))
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
