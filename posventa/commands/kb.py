"""``posventa kb sync`` and ``posventa kb search``."""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from posventa.commands import open_parts
from posventa.core.config import Config
from posventa.core.errors import ConfigError


def _require_kb(config: Config) -> None:
    """Both commands need [kb]: the same one line (exit 2) for either."""
    if not config.kb.enabled:
        raise ConfigError("the knowledge base is disabled: set [kb] enabled = true", key="kb.enabled",
                          file=config.source)


def _add_sync_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--full", action="store_true", help="walk every topic (and drop deleted ones), not only bumped ones")


def _run_sync(args: argparse.Namespace, config: Config) -> int:
    from posventa.kb.discourse import DiscourseError

    _require_kb(config)
    console = Console()

    async def run() -> int:
        async with open_parts(config) as parts:
            kb = parts.kb()
            try:
                await kb.index.load()
                with Progress(SpinnerColumn(), TextColumn("[bold]KB sync"), BarColumn(), TextColumn("{task.completed} topics"),
                              TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
                    task = progress.add_task("", total=None)
                    report = await kb.sync.sync(
                        full=args.full,
                        progress=lambda n, title: progress.update(task, completed=n, description=title[:50]))
                if kb.index.semantic:
                    with Progress(SpinnerColumn(), TextColumn("[bold]Encoding KB passages"), TimeElapsedColumn(),
                                  console=console) as progress:
                        progress.add_task("", total=None)
                        await kb.index.encode_all()  # stored, so serve starts with every vector
            except DiscourseError as exc:
                console.print(f"[red]Discourse: {exc}[/red]")
                return 1
            finally:
                await kb.stop()
                await kb.close()
            console.print(f"{report.seen} topics seen, {report.updated} updated, {report.removed} removed"
                          f"{' (full walk)' if report.full else ''}; index has {len(kb.index)} articles.")
            return 0

    return asyncio.run(run())


def _add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="what a customer might write")
    p.add_argument("--limit", type=int, default=5)


def _run_search(args: argparse.Namespace, config: Config) -> int:
    from posventa.kb.index import KbIndex
    from posventa.kb.runtime import load_encoder

    _require_kb(config)

    async def run() -> int:
        async with open_parts(config) as parts:
            index = KbIndex(db=parts.db, encoder=load_encoder(config.kb))
            count = await index.load()
            if index.semantic:
                with Progress(SpinnerColumn(), TextColumn("[bold]Encoding KB passages"), TimeElapsedColumn(),
                              console=Console(stderr=True), transient=True) as progress:
                    progress.add_task("", total=None)
                    await index.encode_all()  # stored: the next search (and serve) reuse them
            found = await index.suggest(args.text, language=None, limit=max(1, min(args.limit, 50)))
        table = Table(title=f"{count} articles indexed; min_score = {config.kb.min_score}")
        for col in ("score", "shown", "title", "url"):
            table.add_column(col)
        for s in found:
            table.add_row(f"{s.score:.1f}", "yes" if s.score >= config.kb.min_score else "no", s.title, s.url)
        Console().print(table)
        return 0

    return asyncio.run(run())


COMMANDS = {
    ("kb", "sync"): ("pull the Discourse KB into the local index", _add_sync_args, _run_sync),
    ("kb", "search"): ("show the top suggestions for a text, with scores", _add_search_args, _run_search),
}
