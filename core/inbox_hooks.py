"""What the inbox hands to the parts of core that own a conversation with the customer.

The inbox (``core.inbox``) only stores and threads messages; the answers belong to the
part of core whose question it is:

- ``ConversationHook``: something that may own a customer's next message altogether (a
  running survey: ``core.surveys.runner``);
- ``ChoiceAnswers``: the answer to a button the bot itself asked, ``"<question>:<case>"``:
  the case type (``core.case_type_question``) and "did this solve it?" after KB
  suggestions (``core.suggestions``);
- ``StoredMessage``: what listeners are told after each commit.

Kept apart from ``core.inbox`` so those owners import these types without importing the
inbox that wires them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.outgoing import ComposedMessage, Recipient
from posventa.core.texts import text


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """Told to listeners after commit (console live updates, KB suggestions, metrics)."""

    message_id: int
    case_id: int | None
    contact_id: int
    channel: ChannelName
    new_case: bool
    text: str
    language: str
    auto_reply_allowed: bool


@dataclass(slots=True)
class HookContext:
    """What a conversation hook sees of one inbound message, inside the batch transaction."""

    conn: AsyncConnection
    message: InboundMessage
    contact_id: int
    identity_id: int
    language: str
    now: datetime
    outgoing: list[ComposedMessage] = field(default_factory=list)
    #: A consumed message joins no case, unless the hook files it under this one (a
    #: survey answer that opened, or belongs to, the survey's detractor case).
    case_id: int | None = None


class ConversationHook(Protocol):
    """Something that may own a customer's next message (a running survey)."""

    async def active_contacts(self, conn: AsyncConnection, contact_ids: Collection[int]) -> set[int]: ...

    async def handle(self, ctx: HookContext) -> bool:
        """Return True when the message was consumed (it then joins no case)."""
        ...


@dataclass(frozen=True, slots=True)
class AnsweredCase:
    """The case a button answer is about (always the answering contact's own)."""

    id: int
    contact_id: int
    case_type: str
    activity: str
    title: str
    reply_token: str
    self_served: bool


@dataclass(frozen=True, slots=True)
class ChoiceContext:
    """One button answer, inside the batch transaction."""

    conn: AsyncConnection
    message: InboundMessage
    case: AnsweredCase
    recipient: Recipient
    language: str
    now: datetime

    @property
    def value(self) -> str:
        assert self.message.choice is not None
        return self.message.choice.value

    def say(self, key: str, **extra: Any) -> ComposedMessage:
        """The bot's answer in the case, in the customer's language (``core.texts`` ``key``)."""
        return ComposedMessage(recipient=self.recipient, kind="bot", case_id=self.case.id, case_title=self.case.title,
                               language=self.language, reply_token=self.case.reply_token,
                               text=text(key, self.language, number=self.case.id, **extra))


class ChoiceAnswers(Protocol):
    """Answers the buttons of one question the bot asks (``question`` is its name)."""

    question: str

    async def answer(self, ctx: ChoiceContext) -> list[ComposedMessage]: ...
