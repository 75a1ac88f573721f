"""Parsing untrusted RFC 5322 / MIME bytes into a frozen :class:`ParsedEmail`.

The stdlib ``email`` package (``policy.default``) does the MIME work; this module puts
fences around it, because every byte comes from a stranger:

* the parser itself refuses more than ``max_parts`` parts or ``max_depth`` levels of
  nesting *while parsing* (the feed parser checks every open boundary on every line, so
  depth multiplies the cost of each line — it has to be stopped early, not afterwards);
* header values are capped and re-decoded (raw UTF-8 / Latin-1 bytes in headers become
  text, lone surrogates become U+FFFD) before the structured header parser sees them, and
  a header the parser chokes on reads as empty instead of raising;
* bodies are decoded with the declared charset when Python knows it as a text codec,
  otherwise UTF-8, otherwise Windows-1252 — always with replacement, never an exception;
* attachments over the per-file or total limit are left out and named in
  ``dropped_attachments``.

:func:`parse_email` raises nothing but :class:`EmailRejected`. A 5xx rejection means the
message itself is unacceptable; the 451 safety net means *we* failed and the sender
should retry later (so a parser bug never loses mail).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from email.utils import getaddresses

from posventa.core.errors import PosventaError
from posventa.core.plain_text import clean_text, html_to_text, one_line
from posventa.core.replies import choice_number_from_text
from posventa.intake.email.text import guess_language, strip_quoted

__all__ = [
    "EmailLimits",
    "EmailRejected",
    "ParsedAttachment",
    "ParsedEmail",
    "case_number_from_subject",
    "choice_number_from_text",
    "html_to_text",
    "parse_email",
    "reply_token_from_address",
    "strip_quoted",
]

#: Raw header values are cut here before anything else looks at them (folded References
#: headers of long threads reach a few KB; nothing legitimate is near this).
_MAX_HEADER_CHARS = 16_000
#: The stdlib's structured header parser is quadratic on hostile input (4,000 quotes or
#: parentheses take ~0.5 s), so what it sees is capped far lower, per header, with room
#: for legitimate values (long RFC 2231 file names, To lists of ~50 addresses).
_STRUCTURED_CAPS = {
    "content-type": 600,
    "content-disposition": 600,
    "content-transfer-encoding": 100,
    "mime-version": 100,
    "date": 200,
    "from": 1000,
    "sender": 1000,
    "reply-to": 1000,
    "to": 2000,
    "cc": 2000,
}
_STRUCTURED_DEFAULT_CAP = 2000
#: More header fields than this in one part is not mail (the stdlib looks headers up by
#: linear scan, so a million of them would cost a scan each time).
_MAX_HEADER_FIELDS = 1000
#: At most this many addresses per To/Cc and ids per References are kept.
_MAX_ADDRESSES = 100
_MAX_REFERENCES = 50
_MAX_ID_CHARS = 500


class EmailRejected(PosventaError):
    """A message we refuse, carrying the SMTP reply the server should give.

    ``message`` is safe to show the sender (it never echoes their content).
    """

    def __init__(self, message: str, *, smtp_code: int = 554, smtp_status: str = "5.6.0") -> None:
        super().__init__(message)
        self.message = message
        self.smtp_code = smtp_code
        self.smtp_status = smtp_status

    @property
    def smtp_reply(self) -> str:
        """The reply line for aiosmtpd, e.g. ``"554 5.6.0 MIME structure nested too deeply"``."""
        return f"{self.smtp_code} {self.smtp_status} {self.message}"

    @property
    def temporary(self) -> bool:
        return 400 <= self.smtp_code < 500


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    filename: str
    content_type: str
    data: bytes
    inline: bool
    #: The Content-ID without angle brackets, as ``cid:`` URLs in the HTML refer to it.
    content_id: str | None


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    message_id: str | None
    from_address: str
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    full_text: str
    attachments: tuple[ParsedAttachment, ...]
    language: str | None
    auto_submitted: str | None
    precedence: str | None
    list_id: str | None
    x_autoreply: bool
    is_bounce: bool
    dropped_attachments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EmailLimits:
    max_attachment_bytes: int = 10_000_000
    max_total_attachment_bytes: int = 25_000_000
    max_parts: int = 200
    max_depth: int = 20
    max_text_chars: int = 200_000
    #: The SMTP server enforces its own (smaller) size limit; this keeps the function safe alone.
    max_message_bytes: int = 50_000_000
    #: The feed parser costs about a microsecond per line per open MIME level; a 25 MB
    #: base64 attachments make ~430k lines; 25 MB of bare newlines would be 25 million.
    max_lines: int = 600_000


# ------------------------------------------------------------------ small helpers

_CASE_TAG = re.compile(r"\[#(\d{1,9})\]")
_TOKEN = re.compile(r"[A-Za-z0-9_=.-]{1,200}")


def case_number_from_subject(subject: str) -> int | None:
    """The case number from a ``[#123]`` tag; the last tag wins (ours goes at the end)."""
    found = _CASE_TAG.findall(subject[:2000])
    return int(found[-1]) if found else None


def reply_token_from_address(address: str, *, local_part: str) -> str | None:
    """``support+<token>@domain`` → ``<token>`` when the base local part is ``local_part``.

    Local parts compare case-insensitively (MTAs fold them); the token keeps its case.
    The domain is not checked here: the SMTP server already accepted the recipient.
    """
    address = address.strip().strip("<>").strip()
    local, at, _domain = address.rpartition("@")
    if not at:
        return None
    base, plus, token = local.partition("+")
    if not plus or base.lower() != local_part.lower() or not _TOKEN.fullmatch(token):
        return None
    return token


# No spaces, angle brackets or control characters: ids end up in headers we send back.
_ID_CHARS = "[^<>\\s\x00-\x1f\x7f-\x9f\ud800-\udfff]"
_ANGLE_ID = re.compile("<(%s{1,%d})>" % (_ID_CHARS, _MAX_ID_CHARS))


def _message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    return [f"<{m}>" for m in _ANGLE_ID.findall(value)]


def _message_id(value: str | None) -> str | None:
    ids = _message_ids(value)
    if ids:
        return ids[0]
    bare = (value or "").strip()
    # Some broken mailers omit the brackets; a bare "x@y" is still an id worth keeping.
    if bare and "@" in bare and len(bare) <= _MAX_ID_CHARS and re.fullmatch(_ID_CHARS + "+", bare):
        return f"<{bare}>"
    return None


def _bounded_references(ids: list[str]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(ids))
    if len(unique) > _MAX_REFERENCES:
        # RFC 5322 §3.6.4 trimming: keep the thread root and the most recent ids.
        unique = unique[:1] + unique[-(_MAX_REFERENCES - 1) :]
    return tuple(unique)


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _recover_header(value: str) -> str:
    """Raw 8-bit header bytes (surrogateescaped by the parser) → UTF-8, else Windows-1252."""
    value = value[:_MAX_HEADER_CHARS]
    if value.isascii() or not _ESCAPED_BYTE.search(value):  # a regex: this runs on every header access
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _fetch_value(name: str, value: str) -> str:
    """What the structured parser is given for a raw header value: capped per header,
    8-bit bytes recovered, line breaks removed (as ``EmailPolicy.header_fetch_parse`` does)."""
    cap = _STRUCTURED_CAPS.get(name.lower(), _STRUCTURED_DEFAULT_CAP)
    value = _recover_header(value[: cap * 4])[:cap]
    return value.replace("\r", "").replace("\n", "") if ("\r" in value or "\n" in value) else value


#: MIME structure headers whose values repeat from message to message (every client sends
#: the same few Content-Type and Content-Transfer-Encoding lines; a boundary makes a value
#: unique, and then it simply misses). Parsing one costs as much as the rest of a small
#: mail's headers together, and a parsed header is immutable, so they are shared across
#: parses: a bounded map, emptied when full, so hostile variety costs memory only up to it.
_SHARED_HEADER_NAMES = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
_SHARED_HEADERS_MAX = 1024
_shared_headers: dict[tuple[str, str], object] = {}


class _LenientPolicy(EmailPolicy):
    """``policy.default`` whose header access never raises and never sees huge values.

    The stdlib parses a header again on every access (``get_content_type()`` alone runs
    several times per part), so parsed headers are cached for the life of one parse
    (and MIME structure headers for longer, see ``_shared_headers``).
    """

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "_parsed", {})  # policies are read-only by design

    def header_fetch_parse(self, name, value):  # type: ignore[no-untyped-def]
        if hasattr(value, "name"):
            return value
        value = _fetch_value(name, value)
        key = (name, value)
        cache: dict[tuple[str, str], object] = self._parsed  # type: ignore[attr-defined]
        cached = cache.get(key)
        if cached is not None:
            return cached
        shared = name.lower() in _SHARED_HEADER_NAMES
        if shared and (cached := _shared_headers.get(key)) is not None:
            return cached
        try:
            header = super().header_fetch_parse(name, value)
        except Exception:  # noqa: BLE001 - e.g. RecursionError on "((((((" comments
            header = super().header_fetch_parse(name, "")
        if len(cache) < 10_000:
            cache[key] = header
        if shared:
            if len(_shared_headers) >= _SHARED_HEADERS_MAX:
                _shared_headers.clear()
            _shared_headers[key] = header
        return header


