"""Agent notifications: "a case was assigned to you" (and the other events, as their
producers come), sent through the outbox like every other message, so they survive a
restart and are not sent twice.

Channels: a private Telegram message from the bot (to the agent's Telegram user id;
Telegram delivers it only to someone who has started the bot, and the outbox gives up
permanently otherwise), email, and the browser: a notice handed, after the commit, to
``on_browser`` (the console's live stream shows it to that agent's open pages; with no
page open there is nobody to tell, so it is not queued). Each agent has per-event,
per-channel preferences in ``agent_states.notify``; missing entries take ``DEFAULTS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.assignment import Assigned
from posventa.core.domain import ChannelName
from posventa.core.errors import ValidationError
from posventa.core.outgoing import Outgoing, ComposedMessage, Recipient
from posventa.core.persistence import Database
from posventa.core.persistence.schema import agent_states, cases, users
from posventa.core.ports import Clock
from posventa.core.sla import add_breach
from posventa.core.texts import localized

log = logging.getLogger(__name__)

ASSIGNED = "assigned"
CUSTOMER_WROTE = "customer_wrote"
SLA_WARNING = "sla_warning"
SLA_BREACHED = "sla_breached"
EVENTS = (ASSIGNED, CUSTOMER_WROTE, SLA_WARNING, SLA_BREACHED)
NOTIFY_CHANNELS = ("telegram", "email", "browser")
#: What an agent gets until they say otherwise: everything on Telegram and in the
#: browser; email only for what needs acting on (assignments and breaches).
DEFAULTS: Mapping[str, Mapping[str, bool]] = {
    ASSIGNED: {"telegram": True, "email": True, "browser": True},
    CUSTOMER_WROTE: {"telegram": True, "email": False, "browser": True},
    SLA_WARNING: {"telegram": True, "email": False, "browser": True},
    SLA_BREACHED: {"telegram": True, "email": True, "browser": True},
}
KIND = "agent_notice"

_TEXTS: Mapping[str, Mapping[str, str]] = {
    ASSIGNED: {"es": "Te asignaron el caso #{number}: {title}\n{url}",
               "pt": "O caso #{number} foi atribuído a você: {title}\n{url}",
               "en": "Case #{number} was assigned to you: {title}\n{url}"},
    CUSTOMER_WROTE: {"es": "El cliente escribió en tu caso #{number}: {title}\n{url}",
                     "pt": "O cliente escreveu no seu caso #{number}: {title}\n{url}",
                     "en": "The customer wrote on your case #{number}: {title}\n{url}"},
    SLA_WARNING: {"es": "⏰ Caso #{number} ({title}): {target} vence a las {due}.\n{url}",
                  "pt": "⏰ Caso #{number} ({title}): {target} vence às {due}.\n{url}",
                  "en": "⏰ Case #{number} ({title}): {target} is due at {due}.\n{url}"},
    SLA_BREACHED: {"es": "🔴 Caso #{number} ({title}): venció {target} ({due}).\n{url}",
                   "pt": "🔴 Caso #{number} ({title}): {target} venceu ({due}).\n{url}",
                   "en": "🔴 Case #{number} ({title}): {target} breached ({due}).\n{url}"},
}
_TARGETS: Mapping[str, Mapping[str, str]] = {
    "first_response": {"es": "la primera respuesta", "pt": "a primeira resposta", "en": "first response"},
    "next_response": {"es": "la próxima respuesta", "pt": "a próxima resposta", "en": "next response"},
    "resolution": {"es": "la resolución", "pt": "a resolução", "en": "resolution"},
}


@dataclass(frozen=True)
class BrowserNotice:
    """One notification for an agent's open console pages."""

    agent: str
    event: str
    case: int
    #: In the agent's profile language (else the default): for a page that cannot do better.
    text: str
    #: What the page needs to say it in its reader's language and time zone instead: the
    #: case's title and, for SLA events, the target ("first_response"...) and due time (ISO).
    title: str = ""
    due_target: str = ""
    due_at: str = ""


def preferences(stored: Mapping[str, Any] | None) -> dict[str, dict[str, bool]]:
    """The effective preferences: the stored ones over the defaults."""
    out = {event: dict(channels) for event, channels in DEFAULTS.items()}
    for event, channels in (stored or {}).items():
        if event in out and isinstance(channels, Mapping):
            out[event].update({c: bool(v) for c, v in channels.items() if c in NOTIFY_CHANNELS})
    return out


