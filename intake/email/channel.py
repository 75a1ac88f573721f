"""Outbound mail: outbox items of channel ``email`` relayed with aiosmtplib.

Classification at the seam: 4xx and connection problems are transient (the outbox
retries with backoff); 5xx is permanent (the worker records it in the case's history and
the message shows it as its delivery state; a refused recipient marks the address
unreachable). Every error names the relay (host:port) and ``[email.outbound]``.
"""

from __future__ import annotations

import logging

import aiosmtplib

from posventa.core.config import EmailConfig
from posventa.core.domain import ChannelName, ClaimedDelivery, OutgoingFile
from posventa.core.message_files import MessageFiles
from posventa.core.errors import PermanentDeliveryError, TransientDeliveryError
from posventa.intake.email.compose import compose_email

log = logging.getLogger(__name__)


class EmailChannel:
    name = ChannelName.EMAIL

    def __init__(self, *, config: EmailConfig, files: MessageFiles | None = None) -> None:
        self._config = config
        #: Where a reply's attachments are read from (None: a delivery with files fails).
        self._files = files
        self._outbound = config.outbound
        local, _, domain = config.address.partition("@")
        self._local, self._domain = local, domain

    def reply_address(self, token: str | None) -> str | None:
        return f"{self._local}+{token}@{self._domain}" if token else None

    async def send(self, message: ClaimedDelivery) -> str | None:
        mail = compose_email(message, from_address=self._config.address, from_name=self._config.from_name,
                             reply_to=self.reply_address(message.email.reply_token if message.email else None),
                             files=[(f, await self._read(f)) for f in message.files])
        o = self._outbound
        # Every failure names the relay and the config section that points at it: what an
        # agent reads on the case page, and what the admin has to change.
        relay = f"relay {o.host}:{o.port} ([email.outbound])"
        try:
            errors, _response = await aiosmtplib.send(
                mail, hostname=o.host, port=o.port, use_tls=o.tls, start_tls=True if o.starttls else False,
                username=o.username or None, password=o.password or None, timeout=o.timeout_seconds,
                sender=self._config.address, recipients=[message.recipient])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(400 <= c < 500 for c in codes):
                raise TransientDeliveryError(f"{relay} deferred the recipient ({codes[0]})") from None
            raise PermanentDeliveryError(f"{relay} refused the recipient ({codes[0] if codes else '5xx'})",
                                         unreachable=True) from None
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise TransientDeliveryError(f"{relay} deferred: {exc.code} {exc.message[:200]}") from None
            raise PermanentDeliveryError(f"{relay} refused: {exc.code} {exc.message[:200]}") from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise TransientDeliveryError(f"{relay} did not answer in {o.timeout_seconds:g} s") from None
        except aiosmtplib.SMTPConnectError:
            raise TransientDeliveryError(f"{relay} unreachable: cannot connect") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)[:200] or type(exc).__name__
            raise TransientDeliveryError(f"{relay} unreachable: {reason}") from None
        return message.email.message_id if message.email else None

    async def _read(self, file: OutgoingFile) -> bytes:
        if self._files is None:
            raise PermanentDeliveryError("this email channel has no attachment store to read files from")
        try:
            return await self._files.read(file)
        except (OSError, ValueError):
            # Erased with the contact's data, or the store lost it: retrying cannot help.
            raise PermanentDeliveryError(f"the file {file.filename!r} is missing from the attachment store") from None
