"""Business-hours calendars edited by admins (the console), over the ones in config.

An edited calendar is stored whole in ``calendar_overrides`` (the config's fields: time
zone, weekly spans, holiday country and subdivision, custom closed and open days) and
replaces config's calendar of that name, or adds one. It is checked by the same rules
as config at start-up (core.business_hours.build_calendar; a wrong value is refused
naming its field), and the SLA setup is rebuilt from config plus every stored calendar
(core.sla.build_sla_setup), so policies, due times, the outside-hours notice and
assignment's hours use it at once.

Other processes: a save publishes on ``TOPIC`` (PostgreSQL NOTIFY through the service's
notifier) and each process reloads from the table; a notification lost while the
database restarts is made up by the reload every ``RELOAD_SECONDS`` (a periodic job).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import delete, select

from posventa.core.business_hours import WEEKDAYS, build_calendar
from posventa.core.errors import Conflict, NotFound, ValidationError, explain
from posventa.core.persistence import Database
from posventa.core.persistence.schema import calendar_overrides
from posventa.core.ports import Clock
from posventa.core.sla import SlaSetup, build_sla_setup
from posventa.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TOPIC = "calendars"
RELOAD_SECONDS = 60.0
#: A calendar's name: short and plain (it is a config key and a URL segment).
MAX_NAME = 80
MAX_DAYS = 400
FIELDS = ("timezone", "country", "subdivision", *WEEKDAYS, "closed_days", "open_days")


#: A calendar name as the rule ``valid_name`` states it, for the API's description (its
#: path segment and body field): no '/', no control character, no leading '.' (a path
#: segment "." or ".." is no name), something besides spaces.
NAME_PATTERN = r"^(?![.\s])[^/\x00-\x1f\x7f]*[^/\s\x00-\x1f\x7f]$"


def valid_name(name: object) -> bool:
    """Whether ``name`` may name a calendar (it is a config key and a URL path segment)."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME and name == name.strip()
            and re.fullmatch(NAME_PATTERN, name) is not None)