class _BoundedParser(BytesFeedParser):
    """A feed parser that stops at ``max_parts`` parts and ``max_depth`` nesting levels.

    ``_new_message``/``_msgstack`` are private to the stdlib, but they are the only place
    where the depth is known during the parse; tests pin the behaviour, so a stdlib change
    shows up as a failing test rather than as an unbounded parse.
    """

    def __init__(self, *, policy: EmailPolicy, limits: EmailLimits) -> None:
        super().__init__(policy=policy)
        self._limits = limits
        self._parts = 0

    def _new_message(self) -> None:
        self._parts += 1
        if self._parts > self._limits.max_parts:
            raise EmailRejected("message has too many MIME parts")
        if len(self._msgstack) >= self._limits.max_depth:
            raise EmailRejected("MIME structure nested too deeply")
        super()._new_message()


def _parse_tree(raw: bytes, limits: EmailLimits) -> EmailMessage:
    if raw.count(b"\n") > limits.max_lines:
        raise EmailRejected("message has too many lines", smtp_code=552, smtp_status="5.3.4")
    parser = _BoundedParser(policy=_LenientPolicy(), limits=limits)
    parser.feed(raw)
    msg = parser.close()
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        if len(part) > _MAX_HEADER_FIELDS:
            raise EmailRejected("message has too many header fields")
    return msg


