"""Inbound mail: an aiosmtpd server on the service's own loop.

The hooks are thin and answer in SMTP's own vocabulary (aiosmtpd's handler contract):
``handle_RCPT`` rejects any recipient outside our support domains with ``550 5.7.1`` —
we are never an open relay — and ``handle_DATA`` answers ``250`` only after the message
is committed, ``451 4.3.0`` when storage failed (the sender's MTA retries), and a 5xx
for mail we will never accept. Routing is by envelope recipient: the reply token in
``support+<token>@domain`` is what threads a reply into its case (Zulip's gateway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, Envelope, Session

from posventa.core.attachments import AttachmentStore
from posventa.core.case_threading import replies_to_notice
from posventa.core.config import EmailConfig
from posventa.core.domain import AttachmentRef, ChannelName, InboundMessage, ThreadHints
from posventa.core.errors import StorageUnavailable
from posventa.core.logs import set_log_fields
from posventa.core.plain_text import one_line
from posventa.core.ports import Inbox
from posventa.intake.email.guards import SenderRateWindow, loop_guard
from posventa.intake.email.parse import (
    EmailLimits,
    EmailRejected,
    ParsedEmail,
    case_number_from_subject,
    parse_email,
    reply_token_from_address,
)

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 50
INLINE_PARSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    domains: tuple[str, ...]
    address: str
    limits: EmailLimits
    max_message_bytes: int
    auto_replies_per_sender_per_hour: int

    @classmethod
    def from_config(cls, c: EmailConfig) -> SmtpSettings:
        return cls(
            domains=tuple(d.lower().strip() for d in c.domains),
            address=c.address.lower(),
            limits=EmailLimits(max_attachment_bytes=c.max_attachment_bytes,
                               max_total_attachment_bytes=c.max_total_attachment_bytes,
                               max_message_bytes=c.max_message_bytes),
            max_message_bytes=c.max_message_bytes,
            auto_replies_per_sender_per_hour=c.auto_replies_per_sender_per_hour,
        )

    @property
    def local_part(self) -> str:
        return self.address.split("@", 1)[0]


def _domain_of(address: str) -> str:
    return address.strip().strip("<>").rpartition("@")[2].lower().rstrip(".")


#: Old relay syntaxes inside the local part: the percent hack (``user%other.org@us``), UUCP
#: bang paths (``other.org!user@us``) and a quoted address (``"user@other.org"@us``).
#: Each names a foreign destination; relay testers (and spammers probing us) read a 250
#: as "relay accepted", and none of our support addresses looks like that.
_RELAY_LOCAL_PART = frozenset("%!@")


def _foreign(address: str, domains: Sequence[str]) -> bool:
    local = address.strip().strip("<>").rpartition("@")[0]
    return _domain_of(address) not in domains or any(c in _RELAY_LOCAL_PART for c in local)


class InboundMailHandler:
    """aiosmtpd handler: the whole SMTP-facing surface of posventa."""

    def __init__(self, *, inbox: Inbox, attachments: AttachmentStore, settings: SmtpSettings,
                 rate_window: SenderRateWindow | None = None) -> None:
        self._inbox = inbox
        self._attachments = attachments
        self._settings = settings
        self._rate = rate_window or SenderRateWindow(max_per_window=settings.auto_replies_per_sender_per_hour,
                                                     window_seconds=3600, clock=time.monotonic)
        self.accepted = 0
        self.rejected = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        set_log_fields(channel=ChannelName.EMAIL.value)  # aiosmtpd runs each session in its own task
        if _foreign(address, self._settings.domains):
            self.rejected += 1
            log.info("SMTP: refused relay to %s from %s", _domain_of(address) or "?", session.peer)
            return "550 5.7.1 Relaying denied: we only accept mail for our support addresses"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content if envelope.original_content is not None else envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > self._settings.max_message_bytes:
            return "552 5.3.4 Message too big"
        try:
            # Parsing is CPU work on untrusted bytes (bounded by the limits). Small mails parse
            # in well under a millisecond, cheaper than a thread hop; big ones go off the loop.
            if len(raw) <= INLINE_PARSE_BYTES:
                parsed = parse_email(raw, limits=self._settings.limits)
            else:
                parsed = await asyncio.to_thread(parse_email, raw, limits=self._settings.limits)
        except EmailRejected as exc:
            self.rejected += 1
            log.info("SMTP: rejected a message from %s: %s", session.peer, exc.message)
            return exc.smtp_reply
        if replies_to_notice((*parsed.in_reply_to, *parsed.references)):
            # The team answering an agent notification (an agent's mail client, their
            # out-of-office): no customer's message, so no case and no acknowledgement.
            # Accepted, so the sender's MTA neither retries nor bounces it back to them.
            self.accepted += 1
            log.info("SMTP: dropped a reply to an agent notification from %s (not a customer message)",
                     _domain_of(parsed.from_address or envelope.mail_from or ""))
            return "250 2.0.0 OK: a reply to an agent notification, not stored"
        try:
            message = await self._normalise(parsed, raw, envelope)
            receipt = await self._inbox.receive(message)
        except StorageUnavailable:
            return "451 4.3.0 Temporary failure storing the message; please try again later"
        except OSError as exc:
            log.warning("SMTP: could not store a message on disk: %s", exc.strerror)
            return "451 4.3.0 Temporary local problem; please try again later"
        except Exception:
            log.exception("SMTP: unexpected error handling a message")
            return "451 4.3.0 Temporary local problem; please try again later"
        self.accepted += 1
        return f"250 2.0.0 OK: case #{receipt.case_number}" if receipt.case_number else "250 2.0.0 OK"

    async def _normalise(self, parsed: ParsedEmail, raw: bytes, envelope: Envelope) -> InboundMessage:
        # The envelope sender is as untrusted as any header: aiosmtpd passes control
        # characters through, and a NUL in it made PostgreSQL refuse the whole message
        # (451 on every retry, forever), so it gets the same one-line cleaning as headers.
        envelope_from = one_line(envelope.mail_from or "").strip("<> ").lower()
        sender = parsed.from_address or envelope_from or "mailer-daemon@unknown.invalid"
        verdict = loop_guard(parsed, envelope_from=envelope_from, own_addresses=(self._settings.address,),
                             own_domains=self._settings.domains)
        auto_ok = verdict.auto_reply_allowed and self._rate.allow(sender)
        if not verdict.auto_reply_allowed:
            log.info("SMTP: no automatic reply to %s (%s)", _domain_of(sender), verdict.reason)
        token = next((t for t in (reply_token_from_address(r, local_part=self._settings.local_part)
                                  for r in envelope.rcpt_tos) if t), None)
        refs: Sequence[str] = tuple(dict.fromkeys((*parsed.in_reply_to, *parsed.references)))
        # The raw copy is for audit and re-parsing; what the customer said is made durable by
        # the commit (text) and put() (attachments), so the copy skips its own fsync.
        raw_path = await self._attachments.put_raw(raw, kind="email", suffix=".eml", durable=False)
        stored: list[AttachmentRef] = []
        for a in parsed.attachments:
            stored.append(await self._attachments.put(a.data, filename=a.filename, content_type=a.content_type,
                                                      inline=a.inline))
        text = parsed.text
        if parsed.dropped_attachments:
            text += "\n\n[" + ", ".join(parsed.dropped_attachments) + ": too large, not kept]"
        # Without a Message-ID, the raw bytes identify the message: a retried delivery of
        # the same mail still dedupes.
        external_id = parsed.message_id or f"<{hashlib.sha256(raw).hexdigest()}@missing-message-id.invalid>"
        return InboundMessage(
            channel=ChannelName.EMAIL, external_id=external_id, sender=sender, text=text or "(sin texto)",
            sender_name=parsed.from_name, language=parsed.language, subject=parsed.subject or None,
            attachments=tuple(stored),
            thread=ThreadHints(reply_token=token, references=tuple(refs)[-50:],
                               case_number=case_number_from_subject(parsed.subject)),
            auto_reply_allowed=auto_ok, raw_path=raw_path, received_at=None,
            meta={"message_id": external_id}, original_text=parsed.full_text or None,
        )


class SmtpServer:
    """Runs aiosmtpd's ``SMTP`` protocol through ``loop.create_server`` (not the threaded
    Controller), so the handler shares the service's loop, engine and inbox."""

    def __init__(self, *, handler: InboundMailHandler, host: str, port: int, max_message_bytes: int,
                 hostname: str | None = None) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._max = max_message_bytes
        self._hostname = hostname
        self._server: asyncio.base_events.Server | None = None
        self.bound_port: int | None = None

    def _protocol(self) -> SMTP:
        return SMTP(self._handler, data_size_limit=self._max, enable_SMTPUTF8=True, hostname=self._hostname,
                    ident="posventa ESMTP", timeout=120, command_call_limit=200)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host=self._host, port=self._port)
        self.bound_port = self._server.sockets[0].getsockname()[1]
        log.info("SMTP listening on %s:%s", self._host, self.bound_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout=3)
            except TimeoutError:
                log.warning("SMTP: connections still open at shutdown")
            self._server = None
