"""``posventa calendars list|show NAME``: the business-hours calendars in effect, config's
with the edits admins made in the console or through ``/api/v1/calendars`` over them
(core/calendars.py). Read-only: edits go through the console or the API, which apply
them to every running process at once."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from posventa.commands import open_parts
from posventa.core.business_hours import WEEKDAYS
from posventa.core.config import Config
from posventa.core.errors import NotFound


async def _with_editor(config: Config, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from posventa.core.calendars import CalendarEditor

    async with open_parts(config) as parts:
        # Nothing here edits: the running processes apply edits, this one only reads.
        return await work(CalendarEditor(db=parts.db, clock=parts.clock, config=parts.config,
                                         apply=lambda _setup: None))


def weekly_hours(calendar: dict[str, Any]) -> str:
    """"mon-fri 09:00-18:00; sat 09:00-13:00": days in a row with the same hours together,
    closed days left out ("closed" if every day is)."""
    groups: list[tuple[list[str], list[str]]] = []
    for day in WEEKDAYS:
        if groups and groups[-1][1] == calendar[day]:
            groups[-1][0].append(day)
        else:
            groups.append(([day], calendar[day]))
    shown = []
    for days, spans in groups:
        if spans:
            label = f"{days[0]}-{days[-1]}" if len(days) > 1 else days[0]
            shown.append(f"{label} {', '.join(spans)}")
    return "; ".join(shown) or "closed"


def _source(calendar: dict[str, Any]) -> str:
    if calendar["edited"]:
        return "edited, over config's" if calendar["configured"] else "edited"
    return "config"


def run_list(args: argparse.Namespace, config: Config) -> int:
    from rich.console import Console
    from rich.table import Table

    found = asyncio.run(_with_editor(config, lambda editor: editor.list()))
    table = Table(title=f"{len(found)} calendar{'' if len(found) == 1 else 's'}")
    for column in ("name", "time zone", "holidays", "weekly hours", "custom days", "from"):
        table.add_column(column)
    for c in found:
        holidays = "-".join(filter(None, (c["country"], c["subdivision"]))) or "none"
        custom = len(c["closed_days"]) + len(c["open_days"])
        table.add_row(c["name"], c["timezone"], holidays, weekly_hours(c), str(custom), _source(c))
    Console(highlight=False).print(table)
    return 0


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the calendar's name (`posventa calendars list` shows them)")


def run_show(args: argparse.Namespace, config: Config) -> int:
    try:
        calendar = asyncio.run(_with_editor(config, lambda editor: editor.get(args.name)))
    except NotFound as exc:
        print(f"posventa: {exc}", file=sys.stderr)
        return 1
    json.dump(calendar, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


COMMANDS = {
    ("calendars", "list"): ("list the business-hours calendars in effect", lambda _p: None, run_list),
    ("calendars", "show"): ("print one calendar as JSON (the API's form)", _show_arguments, run_show),
}
