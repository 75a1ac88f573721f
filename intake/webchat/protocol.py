"""The /chat/ws wire protocol (docs/webchat-protocol.md): client frames parsed into frozen values,
server frames built as plain dicts.

Everything here is pure: no sockets, no database. Every client frame is untrusted, so
parsing is bounded (size is checked before, nesting is refused outright: our frames are
flat objects of scalars) and any problem is a ``ProtocolError`` carrying the error code
the client is told.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from posventa.core.business_hours import customer_zone
from posventa.core.domain import LANGUAGES

RATE_LIMITED = "rate_limited"
TOO_LARGE = "too_large"
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"

#: A client message id: the widget sends UUIDs; anything id-like and short is accepted.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_QUESTION = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_EMAIL = re.compile(r"^[^\s@<>\"(),;:\\\[\]]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
# C0/C1 controls except tab and newline: they break logs and mail headers, never text.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NESTED = (dict, list)
MAX_TOKEN = 128
MAX_NAME = 200
MAX_VALUE = 200


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, *, client_id: str | None = None) -> None:
        self.code = code
        self.client_id = client_id
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Hello:
    session: str | None
    last_seen: int | None
    lang: str | None
    name: str | None = None
    email: str | None = None
    #: The browser's IANA time zone (``Intl``): the outside-hours notice shows the
    #: customer's time. One we do not know is ignored.
    tz: str | None = None


@dataclass(frozen=True, slots=True)
class SendText:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class SendChoice:
    id: str
    question: str
    value: str


ClientFrame = Hello | SendText | SendChoice


def parse_frame(raw: str, *, max_text_chars: int) -> ClientFrame:
    """One text frame → a value, or ``ProtocolError(bad_request | too_large)``."""
    try:
        data = orjson.loads(raw)  # the common case, in C
    except orjson.JSONDecodeError:
        # orjson also refuses valid JSON (lone surrogates, ints past 64 bits): the stdlib
        # decides, so odd input gets the answer it always got (a forged token: unauthorized).
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ProtocolError(BAD_REQUEST, "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(BAD_REQUEST, "frame must be a JSON object")
    if any(isinstance(v, _NESTED) for v in data.values()):
        raise ProtocolError(BAD_REQUEST, "frame fields must be plain values")
    kind = data.get("type")
    raw_id = data.get("id")
    client_id = raw_id if isinstance(raw_id, str) and _CLIENT_ID.match(raw_id) else None
    if kind == "hello":
        return _hello(data)
    if kind in ("message", "choice"):
        if client_id is None:
            raise ProtocolError(BAD_REQUEST, "id must be a short string (a UUID)")
        if kind == "message":
            text = data.get("text")
            if not isinstance(text, str) or not encodable(text):
                raise ProtocolError(BAD_REQUEST, "text must be a (valid Unicode) string", client_id=client_id)
            text = clean_text(text)
            if not text.strip():
                raise ProtocolError(BAD_REQUEST, "text is empty", client_id=client_id)
            if len(text) > max_text_chars:
                raise ProtocolError(TOO_LARGE, f"text is longer than {max_text_chars} characters",
                                    client_id=client_id)
            return SendText(client_id, text)
        question, value = data.get("question"), data.get("value")
        if not isinstance(question, str) or not _QUESTION.match(question):
            raise ProtocolError(BAD_REQUEST, "question must be a question id", client_id=client_id)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ProtocolError(BAD_REQUEST, "value must be a string or a number", client_id=client_id)
        value = clean_text(str(value)).strip()
        if not value or len(value) > MAX_VALUE or not encodable(value):
            raise ProtocolError(BAD_REQUEST, "value is empty or too long", client_id=client_id)
        return SendChoice(client_id, question, value)
    raise ProtocolError(BAD_REQUEST, "unknown frame type", client_id=client_id)


def _hello(data: dict[str, Any]) -> Hello:
    session = data.get("session")
    if session is not None and (not isinstance(session, str) or not 0 < len(session) <= MAX_TOKEN):
        raise ProtocolError(UNAUTHORIZED, "invalid session")
    last_seen = data.get("last_seen")
    if last_seen is not None:
        # The widget echoes ids we gave it, which are integers; a numeric string is tolerated.
        if isinstance(last_seen, str) and last_seen.isdigit() and len(last_seen) < 19:
            last_seen = int(last_seen)
        if isinstance(last_seen, bool) or not isinstance(last_seen, int) or not 0 <= last_seen < 2**63:
            raise ProtocolError(BAD_REQUEST, "last_seen must be a message id or null")
    lang = data.get("lang")
    lang = lang.lower()[:2] if isinstance(lang, str) and lang[:2].lower() in LANGUAGES else None
    name = data.get("name")
    name = " ".join(clean_text(name).split())[:MAX_NAME] or None if isinstance(name, str) and encodable(name) else None
    email = data.get("email")
    # An email we cannot use is ignored rather than refused: the visitor can still chat.
    email = (email.strip().lower() if isinstance(email, str) and encodable(email) and _EMAIL.match(email.strip())
             else None)
    tz = data.get("tz")
    tz = tz if customer_zone(tz) is not None else None
    return Hello(session=session, last_seen=last_seen, lang=lang, name=name, email=email, tz=tz)


def clean_text(text: str) -> str:
    # Most text has neither carriage returns nor controls: then it is returned as is.
    # isprintable() is False for every control (and for newlines and tabs, which stay):
    # a scan in C that spares the regex for most messages.
    if text.isprintable():
        return text
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text


def encodable(text: str) -> bool:
    """False for JSON's lone surrogates (``"\\ud800"``): valid JSON, but no database
    can store them, and a message that can never be stored must be refused, not retried."""
    if text.isascii():  # known without looking: no surrogates
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- server frames --------------------------------------------------------------------------


def welcome(session: str, case: int | None, *, upload: dict[str, Any] | None = None) -> dict[str, Any]:
    """``upload`` is what the attach button may send (``max_bytes``, ``types``); absent
    when this chat takes no files."""
    frame: dict[str, Any] = {"type": "welcome", "session": session, "case": case}
    if upload is not None:
        frame["upload"] = upload
    return frame


FILES_PATH = "/chat/files"


def attachment(attachment_id: int, filename: str, content_type: str, size: int) -> dict[str, Any]:
    """A file of a message, as the widget shows it: ``url`` reads it, with the session's
    token as ``Authorization: Bearer`` (only that session's conversation can be read)."""
    return {"id": attachment_id, "filename": filename, "content_type": content_type, "size": size,
            "url": f"{FILES_PATH}/{attachment_id}"}


def ack(client_id: str, message_id: int, case: int | None) -> dict[str, Any]:
    return {"type": "ack", "id": client_id, "message_id": message_id, "case": case}


def error(code: str, message: str, *, client_id: str | None = None, retry_after: float | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_id is not None:
        frame["id"] = client_id
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 1)
    return frame


def server_message(message_id: int, *, sender: str, text: str, extra: dict[str, Any] | None = None,
                   client_id: str | None = None, attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A stored message as the widget shows it. ``extra`` is a ``messages.extra`` JSON
    value (suggestions, choices, question); a customer's own message carries its client
    ``id`` so the widget can settle a queued copy whose ack was lost."""
    frame: dict[str, Any] = {"type": "message", "message_id": message_id, "from": sender, "text": text}
    if client_id is not None:
        frame["id"] = client_id
    if attachments:
        frame["attachments"] = attachments
    extra = extra if isinstance(extra, dict) else {}
    suggestions = extra.get("suggestions")
    if isinstance(suggestions, list) and suggestions:
        frame["suggestions"] = [{"title": s.get("title", ""), "url": s.get("url", ""), "score": s.get("score", 0)}
                                for s in suggestions if isinstance(s, dict)]
    choices = extra.get("choices")
    if isinstance(choices, list) and choices and extra.get("question"):
        frame["choices"] = [{"label": c.get("label", ""), "value": c.get("value", "")}
                            for c in choices if isinstance(c, dict)]
        frame["question"] = extra["question"]
    elif extra.get("question"):
        frame["question"] = extra["question"]
    return frame
