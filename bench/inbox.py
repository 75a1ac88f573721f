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

from bench.support import CpuMeter, add_database_argument, emit, on_each_database, settle  # noqa: E402
from posventa.core.domain import ChannelName, InboundMessage  # noqa: E402
from posventa.core.inbox import InboxService  # noqa: E402
from posventa.core.outgoing import Outgoing  # noqa: E402
from posventa.core.persistence import Database  # noqa: E402
from posventa.core.ports import SystemClock  # noqa: E402

# The SLA clock and the full-text index are imported where they are used, so this script
# also runs on revisions from before them (bench/compare.py --same-scripts).

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


async def pipeline(db: Database, messages: int, customers: int, *, sla: object | None = None,
                   prefix: str = "") -> dict[str, float]:
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=5), clock=SystemClock(),
                         **({"sla": sla} if sla is not None else {}))
    per_customer = messages // customers
    latencies: list[float] = []

    async def customer(c: int) -> None:
        for i in range(per_customer):
            msg = InboundMessage(channel=ChannelName.WEBCHAT, external_id=f"{prefix}{c}-{i}", sender=f"{prefix}visitor-{c}",
                                 text=f"mensaje {i}: mi pedido no llegó todavía")
            t = time.perf_counter()
            await inbox.receive(msg)
            latencies.append(time.perf_counter() - t)

    cpu = CpuMeter(db)
    async with inbox:
        await cpu.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(customer(c) for c in range(customers)))
        elapsed = time.perf_counter() - t0
        used = await cpu.stop()
    latencies.sort()
    n = per_customer * customers
    return {
        "messages": n,
        "messages_s": round(n / elapsed, 1),
        # CPU per message, this process's and the database server's: the figure that a
        # busy shared machine moves least (wall-clock rates swing several-fold there).
        "client_cpu_us_per_message": round(used["client_cpu_s"] * 1e6 / n, 1),
        "server_cpu_us_per_message": (None if used["server_cpu_s"] is None
                                      else round(used["server_cpu_s"] * 1e6 / n, 1)),
        "cpu_us_per_message": round((used["client_cpu_s"] + (used["server_cpu_s"] or 0.0)) * 1e6 / n, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "batches": inbox.batches_committed,
        "mean_batch": round(inbox.messages_committed / max(1, inbox.batches_committed), 1),
    }


async def drop_fulltext(db: Database) -> None:
    """The schema as it was before issue 21's full-text index (see migration i21_fulltext);
    nothing on a revision from before it (compare.py --same-scripts passes the option to both)."""
    try:
        from posventa.core.persistence.schema import FULLTEXT_COLUMN, FULLTEXT_TABLES
    except ImportError:
        return

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
    # An untimed tenth first: statements compiled and cached, pages and pool warm.
    await pipeline(db, max(args.customers, args.messages // 10), args.customers, prefix="warm-")
    result = await pipeline(db, args.messages, args.customers)
    bare = await bare_rates(db, args.bare_rows)
    if args.sla_rounds:
        # The SLA clock's cost (due times on new cases, next-response targets on each
        # message): the same load with and without it on the same database, in ABBA order
        # (with, without, without, with...) so that neither side always runs on the
        # bigger tables, each run after the housekeeping a running service's would have
        # done by then (settle: VACUUM ANALYZE, the WAL checkpointed). Without it the
        # server's CPU per message climbed round after round (dead row versions of the
        # same 50 cases, the GIN pending list), and the plain side's best was its first
        # run, on the smallest tables: the ratio measured the growth, not the clock.
        from posventa.core.config import Config
        from posventa.core.sla import build_sla_setup
        from posventa.core.sla_store import CaseClockStore

        store = CaseClockStore(build_sla_setup(Config()))
        plain_runs, sla_runs = [], []
        for r in range(args.sla_rounds):
            for with_sla in ((True, False) if r % 2 == 0 else (False, True)):
                await settle(db)
                run = await pipeline(db, args.messages, args.customers, prefix=f"{'sla' if with_sla else 'plain'}{r}-",
                                     **({"sla": store} if with_sla else {}))
                (sla_runs if with_sla else plain_runs).append(run)
        result["with_sla_messages_s"] = max(r["messages_s"] for r in sla_runs)
        result["without_sla_best_messages_s"] = max(r["messages_s"] for r in plain_runs)
        result["sla_overhead_ratio"] = round(result["without_sla_best_messages_s"] / result["with_sla_messages_s"], 3)
        # The same in CPU per message (the least of each: noise only ever adds), and the
        # median of each round's ratio (the two runs of a round are next to each other).
        with_sla_cpu = min(r["cpu_us_per_message"] for r in sla_runs)
        without_sla_cpu = min(r["cpu_us_per_message"] for r in plain_runs)
        result["with_sla_cpu_us_per_message"] = with_sla_cpu
        result["without_sla_cpu_us_per_message"] = without_sla_cpu
        result["sla_cpu_overhead_ratio"] = round(with_sla_cpu / without_sla_cpu, 3)
        result["sla_cpu_ratio_per_round"] = [round(a["cpu_us_per_message"] / b["cpu_us_per_message"], 3)
                                             for a, b in zip(sla_runs, plain_runs, strict=True)]
        result["sla_cpu_ratio_median_of_rounds"] = round(statistics.median(result["sla_cpu_ratio_per_round"]), 3)
        result["sla_client_server_cpu_us"] = {
            "with": [(r["client_cpu_us_per_message"], r["server_cpu_us_per_message"]) for r in sla_runs],
            "without": [(r["client_cpu_us_per_message"], r["server_cpu_us_per_message"]) for r in plain_runs]}
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
    parser.add_argument("--sla-rounds", type=int, default=4,
                        help="rounds of a run with and a run without the SLA clock, in ABBA order "
                             "(0: none, only the plain figure)")
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "inbox", "customers": args.customers,
                              "fulltext": not args.without_fulltext}
    out.update(await on_each_database(args.only, lambda db: run_one(db, args)))
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
