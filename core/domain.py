"""Domain vocabulary and the frozen values that cross the edge into core.

Adapters (bots/, intake/) translate whatever their SDK hands them into these values
before calling a port; nothing from telegram, aiosmtpd or aiohttp ever reaches core.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

LANGUAGES = ("es", "pt", "en")


class ChannelName(enum.StrEnum):
    EMAIL = "email"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    #: Cases an agent opens by hand (a phone call) and notes that never leave the house.
    API = "api"
    #: The agents' Telegram desk: mirror of customer traffic into per-case forum topics.
    DESK = "desk"
    #: Knowledge-base publishing (Discourse): queued like any other delivery.
    KB = "kb"


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"


class Author(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"
    #: Internal notes: stored on the case, never sent.
    NOTE = "note"


#: Messages that make a reply stale (core.cases' StaleReply): what the customer wrote and
#: what agents sent them (internal notes and the bot's automatic answers do not).
STALE_AUTHORS = (Author.CUSTOMER.value, Author.AGENT.value)


class CaseType(enum.StrEnum):
    UNCLASSIFIED = "unclassified"
    REQUEST = "request"
    COMPLAINT = "complaint"
    INCIDENT = "incident"


class Activity(enum.StrEnum):
    PRELIMINARY_ANALYSIS = "preliminary_analysis"
    DERIVED = "derived"
    ANSWER_SENT = "answer_sent"
    CLOSED = "closed"


class BudgetMode(enum.StrEnum):
    NOT_USED = "not_used"
    PRODUCTS_ONLY = "products_only"
    PRODUCTS_WITH_AMOUNTS = "products_with_amounts"


class KbAction(enum.StrEnum):
    PUBLISH = "publish"
    LINK = "link"
    NONE = "none"


class OutboxStatus(enum.StrEnum):
    """pretix's OutgoingMail statuses: the intent is stored before the side effect."""

    QUEUED = "queued"
    INFLIGHT = "inflight"
    AWAITING_RETRY = "awaiting_retry"
    SENT = "sent"
    FAILED = "failed"


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` without what no database text column takes: NUL (PostgreSQL refuses it)
    and lone surrogates (not encodable as UTF-8 at all). Such a message used to fail its
    insert as if storage were down, so the transport retried it, and stayed stuck, forever."""
    if not _UNSTORABLE.search(text):
        return text
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


_NO_META: Mapping[str, str] = MappingProxyType({})


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    # Most messages carry no meta: they share one empty read-only mapping.
    return MappingProxyType(dict(value)) if value else _NO_META


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """A file already written to the attachment store (content-addressed by sha256)."""

    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool = False


@dataclass(frozen=True, slots=True)
class OutgoingFile:
    """A file that goes out with a delivery (an agent's attachment): the ``attachments``
    row of the message it belongs to (``id``; None on a copy that has no message of its
    own, the desk's) and its bytes in the attachment store by sha256."""

    id: int | None
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ThreadHints:
    """What an inbound message says about the case it belongs to.

    Core decides what the hints are worth: a reply token is an unguessable capability,
    while references and a subject tag count only for the case's own contact.
    """

    reply_token: str | None = None
    references: tuple[str, ...] = ()
    case_number: int | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """A button the customer can press: a label shown, a value sent back."""

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class ChoiceAnswer:
    """A pressed button (or a numbered choice parsed by the adapter)."""

    question: str
    value: str


@dataclass(frozen=True, slots=True)
class Suggestion:
    title: str
    url: str
    score: float
    article_id: str = ""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One customer message, normalised at the edge.

    ``external_id`` is the transport's own id (an email Message-ID, a Telegram
    ``chat:message`` pair, a web chat client UUID); ``(channel, external_id)`` is unique,
    so a retried delivery stores nothing new.
    ``sender`` is the address on that channel (email address, Telegram user id, web chat
    session id).
    """

    channel: ChannelName
    external_id: str
    sender: str
    text: str
    sender_name: str | None = None
    language: str | None = None
    subject: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    thread: ThreadHints = ThreadHints()
    choice: ChoiceAnswer | None = None
    #: False when a loop guard fired (auto-reply, bounce, list mail): the message is
    #: stored, but nothing automatic is sent back.
    auto_reply_allowed: bool = True
    #: The customer asked for a new case explicitly (Telegram /new).
    new_case: bool = False
    #: Where the raw transport payload was kept (the raw .eml), relative to the data dir.
    raw_path: str | None = None
    received_at: datetime | None = None
    #: Channel-specific facts the channel needs later (e.g. the email Message-ID header).
    meta: Mapping[str, str] = field(default_factory=dict)
    #: The whole text when ``text`` is only what the customer newly wrote (an email reply
    #: without its quoted history and signature): kept for the agent, never parsed.
    original_text: str | None = None

    def __post_init__(self) -> None:
        if type(self.channel) is not ChannelName:
            object.__setattr__(self, "channel", ChannelName(self.channel))
        object.__setattr__(self, "meta", _frozen_mapping(self.meta))
        # Adapters clean what they can; this is the one place every channel passes.
        for name in ("external_id", "sender", "text", "sender_name", "subject", "original_text"):
            value = getattr(self, name)
            if isinstance(value, str) and _UNSTORABLE.search(value):
                object.__setattr__(self, name, storable(value))
        if not self.external_id:
            raise ValueError("InboundMessage.external_id is required")
        if not self.sender:
            raise ValueError("InboundMessage.sender is required")


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the inbox answers once a message is durable (after commit)."""

    message_id: int
    case_number: int | None
    duplicate: bool = False
    new_case: bool = False


@dataclass(frozen=True, slots=True)
class EmailThreading:
    """Headers an outbound email needs to thread in the customer's mail client."""

    message_id: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    reply_token: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """One delivery claimed from the outbox by a worker and handed to ``Channel.send``
    (the later stage of a ``core.outgoing.ComposedMessage``)."""

    outbox_id: int
    channel: ChannelName
    recipient: str
    text: str
    kind: str
    attempt: int = 1
    case_number: int | None = None
    case_title: str | None = None
    message_id: int | None = None
    language: str = "es"
    automatic: bool = False
    choices: tuple[Choice, ...] = ()
    question: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    email: EmailThreading | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    #: Files sent with the text (an agent's attachments), in the order the agent gave them.
    files: tuple[OutgoingFile, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel", ChannelName(self.channel))
        object.__setattr__(self, "extra", _frozen_mapping(self.extra))