# ----------------------------------------------------------------------- headers


class _Headers:
    """Raw header values, looked up case-insensitively, built once per message part."""

    def __init__(self, msg: Message) -> None:
        self._msg = msg
        self._raw: dict[str, list[str]] = {}
        for name, value in msg.raw_items():
            values = self._raw.setdefault(name.strip().lower(), [])
            if len(values) < 20:
                values.append(value if isinstance(value, str) else str(value))

    def raw(self, name: str) -> str | None:
        values = self._raw.get(name)
        if not values:
            return None
        return _recover_header(re.sub(r"[\r\n]+", "", values[0]))

    def line(self, name: str, *, limit: int = 300) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        value = one_line(value)[:limit]
        return value or None

    def decoded(self, name: str) -> str:
        """RFC 2047-decoded single line (via the lenient structured parser)."""
        if name not in self._raw:
            return ""
        if name == "subject" and _PLAIN_UNSTRUCTURED.fullmatch(value := _fetch_value(name, self._raw[name][0])):
            # Unstructured, printable ASCII and no encoded word: the parser would hand it back
            # as is. (Structured headers it rewrites: a Date comes back normalised.)
            return one_line(value)
        return one_line(str(self._msg.get(name, "")))

    def addresses(self, name: str) -> list[tuple[str | None, str]]:
        """(display name, lower-cased addr-spec) pairs; unparseable entries are skipped."""
        if name not in self._raw:
            return []
        simple = _SIMPLE_MAILBOX.fullmatch(_fetch_value(name, self._raw[name][0]))
        if simple and (spec := _clean_addr_spec(simple.group(2) or simple.group(3))):
            # "Name <local@domain>", "<local@domain>" or "local@domain" in plain atoms: what
            # the structured parser (the bulk of a small mail's parse) would make of it.
            return [(one_line(simple.group(1) or "")[:200] or None, spec)]
        found: list[tuple[str | None, str]] = []
        header = self._msg.get(name)
        for address in getattr(header, "addresses", ()) or ():
            spec = _clean_addr_spec(getattr(address, "addr_spec", ""))
            if spec:
                found.append((one_line(address.display_name or "")[:200] or None, spec))
        if not found:
            # The structured parser gave up (defects, exotic syntax): the compat parser
            # sometimes still recovers a plain address.
            try:
                pairs = getaddresses([(self.raw(name) or "")[:1000]])
            except Exception:  # noqa: BLE001 - compat parser on hostile input
                pairs = []
            for display, spec_raw in pairs:
                spec = _clean_addr_spec(spec_raw)
                if spec:
                    found.append((one_line(display)[:200] or None, spec))
        return found[:_MAX_ADDRESSES]

    def date(self) -> datetime | None:
        if "date" not in self._raw:
            return None
        try:
            value = getattr(self._msg.get("date"), "datetime", None)
        except Exception:  # noqa: BLE001 - year out of range and friends
            return None
        if not isinstance(value, datetime):
            return None
        # "-0000" means "UTC, origin zone unknown"; a naive datetime would not compare.
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


