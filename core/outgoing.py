"""Recording what we send: an outbound ``messages`` row plus its outbox item, in the
caller's transaction. Nothing is sent here; the outbox workers send after commit.

The two stages of a reply have a type each: a ``ComposedMessage`` (here) is written by
core and not yet queued (no ids); a ``ClaimedDelivery`` (``core.domain``) is the outbox
item a worker claimed and hands to ``Channel.send``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import (
    AttachmentRef,
    Author,
    ChannelName,
    Choice,
    Direction,
    EmailThreading,
    ClaimedDelivery,
    OutboxStatus,
    OutgoingFile,
    Suggestion,
)
from posventa.core.case_threading import notice_message_id
from posventa.core.persistence.bulk import insert_ids
from posventa.core.persistence.schema import attachments, messages, outbox

#: Channels whose deliveries are customer-visible messages (stored in ``messages``).
CUSTOMER_CHANNELS = frozenset({ChannelName.EMAIL, ChannelName.TELEGRAM, ChannelName.WEBCHAT})


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: ChannelName
    address: str
    identity_id: int | None = None
    contact_id: int | None = None


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    """A message for a customer (or the desk, or the KB) as core composed it, before it
    is queued (no message or outbox id yet)."""

    recipient: Recipient
    text: str
    kind: str
    case_id: int | None = None
    case_title: str | None = None
    author: Author = Author.BOT
    author_name: str | None = None
    language: str = "es"
    automatic: bool = True
    choices: tuple[Choice, ...] = ()
    question: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    #: Email threading: what the customer's client will see as the parent.
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    reply_token: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    #: Delay the first attempt (e.g. web chat's email fallback).
    not_before: datetime | None = None
    #: For the team, not the customer (an agent's notification): no message on the case.
    internal: bool = False
    #: Files already in the attachment store that go with the text (an agent's
    #: attachments): recorded on the message (``attachments`` rows) and carried by the
    #: delivery, so a retry sends the same files.
    files: tuple[AttachmentRef, ...] = ()


class Outgoing:
    """Writes outbound messages and outbox items inside the caller's transaction."""

    def __init__(self, *, email_domain: str, max_attempts: int) -> None:
        self._email_domain = email_domain
        self._max_attempts = max_attempts

    def new_email_message_id(self) -> str:
        # Random and stored with the outbox item, so every retry reuses it and a
        # receiving MTA can drop duplicates; unguessable so it cannot be forged into a
        # stranger's thread.
        return f"<pv.{secrets.token_urlsafe(15)}@{self._email_domain}>"

    def new_notice_message_id(self) -> str:
        # Of a form the email intake recognises (core.case_threading): a reply to a
        # notice is the team's, never a customer's.
        return notice_message_id(secrets.token_urlsafe(15), self._email_domain)

    async def add(self, conn: AsyncConnection, items: Sequence[ComposedMessage], *, now: datetime) -> list[int]:
        """Store ``items``; returns the outbox ids, in order."""
        if not items:
            return []
        message_rows: list[dict[str, Any]] = []
        message_slots: list[int] = []
        email_ids: dict[int, str] = {}
        extras = [_message_extra(item) for item in items]  # the message row's and the payload's
        for index, item in enumerate(items):
            if item.recipient.channel == ChannelName.EMAIL:
                email_ids[index] = self.new_notice_message_id() if item.internal else self.new_email_message_id()
            if item.recipient.channel in CUSTOMER_CHANNELS and not item.internal:
                message_slots.append(index)
                message_rows.append(
                    {
                        "case_id": item.case_id,
                        "contact_id": item.recipient.contact_id,
                        "identity_id": item.recipient.identity_id,
                        "channel": item.recipient.channel.value,
                        "direction": Direction.OUT.value,
                        "author": item.author.value,
                        "author_name": item.author_name,
                        # Email: our Message-ID, so replies thread back by In-Reply-To.
                        "external_id": email_ids.get(index) or f"out-{secrets.token_hex(12)}",
                        "text": item.text,
                        "extra": extras[index],
                        "created_at": now,
                    }
                )
        message_ids: dict[int, int] = {}
        if message_rows:
            for slot, mid in zip(message_slots, await insert_ids(conn, messages, message_rows), strict=True):
                message_ids[slot] = mid
        files = await _record_files(conn, items, message_ids)
        outbox_rows = []
        for index, item in enumerate(items):
            email = None
            if index in email_ids:
                email = {
                    "message_id": email_ids[index],
                    "in_reply_to": item.in_reply_to,
                    "references": list(item.references),
                    "reply_token": item.reply_token,
                }
            outbox_rows.append(
                {
                    "channel": item.recipient.channel.value,
                    "recipient": item.recipient.address,
                    "kind": item.kind,
                    "status": OutboxStatus.QUEUED.value,
                    "attempts": 0,
                    "max_attempts": self._max_attempts,
                    "next_attempt_at": item.not_before or now,
                    "case_id": item.case_id,
                    "message_id": message_ids.get(index),
                    "payload": _payload(item, email, extras[index], files.get(index)),
                    "created_at": now,
                }
            )
        return await insert_ids(conn, outbox, outbox_rows)


