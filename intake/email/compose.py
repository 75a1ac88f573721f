"""Building the outbound email for one outbox delivery (pure: no SMTP here).

Every header value goes through :func:`~core.plain_text.one_line`, which leaves no CR
or LF, and the stdlib policy refuses CR/LF in header values as a second fence, so no
case title, agent text or recipient can add a header. Addresses and Message-IDs are
validated rather than repaired: a recipient that is not a plain address is a permanent
delivery failure, not something to guess at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html import escape

from posventa.core.attachments import safe_filename
from posventa.core.case_threading import is_notice_message_id
from posventa.core.domain import ClaimedDelivery, OutgoingFile
from posventa.core.errors import PermanentDeliveryError
from posventa.core.plain_text import clean_text, one_line

__all__ = ["compose_email", "reply_address"]

_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# Printable ASCII without angle brackets or spaces: what RFC 5322 msg-id allows, loosely.
_MSG_ID = re.compile(r"<[!-;=?-~]{1,500}>")
_TOKEN = re.compile(r"[A-Za-z0-9_=.-]{1,200}")
_MAX_REFERENCES = 20
_MAX_TITLE = 200

_TEXTS = {
    "es": {
        "title": "Su consulta",
        "suggestions": "Estos artículos pueden ayudarle:",
        "choices": "Responda a este correo con el número de su opción:",
    },
    "pt": {
        "title": "Sua solicitação",
        "suggestions": "Estes artigos podem ajudar:",
        "choices": "Responda a este e-mail com o número da sua opção:",
    },
    "en": {
        "title": "Your request",
        "suggestions": "These articles may help:",
        "choices": "Reply to this email with the number of your choice:",
    },
}


def _address(value: str, *, what: str) -> str:
    value = one_line(value).strip()
    if not _ADDR.fullmatch(value):
        # Never echo the value: it may be attacker-controlled and end up in logs.
        raise PermanentDeliveryError(f"{what} is not a plain email address", unreachable=what == "recipient")
    return value


def reply_address(address: str, token: str) -> str:
    """``support@example.com`` + ``tok`` → ``support+tok@example.com`` (see reply_token_from_address)."""
    local, _, domain = _address(address, what="reply address").rpartition("@")
    if not _TOKEN.fullmatch(token):
        raise ValueError("reply token must be 1-200 characters of [A-Za-z0-9_=.-]")
    return f"{local}+{token}@{domain}"


def _header_text(text: str) -> str:
    """Untrusted text for a header value: one line, and no RFC 2047 encoded word in it.

    The email package *decodes* encoded words in a value when the header is set, after
    ``one_line`` has looked; CPython before 3.11.10/3.12.5 (CVE-2024-6923) then writes a
    decoded CR/LF out raw, so a case titled ``x=?utf-8?q?=0D=0ABcc:_a@b?=`` (or such a
    Message-ID from a customer's mail) added a header. ``= ?`` cannot start one.
    """
    return one_line(text).replace("=?", "= ?")


def _msg_id(value: str | None) -> str | None:
    value = one_line(value or "").strip()
    if value and not value.startswith("<"):
        value = f"<{value}>"
    # An encoded-word opener inside an id is only ever an injection attempt (see _header_text).
    return value if _MSG_ID.fullmatch(value) and "=?" not in value else None


def _subject(message: ClaimedDelivery, *, tag: bool) -> str:
    texts = _TEXTS.get(message.language, _TEXTS["es"])
    explicit = _header_text(message.extra.get("subject", ""))[:_MAX_TITLE]
    title = explicit or _header_text(message.case_title or "")[:_MAX_TITLE]
    if not title:
        title = texts["title"]
    elif not explicit and not re.match(r"(?i)(re|res|rv|aw)\s*:", title):
        title = f"Re: {title}"
    if tag and message.case_number is not None:
        marker = f"[#{message.case_number}]"
        title = " ".join(title.replace(marker, " ").split())
        title = f"{title} {marker}"
    return title


def _text_body(message: ClaimedDelivery) -> str:
    texts = _TEXTS.get(message.language, _TEXTS["es"])
    blocks = [clean_text(message.text).strip()]
    if message.suggestions:
        lines = [texts["suggestions"]]
        lines += [f"- {one_line(s.title)}: {one_line(s.url)}" for s in message.suggestions]
        blocks.append("\n".join(lines))
    if message.choices:
        lines = [texts["choices"]]
        lines += [f"{number}) {one_line(choice.label)}" for number, choice in enumerate(message.choices, 1)]
        blocks.append("\n".join(lines))
    return "\n\n".join(block for block in blocks if block) + "\n"


def _html_paragraphs(text: str) -> str:
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return "\n".join("<p>" + "<br>\n".join(escape(line) for line in p.split("\n")) + "</p>" for p in paragraphs)


def _html_body(message: ClaimedDelivery) -> str:
    texts = _TEXTS.get(message.language, _TEXTS["es"])
    parts = [_html_paragraphs(clean_text(message.text).strip())]
    if message.suggestions:
        items = []
        for s in message.suggestions:
            url = one_line(s.url)
            title = escape(one_line(s.title))
            # Only web links become anchors; anything else (javascript:, data:) is shown as text.
            if url.lower().startswith(("https://", "http://")):
                items.append(f'<li><a href="{escape(url, quote=True)}">{title}</a></li>')
            else:
                items.append(f"<li>{title}: {escape(url)}</li>")
        parts.append(f"<p>{escape(texts['suggestions'])}</p>\n<ul>\n" + "\n".join(items) + "\n</ul>")
    if message.choices:
        lines = [f"{n}) {escape(one_line(c.label))}" for n, c in enumerate(message.choices, 1)]
        parts.append(f"<p>{escape(texts['choices'])}</p>\n<p>" + "<br>\n".join(lines) + "</p>")
    lang = escape(message.language, quote=True)
    return f'<!DOCTYPE html>\n<html lang="{lang}"><body>\n' + "\n".join(parts) + "\n</body></html>\n"


def compose_email(
    message: ClaimedDelivery,
    *,
    from_address: str,
    from_name: str,
    reply_to: str | None,
    subject_prefix_tag: bool = True,
    now: datetime | None = None,
    files: Sequence[tuple[OutgoingFile, bytes]] = (),
) -> EmailMessage:
    """The email for ``message``: text/plain with an escaped HTML alternative.

    * ``Message-ID`` is ``message.email.message_id`` (stable across retries, so a retried
      send is recognisable as the same mail); without threading info it is derived from
      the outbox id, which is just as stable.
    * ``In-Reply-To``/``References`` come from ``message.email``; ``Reply-To`` is
      ``reply_to``, or ``from_address`` plus the reply token when there is one.
    * ``Subject`` is ``Re: <case title> [#<case number>]``; ``message.extra["subject"]``
      replaces the title part when a delivery needs its own (a survey, say).
    * ``Auto-Submitted: auto-replied`` marks automatic mail (RFC 3834), so that
      well-behaved robots on the other side do not answer it; an agent notification
      (its Message-ID says so) is ``auto-generated``.
    * ``files`` (each with its bytes) become attachments: the mail is then
      multipart/mixed, the text and HTML alternative first, each file base64-encoded with
      its type and name (RFC 2231 for a name that is not ASCII).

    Raises :class:`~core.errors.PermanentDeliveryError` when the recipient (or our own
    from/reply-to address) is not a plain email address.
    """
    recipient = _address(message.recipient, what="recipient")
    sender = _address(from_address, what="from address")
    threading = message.email
    domain = sender.rpartition("@")[2]

    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(display_name=one_line(from_name)[:100], addr_spec=sender)
    msg["To"] = recipient
    msg["Subject"] = _subject(message, tag=subject_prefix_tag)
    msg["Date"] = format_datetime(now or datetime.now(timezone.utc))
    msg["Message-ID"] = (_msg_id(threading.message_id) if threading else None) or (
        f"<posventa.outbox.{message.outbox_id}@{domain}>"
    )
    if threading is not None:
        in_reply_to = _msg_id(threading.in_reply_to)
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
        references = [r for r in (_msg_id(ref) for ref in threading.references) if r]
        if in_reply_to and in_reply_to not in references:
            references.append(in_reply_to)
        if len(references) > _MAX_REFERENCES:
            references = references[:1] + references[-(_MAX_REFERENCES - 1) :]
        if references:
            msg["References"] = " ".join(references)
    if reply_to:
        msg["Reply-To"] = _address(reply_to, what="reply-to address")
    elif threading is not None and threading.reply_token:
        msg["Reply-To"] = reply_address(sender, threading.reply_token)
    if threading is not None and is_notice_message_id(threading.message_id):
        # An agent notification answers nobody's mail (RFC 3834 "auto-generated"); its
        # Message-ID is what tells a reply to it from a customer's (core.case_threading).
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
    elif message.automatic:
        msg["Auto-Submitted"] = "auto-replied"
        # Exchange honours this instead of RFC 3834: no out-of-office answers to us.
        msg["X-Auto-Response-Suppress"] = "All"

    # Quoted-printable keeps the mail 7-bit (no reliance on 8BITMIME) and readable raw.
    msg.set_content(_text_body(message), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(_html_body(message), subtype="html", charset="utf-8", cte="quoted-printable")
    for file, data in files:
        kind, _, rest = file.content_type.partition(";")
        maintype, _, subtype = kind.strip().lower().partition("/")
        params = dict(p.strip().split("=", 1) for p in rest.split(";") if "=" in p)
        if not (maintype and subtype):
            maintype, subtype, params = "application", "octet-stream", {}
        msg.add_attachment(data, maintype=maintype, subtype=subtype, params=params,
                           filename=safe_filename(file.filename))
    if message.language in _TEXTS:
        # After set_content(), which clears every Content-* header it finds.
        msg["Content-Language"] = message.language
    return msg