#: The common shapes of a From/To value, written in plain atoms only: no quotes, comments,
#: encoded words, groups, lists, obsolete syntax or non-ASCII, which all take the structured
#: parser. Tests check this agrees with the parser (tests/intake/email/test_parse_fast.py).
_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_MAILBOX = re.compile(
    rf"(?:({_ATOM}(?: {_ATOM})*) )?<({_DOT_ATOM}@{_DOT_ATOM})>|({_DOT_ATOM}@{_DOT_ATOM})"
)
#: An unstructured value (the Subject) the parser returns unchanged: printable ASCII, spaces
#: and tabs, and no "=?" that could start an RFC 2047 encoded word.
_PLAIN_UNSTRUCTURED = re.compile(r"(?:[\t -<>-~]|=(?!\?))*")

_ADDR_SPEC = re.compile(r"[^\s<>()\[\],;:\\\"]{1,64}@[^\s<>()\[\],;:\\\"@]{1,255}")


def _clean_addr_spec(value: str) -> str:
    value = one_line(value or "").strip().lower()
    return value if _ADDR_SPEC.fullmatch(value) else ""


# ------------------------------------------------------------------------ bodies

_DENIED_CODECS = frozenset({"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"})
# Latin-1 and ASCII labels are routinely wrong about the bytes that follow (UTF-8 sent as
# "us-ascii", Windows-1252 quotes sent as "iso-8859-1"); HTML5 distrusts them for the same
# reason. For these, and for unknown charsets: strict UTF-8 first, else Windows-1252.
_GUESS_FOR = frozenset({"iso8859_1", "ascii", "cp1252"})


def _codec_for(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset.strip().strip("\"'")[:40])
    except Exception:  # noqa: BLE001 - LookupError, or ValueError on NUL bytes
        return None
    name = info.name.replace("-", "_")
    if not getattr(info, "_is_text_encoding", True) or name in _DENIED_CODECS:
        return None  # "base64", "rot13", "unicode_escape": not charsets, whatever Python says
    return name


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared (maybe wrong, maybe unknown) charset → str, never raising."""
    codec = _codec_for(charset)
    if codec is None or codec in _GUESS_FOR:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    try:
        text = data.decode(codec, "replace")
    except Exception:  # noqa: BLE001 - a few codecs raise despite errors="replace"
        text = data.decode("utf-8", "replace")
    if codec == "utf_8" and "\ufffd" in text and not any("\x7f" < ch != "\ufffd" for ch in text):
        # "UTF-8" with not one valid multi-byte sequence is an 8-bit charset mislabelled
        # (a webmail template or an old client): Windows-1252 reads it as written.
        return data.decode("cp1252", "replace")
    return text


def _unflow(text: str, *, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft-broken lines (Apple Mail, Thunderbird)."""
    out: list[str] = []
    pending = ""
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if line.endswith(" ") and line != "-- ":
            pending += line[:-1] if delsp else line
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return "\n".join(out)


_EXTENSIONS = {
    "text/calendar": ".ics",
    "text/plain": ".txt",
    "text/html": ".html",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
}
_UNSAFE_FILENAME = re.compile(r'[<>:"|?*\\/]+')


def _safe_filename(name: str | None, content_type: str, index: int) -> str:
    name = one_line(name or "")
    name = re.split(r"[\\/]", name)[-1]  # never a path: "../../etc/passwd" → "passwd"
    name = _UNSAFE_FILENAME.sub("_", name).lstrip(". ")
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 140] + dot + ext[:9]) if dot and len(ext) <= 9 else name[:150]
    return name or f"attachment-{index}{_EXTENSIONS.get(content_type, '.bin')}"


