"""Log lines people (and log shippers) can read: control characters escaped, and JSON on request.

Log messages carry text from the network: an envelope sender, a user name typed at the
login form, a URL. A NUL, an escape sequence or a newline in them would reach the
terminal or the log file raw: a forged second line, a hidden one, a garbled terminal.
``EscapeControls`` runs on the handler, so every logger's lines pass it, libraries' too
(aiosmtpd's "mail.log" among them).

Which case and channel a line is about travels in a context variable: ``log_fields`` sets
it for the task at hand (a delivery, a chat connection, an SMTP session) and everything
logged inside it carries them, without every log call repeating them. ``extra={"case":
..., "channel": ...}`` on a single call does the same.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

#: The fields a line may carry besides its message, where the code knows them.
FIELDS = ("case", "channel")

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("posventa_log_fields", default=None)


@contextlib.contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Within the block (and the tasks it starts), log lines carry these fields."""
    merged = {**(_fields.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _fields.set(merged)
    try:
        yield
    finally:
        _fields.reset(token)


def set_log_fields(**fields: Any) -> None:
    """Add fields for the rest of the current task (a connection that learns its case).
    Cheap when nothing changes: a chat calls it on every message."""
    current = _fields.get() or {}
    new = {k: v for k, v in fields.items() if v is not None and current.get(k) != v}
    if new:
        _fields.set({**current, **new})


def current_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's own fields (``extra=``) over the context's."""
    out = dict(_fields.get() or {})
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            out[name] = value
    return out


def _escape_table(keep: str = "") -> dict[int, str]:
    table: dict[int, str] = {}
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029):
        char = chr(code)
        if char in keep:
            continue
        table[code] = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
            f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return table


#: C0 and C1 controls, DEL and the Unicode line/paragraph separators, as Python escapes.
_ESCAPES = _escape_table()
#: The same for tracebacks, whose lines are the traceback's own.
_ESCAPES_MULTILINE = _escape_table(keep="\n")


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


class EscapeControls(logging.Filter):
    """Every record's message (and traceback) with its control characters escaped: one
    log line per event, whatever the network sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the record as it is, logging reports it
            return True
        escaped = escape_controls(message)
        if escaped != message or record.args:
            record.msg, record.args = escaped, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = record.exc_text.translate(_ESCAPES_MULTILINE)
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and case and channel
    where known; a traceback as one string field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        # ensure_ascii: any character left would still be one line, but shippers differ on
        # what they accept; escapes are safe everywhere.
        return json.dumps(entry, ensure_ascii=True, default=str)


class TextLines(logging.Formatter):
    """The readable format, with ``[case 12 webchat]`` where known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        fields = current_fields(record)
        if not fields:
            return line
        tags = " ".join(f"case {fields['case']}" if k == "case" else str(v) for k, v in fields.items())
        return f"{line} [{escape_controls(tags)}]"
