"""Agent notifications: "a case was assigned to you" (and the other events, as their
producers come), sent through the outbox like every other message, so they survive a
restart and are not sent twice.

Channels: a private Telegram message from the bot (to the agent's Telegram user id;
Telegram delivers it only to someone who has started the bot, and the outbox gives up
permanently otherwise) and email. Each agent has per-event, per-channel preferences in
``agent_states.notify``; missing entries take ``DEFAULTS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from core.assignment import Assigned
from core.domain import ChannelName
from core.errors import ValidationError
from core.outgoing import Outgoing, OutgoingMessage, Recipient
from core.persistence import Database
from core.persistence.schema import agent_states, cases
from core.ports import Clock

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
}


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
                 on_commit: Any = lambda: None) -> None:
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._language = language
        self._on_commit = on_commit

    async def on_assigned(self, done: Assigned) -> None:
        """Assignment listener: tell the agent, on each channel they want."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            agent = (await conn.execute(select(agent_states).where(agent_states.c.username == done.agent))).first()
            case = (await conn.execute(select(cases.c.id, cases.c.title).where(cases.c.id == done.case_id))).first()
            if agent is None or case is None:
                return
            wanted = preferences(agent.notify)[ASSIGNED]
            table = _TEXTS[ASSIGNED]
            body = (table.get(self._language) or table["es"]).format(
                number=case.id, title=case.title, url=f"{self._public_url}/console/cases/{case.id}")
            items = []
            if wanted["telegram"] and agent.telegram_user_id:
                items.append(Recipient(ChannelName.TELEGRAM, str(agent.telegram_user_id)))
            if wanted["email"] and agent.email:
                items.append(Recipient(ChannelName.EMAIL, agent.email))
            if not items:
                return
            await self._outgoing.add(conn, [
                OutgoingMessage(recipient=r, text=body, kind=KIND, case_id=case.id, case_title=case.title,
                                language=self._language, automatic=True, internal=True,
                                extra={"event": ASSIGNED, "agent": done.agent})
                for r in items], now=now)
        self._on_commit()