async def _record_files(conn: AsyncConnection, items: Sequence[ComposedMessage],
                        message_ids: dict[int, int]) -> dict[int, list[dict[str, Any]]]:
    """The ``attachments`` rows of the items' files (for those with a message row), and
    each item's files as its payload carries them (with the row ids), by item index."""
    rows: list[dict[str, Any]] = []
    owners: list[tuple[int, int]] = []  # (item index, position in its files)
    for index, item in enumerate(items):
        if index in message_ids:
            for position, ref in enumerate(item.files):
                owners.append((index, position))
                rows.append({"message_id": message_ids[index], "filename": ref.filename,
                             "content_type": ref.content_type, "size": ref.size, "sha256": ref.sha256,
                             "inline": False})
    ids = dict(zip(owners, await insert_ids(conn, attachments, rows), strict=True)) if rows else {}
    return {index: [{"id": ids.get((index, position)), "filename": ref.filename, "content_type": ref.content_type,
                     "size": ref.size, "sha256": ref.sha256} for position, ref in enumerate(item.files)]
            for index, item in enumerate(items) if item.files}


def _message_extra(item: ComposedMessage) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if item.suggestions:
        extra["suggestions"] = [
            {"title": s.title, "url": s.url, "score": round(s.score, 1), "article_id": s.article_id}
            for s in item.suggestions
        ]
    if item.choices:
        extra["choices"] = [{"label": c.label, "value": c.value} for c in item.choices]
    if item.question:
        extra["question"] = item.question
    return extra or None


def _payload(item: ComposedMessage, email: dict[str, Any] | None, extra: dict[str, Any] | None,
             files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "text": item.text,
        "case_number": item.case_id,
        "case_title": item.case_title,
        "language": item.language,
        "automatic": item.automatic,
        "author": item.author.value,
        "author_name": item.author_name,
    }
    if extra:
        payload.update(extra)
    if email:
        payload["email"] = email
    if item.extra:
        payload["extra"] = dict(item.extra)
    if files:
        payload["files"] = files
    return payload


def outbound_from_row(row: Mapping[str, Any]) -> ClaimedDelivery:
    """Rebuild the frozen value a channel receives from an outbox row."""
    p = row["payload"]
    email = p.get("email")
    return ClaimedDelivery(
        outbox_id=row["id"],
        channel=ChannelName(row["channel"]),
        recipient=row["recipient"],
        text=p.get("text", ""),
        kind=row["kind"],
        attempt=row["attempts"],
        case_number=p.get("case_number"),
        case_title=p.get("case_title"),
        message_id=row["message_id"],
        language=p.get("language", "es"),
        automatic=bool(p.get("automatic")),
        choices=tuple(Choice(c["label"], c["value"]) for c in p.get("choices", ())),
        question=p.get("question"),
        suggestions=tuple(
            Suggestion(s["title"], s["url"], float(s["score"]), s.get("article_id", "")) for s in p.get("suggestions", ())
        ),
        email=EmailThreading(
            message_id=email["message_id"],
            in_reply_to=email.get("in_reply_to"),
            references=tuple(email.get("references") or ()),
            reply_token=email.get("reply_token"),
        )
        if email
        else None,
        extra=p.get("extra") or {},
        files=tuple(OutgoingFile(f.get("id"), f["filename"], f["content_type"], int(f["size"]), f["sha256"])
                    for f in p.get("files", ())),
    )


async def email_thread_for_case(conn: AsyncConnection, case_id: int, *, limit: int = 10) -> tuple[str | None, tuple[str, ...]]:
    """(In-Reply-To, References) for a new email on ``case_id``: the customer's last
    inbound mail as the parent, and the case's recent Message-IDs as references."""
    rows = (
        await conn.execute(
            select(messages.c.external_id, messages.c.direction)
            .where(messages.c.case_id == case_id, messages.c.channel == ChannelName.EMAIL.value)
            .order_by(messages.c.id.desc())
            .limit(limit)
        )
    ).all()
    ids = [r.external_id for r in rows if r.external_id and r.external_id.startswith("<")]
    parent = next((r.external_id for r in rows if r.direction == Direction.IN.value and r.external_id), None)
    if parent is None and ids:
        parent = ids[0]
    return parent, tuple(reversed(ids))


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None, rand: float) -> timedelta:
    """Exponential backoff with full jitter; a server's ``retry_after`` is a floor."""
    exp = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = exp * (0.5 + rand / 2)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return timedelta(seconds=min(delay, cap if retry_after is None else max(cap, float(retry_after))))