def check_definition(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A calendar's fields from outside, normalised and checked as config is; a
    ``ValidationError`` naming the field (``timezone``, ``mon``, ``country``…) otherwise."""
    if not valid_name(name):
        raise ValidationError(explain("calendar_name", "a calendar name is 1-%(max)s characters, without '/' or "
                                      "control characters, not starting with '.'", max=MAX_NAME), field="name")
    out: dict[str, Any] = {}
    for key in ("timezone", "country", "subdivision"):
        value = data.get(key, "")
        if not isinstance(value, str) or len(value) > 64:
            raise ValidationError(explain("calendar_text_too_long", "must be text of at most 64 characters"), field=key)
        out[key] = value.strip()
    if not out["timezone"]:
        raise ValidationError(explain("calendar_timezone_missing", "a calendar needs a time zone"), field="timezone")
    for key in (*WEEKDAYS, "closed_days", "open_days"):
        value = data.get(key, [])
        if not isinstance(value, list | tuple) or len(value) > MAX_DAYS or \
                not all(isinstance(v, str) and len(v) <= 200 for v in value):
            raise ValidationError(explain("calendar_days_too_many", "must be a list of at most %(max)s texts",
                                          max=MAX_DAYS), field=key)
        out[key] = [v.strip() for v in value if v.strip()]
    try:
        build_calendar(name=name, timezone=out["timezone"], weekly={d: out[d] for d in WEEKDAYS},
                       country=out["country"], subdivision=out["subdivision"], closed_days=out["closed_days"],
                       open_days=out["open_days"], field_prefix="calendar")
    except ValidationError as exc:
        # "calendar.mon" → "mon": the field as the form and the API name it.
        field = (exc.field or "").removeprefix("calendar.")
        # "Never open" names the whole calendar: the weekly hours are what to fix.
        raise ValidationError(exc.error_text or str(exc), field=field if field in FIELDS else "mon") from None
    return out


class CalendarEditor:
    """Reads and saves edited calendars, and applies config plus them to the running parts."""

    def __init__(self, *, db: Database, clock: Clock, config: Any, apply: Callable[[SlaSetup], None],
                 publish: Callable[[str, str], None] = lambda _topic, _payload: None) -> None:
        self._db = db
        self._clock = clock
        self._config = config
        self._apply = apply
        self._publish = publish
        self._reloads: set[asyncio.Task[None]] = set()

    def configured(self) -> dict[str, dict[str, Any]]:
        """Config's calendars, as definitions."""
        from posventa.core.config import CalendarConfig  # the built-in default calendar's values

        out = {}
        for c in self._config.calendars or (CalendarConfig(),):
            out[c.name] = {"timezone": c.timezone, "country": c.country, "subdivision": c.subdivision,
                           **{d: list(getattr(c, d)) for d in WEEKDAYS},
                           "closed_days": list(c.closed_days), "open_days": list(c.open_days)}
        return out

    async def stored(self) -> dict[str, dict[str, Any]]:
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(calendar_overrides.c.name, calendar_overrides.c.definition)
                                      .order_by(calendar_overrides.c.name))
            return {r.name: dict(r.definition) for r in rows}

    async def list(self) -> list[dict[str, Any]]:
        """Every calendar in effect: config's, with the edited ones over them."""
        stored = await self.stored()
        configured = self.configured()
        merged = {**configured, **stored}
        return [{"name": name, "edited": name in stored, "configured": name in configured, **definition}
                for name, definition in sorted(merged.items())]

    async def get(self, name: str) -> dict[str, Any]:
        """The calendar in effect under ``name``; ``NotFound`` if there is none."""
        found = next((c for c in await self.list() if c["name"] == name), None)
        if found is None:
            raise NotFound(explain("calendar_not_found", "no calendar named %(name)r", name=name))
        return found

    async def save(self, name: str, data: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        """Store ``name``'s definition (a new calendar, or over config's or a stored one):
        the console's form, which creates and edits alike."""
        return await self._store(name.strip() if isinstance(name, str) else name, data, actor=actor)

    async def create(self, name: str, data: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        """A new calendar; a name already in effect is refused (``ValidationError`` on ``name``)."""
        if any(c["name"] == name for c in await self.list()):
            raise ValidationError(explain("calendar_name_taken", "a calendar named %(name)r exists already; change it "
                                          "instead", name=name), field="name")
        return await self._store(name, data, actor=actor, only_new=True)

    async def update(self, name: str, data: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        """The fields given replace ``name``'s (config's or a stored one); the others stay."""
        current = await self.get(name)
        return await self._store(name, {**{key: current[key] for key in FIELDS}, **{
            key: value for key, value in data.items() if key in FIELDS}}, actor=actor)

    async def delete(self, name: str, *, actor: str) -> dict[str, Any] | None:
        """Remove ``name``'s stored definition: config's calendar of that name is in effect
        again (returned), or, for a calendar only stored, there is none (None). A calendar
        only config defines, or that a policy needs, is refused (``Conflict``)."""
        stored = await self.stored()
        if name not in stored:
            if name in self.configured():
                raise Conflict(explain("calendar_in_config", "calendar %(name)r is defined in the configuration "
                                       "([[calendars]]); change it there, or change it here to override it",
                                       name=name))
            raise NotFound(explain("calendar_not_found", "no calendar named %(name)r", name=name))
        try:
            setup = self._setup({k: v for k, v in stored.items() if k != name})
        except ValidationError as exc:
            raise Conflict(explain("calendar_needed", "calendar %(name)r is still needed (%(field)s: %(reason)s)",
                                   name=name, field=exc.field, reason=str(exc))) from None
        async with self._db.transaction() as conn:
            gone = (await conn.execute(delete(calendar_overrides).where(calendar_overrides.c.name == name))).rowcount
        if not gone:  # another process removed it meanwhile
            raise NotFound(explain("calendar_not_found", "no calendar named %(name)r", name=name))
        self._apply(setup)
        self._publish(TOPIC, name)
        log.info("calendars: %r deleted by %r", name, actor)
        return next((c for c in await self.list() if c["name"] == name), None)

    async def _store(self, name: str, data: Mapping[str, Any], *, actor: str, only_new: bool = False
                     ) -> dict[str, Any]:
        definition = check_definition(name, data)
        setup = self._setup({**await self.stored(), name: definition})
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as upsert
            else:
                from sqlalchemy.dialects.sqlite import insert as upsert
            stmt = upsert(calendar_overrides).values(name=name, definition=definition, updated_at=now,
                                                     updated_by=actor[:120])
            if only_new:
                # Two creations of one name at once: the second finds the first's row.
                if not (await conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))).rowcount:
                    raise ValidationError(explain("calendar_name_taken", "a calendar named %(name)r exists already; "
                                                  "change it instead", name=name), field="name")
            else:
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=["name"], set_={"definition": stmt.excluded.definition,
                                                   "updated_at": stmt.excluded.updated_at,
                                                   "updated_by": stmt.excluded.updated_by}))
        self._apply(setup)
        self._publish(TOPIC, name)
        log.info("calendars: %r edited by %r", name, actor)
        return {"name": name, "edited": True, "configured": name in self.configured(), **definition}

    async def reload(self) -> None:
        """Config plus the stored calendars, applied (at start, on another process's save,
        and periodically). A stored calendar config no longer accepts is logged, skipped."""
        stored = await self.stored()
        try:
            setup = self._setup(stored)
        except ValidationError as exc:
            log.error("calendars: the edited calendars no longer fit the config (%s: %s); config's stay in use",
                      exc.field, exc)
            return
        self._apply(setup)

    async def start(self) -> None:
        """Before anything else runs: the first case after a restart already follows the
        edited calendars."""
        await self.reload()

    async def stop(self) -> None:
        await cancel_and_wait(list(self._reloads))

    def on_notification(self, _payload: str) -> None:
        """Another process saved a calendar: reload (in a task: the notifier's callback is sync)."""
        task = asyncio.get_running_loop().create_task(self._reload_logged())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception:  # the periodic reload makes up for it
            log.exception("calendars: reload after another process's edit failed")

    def _setup(self, stored: Mapping[str, Mapping[str, Any]]) -> SlaSetup:
        from posventa.core.config import CalendarConfig

        configured = {c.name: c for c in (self._config.calendars or (CalendarConfig(),))}
        for name, d in stored.items():
            configured[name] = CalendarConfig(
                name=name, timezone=d["timezone"], country=d.get("country", ""), subdivision=d.get("subdivision", ""),
                **{day: tuple(d.get(day, ())) for day in WEEKDAYS},
                closed_days=tuple(d.get("closed_days", ())), open_days=tuple(d.get("open_days", ())))
        return build_sla_setup(dataclasses.replace(self._config, calendars=tuple(configured.values())))
