"""The narrow interfaces adapters receive. Adapters get a port, never the application."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from posventa.core.domain import ChannelName, InboundMessage, ClaimedDelivery, Receipt, Suggestion


@runtime_checkable
class Inbox(Protocol):
    """Where every channel hands customer messages.

    ``receive`` returns only after the message is committed; raise-through of
    ``StorageUnavailable`` means nothing was stored and the transport must say "try later".
    """

    async def receive(self, message: InboundMessage) -> Receipt: ...

    async def record_edit(self, channel: ChannelName, external_id: str, text: str) -> bool: ...

    async def open_case_of(self, contact_id: int) -> int | None:
        """The case a chat message of ``contact_id`` with no thread hint would join now."""
        ...


@runtime_checkable
class Channel(Protocol):
    """One outbound transport. ``send`` delivers one claimed outbox item.

    Returns the transport's id for the delivered message (or None), raises
    ``TransientDeliveryError`` / ``PermanentDeliveryError``. Never called inside a
    database transaction. A channel whose sends are much cheaper than the network's may
    set ``claim_batch``: how many items its outbox worker claims at once (default 50).
    """

    name: ChannelName

    async def send(self, message: ClaimedDelivery) -> str | None: ...


@runtime_checkable
class AnswerSuggester(Protocol):
    """Knowledge-base suggestions for a customer's text. Implemented by kb/."""

    async def suggest(self, text: str, *, language: str | None, limit: int) -> Sequence[Suggestion]: ...


class NullSuggester:
    """The suggester when no knowledge base is configured: never suggests anything."""

    async def suggest(self, text: str, *, language: str | None, limit: int) -> Sequence[Suggestion]:
        return ()


class Notifier(Protocol):
    """Small notifications between the ``posventa serve`` processes that share a database,
    best effort (ids, never content). Implemented by ``core.persistence.notify``
    (``LocalNotifier`` on SQLite, ``PgNotifier``: LISTEN/NOTIFY on PostgreSQL), handed to
    adapters by the composition root."""

    #: True when other processes hear what this one publishes.
    shared: bool

    def publish(self, topic: str, payload: str) -> None:
        """Queue ``payload`` for every subscriber of ``topic``; never blocks, never raises
        for a database problem (the notification is then lost)."""
        ...

    def subscribe(self, topic: str, callback: Callable[[str], None]) -> None: ...

    async def ready(self, timeout: float) -> bool:
        """Wait until notifications from other processes are heard; False on timeout."""
        ...

    async def flush(self, timeout: float) -> bool:
        """Wait until what was published before the call has been handed to the database
        (or given up on); False on timeout. After it, other processes' listeners hear it
        before anything this process commits later."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class TextTemplates(Protocol):
    """Renders the placeholders in agents' canned responses, in a sandbox: a body reaches
    nothing but ``variables`` (plain values), costs at most about its own length, and its
    output stops at ``max_chars``. Every refusal is a ValidationError naming ``field``.
    Implemented by intake/text_templates.py (Jinja2's SandboxedEnvironment)."""

    def check(self, body: str, *, field: str, variables: Collection[str]) -> None: ...

    def render(self, body: str, variables: Mapping[str, Any], *, field: str, max_chars: int) -> str: ...


class SystemClock:
    def now(self) -> datetime:
        from datetime import UTC

        return datetime.now(UTC)