@dataclass
class _Collector:
    limits: EmailLimits
    texts: list[str] = field(default_factory=list)
    chars: int = 0
    attachments: list[ParsedAttachment] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    total_bytes: int = 0
    seen: int = 0
    report: bool = False

    @property
    def budget(self) -> int:
        return max(0, self.limits.max_text_chars - self.chars)

    def add_text(self, text: str) -> None:
        text = text.strip("\n")
        if not text.strip() or not self.budget:
            return
        text = text[: self.budget]
        self.chars += len(text) + 2
        self.texts.append(text)

    def add_attachment(self, part: Message, headers: _Headers) -> None:
        self.seen += 1
        content_type = _content_type(part)
        try:
            filename = part.get_filename()
        except Exception:  # noqa: BLE001 - RFC 2231 parameters in hostile shapes
            filename = None
        name = _safe_filename(filename, content_type, self.seen)
        data = _payload_bytes(part)
        if (
            len(data) > self.limits.max_attachment_bytes
            or self.total_bytes + len(data) > self.limits.max_total_attachment_bytes
            or len(self.attachments) >= self.limits.max_parts
        ):
            self.dropped.append(name)
            return
        self.total_bytes += len(data)
        disposition = _disposition(part)
        content_id = _message_ids(headers.raw("content-id"))
        cid = content_id[0][1:-1] if content_id else None
        self.attachments.append(
            ParsedAttachment(
                filename=name,
                content_type=content_type,
                data=data,
                inline=disposition == "inline" or (disposition is None and cid is not None),
                content_id=cid,
            )
        )


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # noqa: BLE001
        return None


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken base64/uuencode bodies
        data = None
    return data if isinstance(data, bytes) else b""


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:  # noqa: BLE001
        return None
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = value[2]
    return value if isinstance(value, str) else None


def _leaf_text(part: Message, budget: int) -> str:
    data = _payload_bytes(part)[: budget * 4 + 4]
    text = clean_text(_decode_bytes(data, _param(part, "charset")))
    if _content_type(part) == "text/html":
        return html_to_text(text, max_chars=budget)
    if (_param(part, "format") or "").lower() == "flowed":
        text = _unflow(text, delsp=(_param(part, "delsp") or "").lower() == "yes")
    return "\n".join(line.rstrip() for line in text.split("\n"))[:budget]


def _is_body_text(part: Message) -> bool:
    if _content_type(part) not in ("text/plain", "text/html"):
        return False
    if _disposition(part) == "attachment":
        return False
    try:
        return not part.get_filename()
    except Exception:  # noqa: BLE001
        return True


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _choose_alternative(kids: list[Message]) -> Message | None:
    leaves = [k for k in kids if not k.is_multipart()]
    for kid in leaves:
        if _is_body_text(kid) and _content_type(kid) == "text/plain" and _leaf_text(kid, 2000).strip():
            return kid
    for kid in leaves:
        if _is_body_text(kid) and _content_type(kid) == "text/html":
            return kid
    nested = [k for k in kids if k.is_multipart()]
    if nested:
        return nested[0]
    return kids[0] if kids else None


def _forward_header(inner: Message) -> str:
    headers = _Headers(inner)
    lines = ["---------- Forwarded message ---------"]
    for label, name in (("From", "from"), ("Date", "date"), ("Subject", "subject"), ("To", "to")):
        value = headers.decoded(name)[:300]
        if value:
            lines.append(f"{label}: {value}")
    return "\n".join(lines)


def _walk(part: Message, out: _Collector) -> None:
    content_type = _content_type(part)
    headers = _Headers(part)
    if content_type.startswith("message/") and part.is_multipart():
        kids = _children(part)
        if content_type in ("message/rfc822", "message/global") and kids:
            out.add_text(_forward_header(kids[0]))
            _walk(kids[0], out)
        return
    if part.is_multipart():
        kids = _children(part)
        subtype = content_type.partition("/")[2]
        if subtype == "alternative":
            chosen = _choose_alternative(kids)
            for kid in kids:
                if kid is chosen:
                    _walk(kid, out)
                elif not kid.is_multipart() and not _is_body_text(kid):
                    out.add_attachment(kid, _Headers(kid))  # e.g. the text/calendar invite
        elif subtype == "report":
            # RFC 6522: the first part is for humans, then the machine-readable status;
            # the returned original (our own mail) is deliberately left out.
            out.report = True
            for kid in kids:
                if kid is kids[0]:
                    _walk(kid, out)
                elif _content_type(kid) == "message/delivery-status":
                    out.add_text(_delivery_status_text(kid))
        else:  # mixed, related, signed, digest, parallel, unknown
            for kid in kids:
                _walk(kid, out)
        return
    if _is_body_text(part) or content_type.startswith("multipart/"):
        # A multipart without a usable boundary arrives as a leaf: its body is text.
        out.add_text(_leaf_text(part, out.budget))
    else:
        out.add_attachment(part, headers)


