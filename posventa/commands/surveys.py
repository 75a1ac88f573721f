"""CLI: ``posventa import sales FILE.csv``, ``posventa import catalog FILE.toml`` and
``posventa surveys tick`` (and ``posventa demo``). They work on the database directly (a running ``serve``
picks the queued questions up from the outbox), with a progress bar and a summary
table; a bad file is one clear message and a non-zero exit status."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from posventa.core.config import Config
from posventa.commands import open_parts


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _file(path: str, what: str) -> Path:
    from posventa.core.errors import ValidationError

    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"{path}: no such {what} file")
    return p


# --- import sales -------------------------------------------------------------------------


def _sales_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.csv", help="columns: external_id, closed_at, product, seller, "
                   "customer_name, email, telegram_id, webchat_session, phone, language")
    p.add_argument("--chunk", type=int, default=2000, help="sales per transaction (default 2000)")


def run_import_sales(args: argparse.Namespace, config: Config) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table


    path = _file(args.file, "CSV")
    console = _console()

    async def run() -> Any:
        async with open_parts(config) as parts:
            surveys = parts.surveys()
            with Progress(TextColumn("importing {task.description}"), BarColumn(), DownloadColumn(),
                          TimeRemainingColumn(), console=console, transient=True,
                          disable=not console.is_terminal) as progress:
                task = progress.add_task(path.name, total=path.stat().st_size)
                return await surveys.sales.import_csv(
                    path, chunk_size=max(1, min(args.chunk, 10_000)),
                    on_progress=lambda done, total: progress.update(task, completed=done, total=total))

    report = asyncio.run(run())
    table = Table(title=f"sales from {path.name}", show_header=False)
    for label, value in (("rows", report.rows), ("created", report.created), ("duplicates (already imported)",
                         report.duplicates), ("survey windows", report.instances), ("rejected", report.error_count)):
        table.add_row(label, str(value))
    console.print(table)
    if report.errors:
        errors = Table(title="rejected rows (nothing of them was written)")
        errors.add_column("line", justify="right")
        errors.add_column("external id")
        errors.add_column("reason")
        for e in report.errors:
            errors.add_row(str(e.where), e.external_id or "", e.reason)
        console.print(errors)
        if report.error_count > len(report.errors):
            console.print(f"… and {report.error_count - len(report.errors)} more")
        # The status says it to scripts; this line to whoever reads only the end.
        print(f"posventa: {report.error_count} of {report.rows} rows rejected (the others were imported; "
              "importing the fixed file again skips them as duplicates)", file=sys.stderr)
        return 1
    return 0


# --- import catalog -----------------------------------------------------------------------


def _catalog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.toml", help="[[questions]], [[rules]], [[profiles]], [[products]]")


def run_import_catalog(args: argparse.Namespace, config: Config) -> int:
    from rich.table import Table


    path = _file(args.file, "TOML")
    console = _console()

    async def run() -> dict[str, int]:
        async with open_parts(config) as parts:
            surveys = parts.surveys()
            return await surveys.catalog.import_toml(path.read_bytes(), source=path.name)

    counts = asyncio.run(run())
    table = Table(title=f"catalog from {path.name} (created or updated)", show_header=False)
    for key, value in counts.items():
        table.add_row(key, str(value))
    console.print(table)
    return 0


# --- surveys tick ---------------------------------------------------------------------------


def _tick_args(p: argparse.ArgumentParser) -> None:
    pass


def run_tick(args: argparse.Namespace, config: Config) -> int:
    from rich.table import Table


    console = _console()

    async def run() -> Any:
        async with open_parts(config) as parts:
            surveys = parts.surveys()
            with console.status("opening and expiring survey windows…"):
                return await surveys.scheduler.tick()

    report = asyncio.run(run())
    table = Table(title="survey tick", show_header=False)
    table.add_row("opened", str(report.opened) + (
        f" ({', '.join(f'{k}: {v}' for k, v in sorted(report.by_channel.items()))})" if report.by_channel else ""))
    table.add_row("reminded", str(report.reminded))
    table.add_row("expired", str(report.expired))
    table.add_row("no reachable channel (paused)", str(report.unreachable))
    console.print(table)
    return 0


# --- demo -------------------------------------------------------------------------------------

EXAMPLE_CATALOG = Path(__file__).resolve().parents[2] / "examples" / "catalog.toml"


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", metavar="FILE.toml", default=str(EXAMPLE_CATALOG),
                   help="the catalog to load first (default: examples/catalog.toml)")


def run_demo(args: argparse.Namespace, config: Config) -> int:
    from rich.table import Table

    from posventa.core.surveys.demo import load_demo

    path = _file(args.catalog, "TOML")
    console = _console()

    async def run() -> Any:
        async with open_parts(config) as parts:
            surveys = parts.surveys()
            return await load_demo(surveys, catalog_toml=path.read_bytes(), now=parts.clock.now())

    report = asyncio.run(run())
    table = Table(title="demo data, dated from today", show_header=False)
    table.add_row("catalog (created or updated)", ", ".join(f"{v} {k}" for k, v in report.catalog.items()))
    table.add_row("sales", f"{report.sales_created} new" + (
        f", {report.sales_already_there} already there (ran today before)" if report.sales_already_there else ""))
    table.add_row("surveys answered by an operator", str(report.answered))
    table.add_row("survey windows opened now", str(report.tick.opened))
    console.print(table)
    panel = Table(title="the manager panel now shows")
    for column in ("my rules (open now)", "executed", "not executed", "inconsistencies"):
        panel.add_column(column, justify="right")
    panel.add_row(*(str(report.counts[k]) for k in ("my_rules", "executed", "not_executed", "inconsistencies")))
    console.print(panel)
    base = config.http.public_url.rstrip("/")
    console.print(f"Open {base}/console/panel (as a manager or admin); ?operator=ana shows one operator's rules.")
    return 0


COMMANDS = {
    ("", "demo"): ("load the example catalog and sales dated from today, for the survey panel", _demo_args,
                   run_demo),
    ("import", "sales"): ("import sales from a CSV file (idempotent by external_id)", _sales_args, run_import_sales),
    ("import", "catalog"): ("import survey questions, rules, profiles and products from TOML", _catalog_args,
                            run_import_catalog),
    ("surveys", "tick"): ("open, remind and expire survey windows now", _tick_args, run_tick),
}
