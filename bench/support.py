"""What the database benchmarks share: a scratch database on each engine, migrated to the
head, latency percentiles, the machine's load, and one JSON object on stdout.

A benchmark script puts the repository first on ``sys.path`` (bench/email.py would shadow
the standard library's email package) and then imports this module::

    import sys
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[1])

    from bench.support import add_database_argument, on_each_database, percentiles, emit
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from posventa.core.persistence import Database, upgrade
from tests.support import PG_ADMIN_DSN, throwaway_pg_database

ENGINES = ("sqlite", "postgres")


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", choices=ENGINES, help="run on one engine only (default: both)")


@asynccontextmanager
async def scratch_url(engine: str) -> AsyncIterator[str]:
    """A URL to an empty database that is gone afterwards: a file in a temporary folder,
    or a PostgreSQL database of its own (dropped even if a connection was left open)."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="posventa-bench-") as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    async with throwaway_pg_database(prefix="pv_bench") as url:  # the tests' scratch database
        yield url


@asynccontextmanager
async def scratch_database(engine: str) -> AsyncIterator[Database]:
    """A scratch database (see ``scratch_url``) migrated to the head, as ``serve`` runs it."""
    async with scratch_url(engine) as url, _migrated(url) as db:
        yield db


@asynccontextmanager
async def _migrated(url: str) -> AsyncIterator[Database]:
    """The database at ``url`` migrated to the head, disposed of afterwards."""
    db = Database(url)
    try:
        await upgrade(db)
        yield db
    finally:
        await db.dispose()


def kept_location(engine: str, name: str) -> str:
    """Where ``kept_database`` keeps ``name``: a file in the temporary folder, or a
    PostgreSQL database on the benchmark server."""
    if engine == "sqlite":
        return str(Path(tempfile.gettempdir()) / f"posventa-bench-{name}.db")
    return f"pv_keep_{name}"


@asynccontextmanager
async def kept_database(engine: str, name: str) -> AsyncIterator[Database]:
    """A database that outlives the run (see ``kept_location``), created on first use and
    migrated to the head each time, so that a benchmark can fill it once and measure it
    again while its code changes. The benchmark decides whether what it holds is what it
    needs; delete the file or drop the database to start afresh."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"--keep {name!r}: letters, digits, '-' and '_' only")
    location = kept_location(engine, name)
    if engine == "sqlite":
        url = f"sqlite+aiosqlite:///{location}"
    else:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", location):
                await admin.execute(f'CREATE DATABASE "{location}"')
        finally:
            await admin.close()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{location}"
    async with _migrated(url) as db:
        yield db


async def on_each_database(only: str | None, run: Callable[[Database], Awaitable[dict[str, Any]]],
                           *, keep: str | None = None) -> dict[str, Any]:
    """``run`` on a fresh, migrated database of each engine (or of ``only``), one after the
    other; the results by engine, each with the machine's load before and after. With
    ``keep``, on that kept database instead (``kept_database``)."""
    results: dict[str, Any] = {}
    for engine in ENGINES if only is None else (only,):
        load_before = machine_load()
        async with scratch_database(engine) if keep is None else kept_database(engine, keep) as db:
            result = await run(db)
        results[engine] = {**result, "load_avg_before": load_before, "load_avg_after": machine_load()}
    return results


async def bulk_insert(db: Database, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Benchmark data in one go: PostgreSQL's COPY (through asyncpg), SQLite's executemany,
    each in a transaction of its own. The rows must all have the same keys; their values
    must be what the driver takes (aware datetimes, str, int)."""
    if not rows:
        return
    columns = list(rows[0])
    async with db.transaction() as conn:
        if db.is_sqlite:
            await conn.execute(table.insert(), list(rows))
            return
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(
            table.name, records=[tuple(r[c] for c in columns) for r in rows], columns=columns)


async def settle(db: Database) -> None:
    """After a bulk fill, what a running service's housekeeping would have done by the
    time anyone searches: on PostgreSQL, VACUUM ANALYZE (statistics for the planners, the
    GIN indexes' pending lists merged; this machine's server runs with autovacuum off); on
    SQLite, the WAL copied back into the database file and truncated (the checkpointer's
    passive checkpoints fall behind a sustained bulk load, and reads then go through a WAL
    of gigabytes)."""
    from sqlalchemy import text

    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)" if db.is_sqlite else "VACUUM ANALYZE"))


