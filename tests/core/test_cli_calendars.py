"""``posventa calendars list|show``: the calendars in effect, config's and the edits over
them, read from either database."""

from __future__ import annotations

import asyncio
import json

from posventa.core.calendars import CalendarEditor
from posventa.core.config import Config
from posventa.core.persistence import Database
from posventa.commands.calendars import weekly_hours
from tests.core.test_cli import run
from tests.support import FakeClock, toml_text

WEEK = {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


async def _edit(url: str) -> None:
    db = Database(url)
    try:
        editor = CalendarEditor(db=db, clock=FakeClock(), config=Config(), apply=lambda _setup: None)
        await editor.save("Oficina SP", {"timezone": "America/Sao_Paulo", "country": "BR", "subdivision": "SP",
                                         **WEEK, "sat": ["09:00-13:00"], "closed_days": ["2026-12-24"]},
                          actor="test")
    finally:
        await db.dispose()


async def test_list_and_show(database_url, tmp_path):
    (tmp_path / "posventa.toml").write_text(toml_text({"database": {"url": database_url}}))
    await _edit(database_url)
    listed = await asyncio.to_thread(run, "calendars", "list", "--config", "posventa.toml", cwd=tmp_path,
                                     env={"COLUMNS": "200"})
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    lines = listed.stdout.splitlines()
    assert "2 calendars" in lines[0]
    [sp] = [line for line in lines if "Oficina SP" in line]
    assert "America/Sao_Paulo" in sp and "BR-SP" in sp and "mon-fri 09:00-18:00; sat 09:00-13:00" in sp
    assert "edited" in sp
    [default] = [line for line in lines if "default" in line]
    assert "config" in default

    shown = await asyncio.to_thread(run, "calendars", "show", "Oficina SP", "--config", "posventa.toml", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    calendar = json.loads(shown.stdout)
    assert calendar["name"] == "Oficina SP" and calendar["sat"] == ["09:00-13:00"]
    assert calendar["closed_days"] == ["2026-12-24"] and calendar["edited"] is True

    missing = await asyncio.to_thread(run, "calendars", "show", "nope", "--config", "posventa.toml", cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.strip() == "posventa: no calendar named 'nope'"


def test_weekly_hours_groups_days_with_the_same_hours():
    closed = {d: [] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    assert weekly_hours(closed) == "closed"
    split = ["09:00-13:00", "14:00-18:00"]
    assert weekly_hours({**closed, "mon": split, "tue": split, "wed": ["09:00-18:00"], "sat": ["10:00-12:00"]}) == \
        "mon-tue 09:00-13:00, 14:00-18:00; wed 09:00-18:00; sat 10:00-12:00"