def check_preferences(value: Any) -> dict[str, dict[str, bool]]:
    """``{"assigned": {"email": false}, ...}`` from outside; 422 naming the field otherwise."""
    if not isinstance(value, Mapping):
        raise ValidationError("notify must be an object of events", field="notify")
    out: dict[str, dict[str, bool]] = {}
    for event, channels in value.items():
        if event not in EVENTS:
            raise ValidationError(f"unknown event (one of {', '.join(EVENTS)})", field=f"notify.{event}")
        if not isinstance(channels, Mapping):
            raise ValidationError("must be an object of channels", field=f"notify.{event}")
        out[event] = {}
        for channel, on in channels.items():
            if channel not in NOTIFY_CHANNELS or not isinstance(on, bool):
                raise ValidationError(f"channels are {', '.join(NOTIFY_CHANNELS)}, each true or false",
                                      field=f"notify.{event}.{channel}")
            out[event][channel] = on
    return out


class AgentNotifier:
    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, public_url: str, language: str,
                 tz: ZoneInfo | Callable[[], ZoneInfo], on_commit: Any = lambda: None,
                 on_browser: Callable[[Sequence[BrowserNotice]], None] = lambda _notices: None) -> None:
        #: The zone due times are told in: a callable for the one in effect now (the
        #: service passes the notice calendar's, which an admin may change while running).
        self._tz = tz
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._language = language
        self._on_commit = on_commit
        self._on_browser = on_browser

    async def on_assigned(self, done: Assigned) -> None:
        """Assignment listener: tell the agent, on each channel they want. A case whose
        running target has already breached says so too: the SLA watch told its breach to
        whoever had the case then, and nobody when nobody had it (no agent free)."""
        browser: list[BrowserNotice] = []
        async with self._db.transaction() as conn:
            case = (await conn.execute(select(cases.c.id, cases.c.title, cases.c.due_at, cases.c.due_target,
                                              cases.c.sla_breach_seen_at).where(cases.c.id == done.case_id))).first()
            if case is None:
                return
            queued = await self.enqueue(conn, ASSIGNED, [(done.agent, case.id, case.title, {})], browser)
            if case.due_at is not None and case.sla_breach_seen_at == case.due_at:
                queued += await self.enqueue(conn, SLA_BREACHED, [(done.agent, case.id, case.title, self._due(case))],
                                             browser)
        self._after_commit(queued, browser)

    async def on_stored(self, stored: Sequence[Any]) -> None:
        """Inbox listener: customers' messages on cases someone has."""
        case_ids = sorted({s.case_id for s in stored if s.case_id is not None and not s.new_case})
        if not case_ids:
            return
        browser: list[BrowserNotice] = []
        async with self._db.transaction() as conn:
            rows = (await conn.execute(select(cases.c.id, cases.c.title, cases.c.assigned_agent).where(
                cases.c.id.in_(case_ids), cases.c.assigned_agent.is_not(None)))).all()
            queued = await self.enqueue(conn, CUSTOMER_WROTE, [(r.assigned_agent, r.id, r.title, {}) for r in rows],
                                        browser)
        self._after_commit(queued, browser)

    def _after_commit(self, queued: int, browser: Sequence[BrowserNotice]) -> None:
        if queued:
            self._on_commit()
        if browser:
            try:
                self._on_browser(browser)
            except Exception:  # a browser notice lost costs a popup, never the outbox's deliveries
                log.exception("agent notifications: could not hand the browser notices over")

    async def sweep(self, warn_before: timedelta) -> tuple[int, int]:
        """One pass of the SLA watch: warn the assigned agent of targets due within
        ``warn_before`` (once per due time) and record and tell breaches (once per due
        time: each target missed is added to ``sla_breaches``, the first also kept in
        ``sla_breached_*``). Each is one UPDATE … RETURNING along the ``due_at`` index:
        concurrent processes each get other rows, so nobody is told twice. Returns
        (warnings, breaches)."""
        now = self._clock.now()
        browser: list[BrowserNotice] = []
        async with self._db.transaction() as conn:
            warned = (await conn.execute(
                update(cases).where(cases.c.due_at > now, cases.c.due_at <= now + warn_before,
                                    cases.c.assigned_agent.is_not(None),
                                    or_(cases.c.sla_warned_at.is_(None), cases.c.sla_warned_at != cases.c.due_at))
                .values(sla_warned_at=cases.c.due_at)
                .returning(cases.c.id, cases.c.title, cases.c.assigned_agent, cases.c.due_target, cases.c.due_at)
            )).all()
            first = cases.c.sla_breached_target.is_(None)
            breached = (await conn.execute(
                update(cases).where(cases.c.due_at <= now, or_(cases.c.sla_breach_seen_at.is_(None),
                                                               cases.c.sla_breach_seen_at != cases.c.due_at))
                .values(sla_breach_seen_at=cases.c.due_at,
                        sla_breached_target=case((first, cases.c.due_target), else_=cases.c.sla_breached_target),
                        sla_breached_at=case((first, cases.c.due_at), else_=cases.c.sla_breached_at))
                .returning(cases.c.id, cases.c.title, cases.c.assigned_agent, cases.c.due_target, cases.c.due_at,
                           cases.c.sla_breaches)
            )).all()
            # The rows are this transaction's now (locked on PostgreSQL): adding to the
            # list read back is safe.
            listed = [{"b_id": r.id, "b_list": new} for r in breached
                      if (new := add_breach(r.sla_breaches, r.due_target, r.due_at)) is not None]
            if listed:
                await conn.execute(update(cases).where(cases.c.id == bindparam("b_id"))
                                   .values(sla_breaches=bindparam("b_list", type_=cases.c.sla_breaches.type)),
                                   listed)
            queued = await self.enqueue(conn, SLA_WARNING, [
                (r.assigned_agent, r.id, r.title, self._due(r)) for r in warned], browser)
            queued += await self.enqueue(conn, SLA_BREACHED, [
                (r.assigned_agent, r.id, r.title, self._due(r)) for r in breached if r.assigned_agent], browser)
        self._after_commit(queued, browser)
        return len(warned), len(breached)

    def _due(self, row: Any) -> dict[str, str]:
        # ``enqueue`` names the target in each agent's language.
        return {"due": row.due_at.astimezone(self._tz() if callable(self._tz) else self._tz).strftime("%H:%M %d/%m"),
                "due_target": row.due_target or "", "due_at": row.due_at.isoformat()}

    async def enqueue(self, conn: AsyncConnection, event: str,
                      items: Sequence[tuple[str, int, str, Mapping[str, str]]],
                      browser: list[BrowserNotice] | None = None) -> int:
        """Queue ``event`` for each (agent, case number, case title, text params), on the
        channels each agent wants; returns how many deliveries were queued. Browser
        notices go to ``browser``, for the caller to hand over once committed."""
        if not items:
            return 0
        agents = {r.username: r for r in await conn.execute(
            select(agent_states, users.c.language)
            .join(users, users.c.username == agent_states.c.username)
            .where(agent_states.c.username.in_(sorted({a for a, *_ in items}))))}
        out = []
        for agent_name, number, title, params in items:
            agent = agents.get(agent_name)
            if agent is None:
                continue
            # Each agent reads their notices in their profile's language; the desk's default otherwise.
            language = agent.language or self._language
            template = localized(_TEXTS[event], language)
            if "due_target" in params:
                names = _TARGETS.get(params["due_target"], {})
                params = {**params, "target": names.get(language) or names.get("es") or params["due_target"]}
            wanted = preferences(agent.notify)[event]
            body = template.format(number=number, title=title, url=f"{self._public_url}/console/cases/{number}",
                                   **params)
            if wanted["browser"] and browser is not None:
                # The page links the case itself: no URL in the text.
                browser.append(BrowserNotice(agent=agent_name, event=event, case=number,
                                             text=template.format(number=number, title=title, url="",
                                                                  **params).rstrip(),
                                             title=title, due_target=params.get("due_target", ""),
                                             due_at=params.get("due_at", "")))
            recipients = []
            if wanted["telegram"] and agent.telegram_user_id:
                recipients.append(Recipient(ChannelName.TELEGRAM, str(agent.telegram_user_id)))
            if wanted["email"] and agent.email:
                recipients.append(Recipient(ChannelName.EMAIL, agent.email))
            out += [ComposedMessage(recipient=r, text=body, kind=KIND, case_id=number, case_title=title,
                                    language=language, automatic=True, internal=True,
                                    extra={"event": event, "agent": agent_name}) for r in recipients]
        if out:
            await self._outgoing.add(conn, out, now=self._clock.now())
        return len(out)


class SlaWatch:
    """The periodic SLA sweep ``serve`` runs (through the ticker's ``tick()``)."""

    def __init__(self, *, notifier: AgentNotifier, warn_before: timedelta) -> None:
        self._notifier = notifier
        self._warn_before = warn_before

    async def tick(self) -> None:
        await self._notifier.sweep(self._warn_before)