class CpuMeter:
    """CPU time spent on a piece of work: this process's (every thread: aiosqlite runs
    SQLite in one) and, on PostgreSQL, the server's backends for this database, read from
    /proc (the server runs on this machine). Unlike wall time, it hardly moves when other
    processes compete for the cores, so a ratio of two CPU times survives a busy machine."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._client = 0.0
        self._server: dict[int, float] = {}

    async def _backends(self) -> dict[int, float] | None:
        if self._db.is_sqlite:
            return None
        from sqlalchemy import text

        async with self._db.engine.connect() as conn:
            pids = [r[0] for r in await conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))]
        ticks = os.sysconf("SC_CLK_TCK")
        cpu: dict[int, float] = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None  # not this machine's server, or not readable
            cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return cpu

    async def start(self) -> None:
        self._server = await self._backends() or {}
        self._client = time.process_time()

    async def stop(self) -> dict[str, float | None]:
        client = time.process_time() - self._client
        server_now = await self._backends()
        server = None if server_now is None else sum(
            v - self._server.get(pid, 0.0) for pid, v in server_now.items())
        return {"client_cpu_s": round(client, 3), "server_cpu_s": None if server is None else round(server, 3)}


async def timed_calls(db: Database, calls: Sequence[Callable[[], Awaitable[Any]]],
                      labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Run each call in turn; wall-clock p50/p95/max in ms, and the CPU they cost: this
    process's per call (p50/p95: on SQLite, all of the query's work), and on PostgreSQL the
    server's mean per call (its backends' CPU is counted in 10 ms ticks, too coarse for one
    call). On a machine whose load exceeds its cores, wall-clock time is mostly waiting for
    a core: the CPU figures are what an idle machine would show, give or take I/O waits.
    With ``labels`` (one per call), also the wall-clock and CPU p50/p95 per label, and the
    server's mean per label (calls with one label should then run one after the other)."""
    wall: list[float] = []
    cpu: list[float] = []
    server_by_label: dict[str, float] = {}
    meter = CpuMeter(db)
    await meter.start()
    total_server = 0.0
    has_server = True
    for i, call in enumerate(calls):
        if labels is not None and i and labels[i] != labels[i - 1]:
            # Consecutive calls with one label: the server's CPU for that run of calls.
            used = (await meter.stop())["server_cpu_s"]
            has_server = used is not None
            if has_server:
                total_server += used
                server_by_label[labels[i - 1]] = server_by_label.get(labels[i - 1], 0.0) + used
            await meter.start()
        c0, t0 = time.process_time(), time.perf_counter()
        await call()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    used = (await meter.stop())["server_cpu_s"]
    has_server = has_server and used is not None
    if has_server and calls:
        total_server += used
        if labels is not None:
            server_by_label[labels[-1]] = server_by_label.get(labels[-1], 0.0) + used
    cpu_stats = percentiles(cpu)
    result: dict[str, Any] = {**percentiles(wall), "client_cpu_p50_ms": cpu_stats["p50_ms"],
                              "client_cpu_p95_ms": cpu_stats["p95_ms"]}
    if has_server and wall:
        result["server_cpu_mean_ms"] = round(total_server * 1000 / len(wall), 2)
    if labels is not None:
        result["by_label"] = {}
        for label in dict.fromkeys(labels):
            mine = [k for k, lb in enumerate(labels) if lb == label]
            mine_wall, mine_cpu = percentiles([wall[k] for k in mine]), percentiles([cpu[k] for k in mine])
            entry = {"p50_ms": mine_wall["p50_ms"], "p95_ms": mine_wall["p95_ms"],
                     "client_cpu_p50_ms": mine_cpu["p50_ms"], "client_cpu_p95_ms": mine_cpu["p95_ms"]}
            if has_server:
                entry["server_cpu_mean_ms"] = round(server_by_label.get(label, 0.0) * 1000 / len(mine), 2)
            result["by_label"][label] = entry
    return result


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 (nearest rank) and max of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0, "n": 0}
    n = len(ordered)
    p50 = ordered[(n - 1) // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {"p50_ms": round(p50, 2), "p95_ms": round(ordered[max(0, -(-n * 95 // 100) - 1)], 2),
            "max_ms": round(ordered[-1], 2), "n": n}


def machine_load() -> list[float]:
    """The 1, 5 and 15 minute load averages, as ``uptime`` shows them: the machine is
    shared, so every figure travels with the load it was measured under."""
    return [round(x, 2) for x in os.getloadavg()]


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one JSON object on stdout (run_all.py and compare.py read the last one)."""
    result = {**result, "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2, ensure_ascii=False), flush=True)