def _delivery_status_text(part: Message) -> str:
    # The stdlib parses the status as blocks of headers; their text says which address
    # failed and why ("Status: 5.1.1"), which is what an agent looking at a bounce needs.
    lines = [f"{name}: {one_line(str(value))[:300]}" for block in _children(part) for name, value in block.raw_items()]
    return "\n".join(lines[:100])


# ----------------------------------------------------------------------- parsing

_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autogenerated", "x-autoreply-from", "x-mail-autoreply")
# Out-of-office subjects of clients that set no header (older Exchange, Lotus, webmails).
# Only as a prefix ending in ":" -- "Ausente el técnico" is a complaint, not a robot.
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?reply|auto|out of (?:the )?office(?: autoreply)?|respuesta autom[aá]tica|"
    r"resposta autom[aá]tica|fuera de (?:la )?oficina|aus[eê]ncia|ausente|r[ée]ponse automatique)\s*:",
    re.IGNORECASE,
)
_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})


def _language(headers: _Headers, text: str, subject: str) -> str | None:
    for tag in (headers.line("content-language") or "").lower().split(","):
        primary = tag.strip().split("-")[0]
        if primary in ("es", "pt", "en"):
            return primary
    return guess_language(f"{subject}\n{text}")


def parse_email(raw: bytes, *, limits: EmailLimits = EmailLimits()) -> ParsedEmail:
    """Parse one message as received over SMTP. Raises only :class:`EmailRejected`."""
    raw = bytes(raw)  # no copy for bytes; accepts the bytearray/memoryview a server may hold
    if len(raw) > limits.max_message_bytes:
        raise EmailRejected("message too big", smtp_code=552, smtp_status="5.3.4")
    try:
        return _extract(_parse_tree(raw, limits), limits)
    except EmailRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - the safety net: our bug must not lose mail
        raise EmailRejected(
            "message could not be processed, try again later", smtp_code=451, smtp_status="4.3.0"
        ) from exc


def _extract(msg: EmailMessage, limits: EmailLimits) -> ParsedEmail:
    headers = _Headers(msg)
    senders = headers.addresses("from")
    from_name, from_address = senders[0] if senders else (None, "")
    subject = headers.decoded("subject")[:998]

    out = _Collector(limits=limits)
    _walk(msg, out)
    full_text = "\n\n".join(out.texts)[: limits.max_text_chars]
    text = strip_quoted(full_text)

    auto_submitted = headers.line("auto-submitted", limit=100)
    precedence = headers.line("precedence", limit=100)
    list_id_raw = headers.line("list-id")
    list_ids = _ANGLE_ID.findall(list_id_raw or "")
    content_type = _content_type(msg)
    x_autoreply = (
        any(headers.raw(name) is not None and (headers.line(name) or "").lower() not in ("no", "false", "0")
            for name in _AUTOREPLY_HEADERS)
        or any(
            token.strip().lower() in ("all", "oof", "autoreply")
            for token in (headers.line("x-auto-response-suppress") or "").split(",")
        )
        or bool(_AUTOREPLY_SUBJECT.match(subject))
    )
    is_bounce = (
        content_type == "multipart/report"
        or out.report
        or from_address.partition("@")[0] in _BOUNCE_SENDERS
        or (headers.line("return-path") or "").replace(" ", "") == "<>"
    )

    return ParsedEmail(
        message_id=_message_id(headers.raw("message-id")),
        from_address=from_address,
        from_name=from_name,
        to=_unique(spec for _, spec in headers.addresses("to")),
        cc=_unique(spec for _, spec in headers.addresses("cc")),
        subject=subject,
        date=headers.date(),
        in_reply_to=_bounded_references(_message_ids(headers.raw("in-reply-to")))[:5],
        references=_bounded_references(_message_ids(headers.raw("references"))),
        text=text,
        full_text=full_text,
        attachments=tuple(out.attachments),
        language=_language(headers, text, subject),
        auto_submitted=auto_submitted.lower() if auto_submitted else None,
        precedence=precedence.lower() if precedence else None,
        list_id=(list_ids[0].lower() if list_ids else list_id_raw),
        x_autoreply=x_autoreply,
        is_bounce=is_bounce,
        dropped_attachments=tuple(out.dropped),
    )


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
