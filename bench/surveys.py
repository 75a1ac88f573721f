"""Post-sale surveys at scale: N sales (default 1,000,000) across 10,000 customers and
200 operators, on SQLite and PostgreSQL. Prints one JSON object with:

- ``windows``: computing every survey window in pure Python, and recording the sales
  through ``Sales.record`` (the real path: customers, identities, sales and one rule
  instance per rule, in chunks) - instances/s;
- ``tick``: one ``SurveyScheduler.tick`` that opens a survey for each of the 10,000
  customers (every customer's first sale closed 4 days ago, so a 3-day rule is due);
- ``panel``: p50/p95 of the manager panel for one operator (counts of the four sections
  plus the first 50 items of each), over random operators; the same with a seller
  filter; and the commission scores for all sellers over one month.

History is simulated before the tick: 80% of the windows that have ended are marked
executed with scores, the rest expired (the panel's inconsistencies).

    .venv/bin/python bench/surveys.py [--sales 1000000] [--customers 10000] [--operators 200]
                                      [--only sqlite|postgres] [--queries 200]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/email.py would shadow the standard
# library's email package (which importlib.metadata needs): put the repo there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text  # noqa: E402

from bench.support import CpuMeter, add_database_argument, emit, on_each_database  # noqa: E402
from posventa.core.config import SurveysConfig  # noqa: E402
from posventa.core.outgoing import Outgoing  # noqa: E402
from posventa.core.persistence import Database  # noqa: E402
from posventa.core.persistence.schema import outbox, rule_instances  # noqa: E402
from posventa.core.surveys import PanelFilter, Surveys  # noqa: E402
from posventa.core.surveys.sales import Customer, SaleError, SaleInput  # noqa: E402
from posventa.core.surveys.windows import window_for  # noqa: E402

TZ = "America/Argentina/Buenos_Aires"
PROFILES = 20
PRODUCTS = 100
SELLERS = 50
#: Sales spread over this many days; with a 7- and a 14-day window per profile about 1%
#: of the instances are due on any given day.
HISTORY_DAYS = 2100
CHUNK = 5000


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


def catalog_toml(operators: int) -> bytes:
    rules_count = PROFILES * 2
    per_rule = max(1, operators // rules_count)
    lines = []
    for code, scale, weights in (("q_attention", "1-5", "[-100, -50, 0, 50, 100]"),
                                 ("q_delivery", "1-5", "[-100, -60, 0, 60, 100]"),
                                 ("q_nps", "0-10", "[-100, -100, -100, -80, -60, -40, -20, 0, 0, 80, 100]"),
                                 ("q_works", "yes/no", "[100, -100]")):
        lines += ["[[questions]]", f'code = "{code}"', f'scale = "{scale}"',
                  'text = { es = "¿Pregunta?", pt = "Pergunta?", en = "Question?" }', f"weights = {weights}", ""]
    for r in range(rules_count):
        ops = ", ".join(f'"op{(r * per_rule + k) % operators:03d}"' for k in range(per_rule))
        first = r % 2 == 0
        lines += ["[[rules]]", f'name = "rule{r:02d}"', f"start_after_days = {3 if first else 30}",
                  f"expires_after_days = {7 if first else 14}",
                  f'questions = {["q_attention", "q_delivery", "q_works"] if first else ["q_works", "q_nps"]}',
                  f"operators = [{ops}]", ""]
    for p in range(PROFILES):
        lines += ["[[profiles]]", f'name = "profile{p:02d}"', f'rules = ["rule{2 * p:02d}", "rule{2 * p + 1:02d}"]', ""]
    for j in range(PRODUCTS):
        lines += ["[[products]]", f'code = "P{j:03d}"', f'name = "Producto {j}"', f'profile = "profile{j % PROFILES:02d}"',
                  ""]
    return "\n".join(lines).replace("'", '"').encode()


def customer(c: int) -> Customer:
    # 70% reachable on Telegram, 30% by email.
    if c % 10 < 7:
        return Customer(telegram_id=str(10_000_000 + c))
    return Customer(email=f"customer{c}@bench.example")


def generate(n: int, customers: int, now: datetime, seed: int = 7):
    rng = random.Random(seed)
    for i in range(n):
        c = i % customers
        # Each customer's first sale closed 4 days ago: its 3-day rule is due today.
        days = 4 if i < customers else rng.randint(5, HISTORY_DAYS)
        closed = now - timedelta(days=days, minutes=rng.randint(0, 600))
        yield SaleInput(external_id=f"S{i:08d}", product=f"P{rng.randrange(PRODUCTS):03d}",
                        seller=f"seller{rng.randrange(SELLERS):02d}", closed_at=closed, customer=customer(c))


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run_one(db: Database, args: argparse.Namespace) -> dict[str, object]:
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FixedClock(now)
    surveys = Surveys.build(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=5), clock=clock,
                            config=SurveysConfig(timezone=TZ, reminder_after_hours=24))
    out: dict[str, object] = {}
    await surveys.catalog.import_toml(catalog_toml(args.operators))
    rules = await surveys.catalog.list_rules()
    days = {r["name"]: (r["start_after_days"], r["expires_after_days"]) for r in rules}

    # 1. Windows: pure arithmetic for every instance, then the real recording path.
    tz = ZoneInfo(TZ)
    t0 = time.perf_counter()
    computed = 0
    for s in generate(args.sales, args.customers, now):
        for start, expires in ((3, 7), (30, 14)):
            window_for(s.closed_at, start_after_days=start, expires_after_days=expires, tz=tz)
            computed += 1
    pure = time.perf_counter() - t0

    meter = CpuMeter(db)
    await meter.start()
    t0 = time.perf_counter()
    batch: list[SaleInput] = []
    created = instances = 0

    async def flush() -> None:
        nonlocal created, instances
        for outcome in await surveys.sales.record(batch):
            assert not isinstance(outcome, SaleError), outcome
            created += 1
            instances += outcome.instances
        batch.clear()

    for s in generate(args.sales, args.customers, now):
        batch.append(s)
        if len(batch) >= CHUNK:
            await flush()
    if batch:
        await flush()
    recorded = time.perf_counter() - t0
    record_cpu = await meter.stop()
    out["windows"] = {
        "sales": created, "instances": instances, "rules": len(days),
        "pure_compute_s": round(pure, 2), "pure_windows_per_s": round(computed / pure),
        "record_s": round(recorded, 1), "record_sales_per_s": round(created / recorded),
        "record_instances_per_s": round(instances / recorded),
        # CPU per sale recorded (the sales' generation included): this process and, on
        # PostgreSQL, the server; it hardly moves with the machine's load.
        **cpu_per(record_cpu, created, "record_", "_us_per_sale", 1e6),
    }

    # 2. History: ended windows are 80% executed, 20% expired.
    t0 = time.perf_counter()
    async with db.transaction() as conn:
        await conn.execute(text(
            "UPDATE rule_instances SET status = 'executed', executed_by = 'customer', "
            "executed_at = window_start, total_score = (id * 37 % 601) - 300, "
            "normalized_score = ((id * 37 % 601) - 300) / 3.0 "
            "WHERE window_end <= :now AND id % 5 <> 0"), {"now": _bind(db, now)})
        await conn.execute(text("UPDATE rule_instances SET status = 'expired' "
                                "WHERE window_end <= :now AND id % 5 = 0"), {"now": _bind(db, now)})
    if db.dialect == "postgresql":
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    else:
        async with db.transaction() as conn:
            await conn.execute(text("ANALYZE"))
    history_s = time.perf_counter() - t0
    async with db.engine.connect() as conn:
        statuses = dict((await conn.execute(select(rule_instances.c.status, func.count())
                                            .group_by(rule_instances.c.status))).all())

    # 3. The tick.
    await meter.start()
    t0 = time.perf_counter()
    report = await surveys.scheduler.tick()
    tick_s = time.perf_counter() - t0
    tick_cpu = await meter.stop()
    async with db.engine.connect() as conn:
        queued = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
    out["tick"] = {"seconds": round(tick_s, 2), **cpu_per(tick_cpu, 1, "", "_s", 1), **report.as_dict(), "outbox_items": queued,
                   "history_setup_s": round(history_s, 1), "statuses_before": statuses}

    # 4. The panel for one operator, many times: right after the tick, and again once
    #    the table is vacuumed (PostgreSQL's index-only scans need the visibility map
    #    that the tick's 10,000 updates just cleared; autovacuum restores it within a
    #    minute, given migration 0004's scale factor, where it is on: this machine's
    #    PostgreSQL has it off).
    out["panel"] = await panel_timings(surveys, args, now, tz)
    if db.dialect == "postgresql":
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE rule_instances"))
        out["panel_after_vacuum"] = await panel_timings(surveys, args, now, tz)
    return out


async def panel_timings(surveys: Surveys, args: argparse.Namespace, now: datetime, tz: ZoneInfo) -> dict[str, object]:
    rng = random.Random(3)
    operators = [f"op{k:03d}" for k in range(args.operators)]
    timings: dict[str, list[float]] = {"operator": [], "operator_and_seller": [], "seller_scores_month": []}
    cpu: dict[str, list[float]] = {name: [] for name in timings}  # this process's CPU per call

    async def timed(name: str, call):
        c0, t0 = time.process_time(), time.perf_counter()
        value = await call
        timings[name].append((time.perf_counter() - t0) * 1000)
        cpu[name].append((time.process_time() - c0) * 1000)
        return value

    sample = None
    for _ in range(args.queries):
        op = rng.choice(operators)
        sample = await timed("operator", surveys.panel.panel(PanelFilter(operator=op)))
        await timed("operator_and_seller",
                    surveys.panel.panel(PanelFilter(operator=op, seller=f"seller{rng.randrange(SELLERS):02d}")))
    first = (now - timedelta(days=90)).astimezone(tz).date()
    for _ in range(max(5, args.queries // 20)):
        scores = await timed("seller_scores_month", surveys.panel.seller_scores(
            PanelFilter(date_from=first, date_to=first + timedelta(days=30))))
    result: dict[str, object] = {
        name: {"p50_ms": round(statistics.median(v), 2), "p95_ms": round(p(v, 0.95), 2),
               "max_ms": round(max(v), 2), "runs": len(v),
               "client_cpu_p50_ms": round(statistics.median(cpu[name]), 2)} for name, v in timings.items()}
    result["sample_counts"] = sample["counts"] if sample else None
    result["sellers_scored"] = len(scores)
    result["target_p95_ms"] = 50
    result["target_met"] = p(timings["operator"], 0.95) < 50
    return result


def cpu_per(used: dict[str, float | None], n: int, prefix: str, suffix: str, scale: float) -> dict[str, float | None]:
    """``CpuMeter.stop()``'s figures per item: client, server (PostgreSQL) and their sum."""
    client, server = used["client_cpu_s"], used["server_cpu_s"]
    per = lambda seconds: None if seconds is None else round(seconds * scale / max(1, n), 3)  # noqa: E731
    return {f"{prefix}client_cpu{suffix}": per(client), f"{prefix}server_cpu{suffix}": per(server),
            f"{prefix}cpu{suffix}": per(client + (server or 0.0))}


def _bind(db: Database, value: datetime) -> object:
    # Raw SQL bypasses UTCDateTime: SQLite stores naive UTC text, PostgreSQL an aware value.
    return value.replace(tzinfo=None).isoformat(sep=" ") if db.is_sqlite else value


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--operators", type=int, default=200)
    parser.add_argument("--queries", type=int, default=200)
    add_database_argument(parser)
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "surveys", "sales": args.sales, "customers": args.customers,
                              "operators": args.operators}
    out.update(await on_each_database(args.only, lambda db: run_one(db, args)))
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
