"""Reading HTML form posts: bounded strings, optional integers, and errors by field.

A browser form is untrusted input like any other. Each getter bounds what it returns,
and a bad value becomes a message next to its field instead of an exception page.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader, MultipartReader
from multidict import MultiDict, MultiDictProxy

from posventa.core.errors import DomainError, InvalidTransition, ValidationError
from posventa.core.workflow import MissingCaseType
from posventa.intake.console.i18n import ConsoleText, _l
from posventa.intake.console.labels import LABELS

MAX_FIELD = 100_000
#: A console form sent as multipart/form-data (one with a file input) is read as a stream:
#: the CSRF check reads its first part (the token, first in every form) and leaves the
#: reader here for ``Form.read``, which goes on from there. Files never pass through
#: aiohttp's whole-body reader (and its [http] max_body_bytes).
MULTIPART_KEY = web.RequestKey("posventa.console.multipart", MultipartReader)
MAX_PARTS = 200
#: After a refused file the rest of the body is still read, so the browser gets the page
#: that says why instead of a reset connection; up to this many bytes.
MAX_DRAIN_BYTES = 256 * 1024 * 1024
_CHUNK = 64 * 1024
#: Reads one file part as it arrives: (chunks, file name) → what the handler gets, or a
#: ``ValidationError`` (a refused file) naming the field.
FileTaker = Callable[[AsyncIterable[bytes], str | None], Awaitable[Any]]
_MALFORMED = (ValueError, AssertionError, KeyError, HttpProcessingError)


@dataclass
class Form:
    data: Mapping[str, Any]
    #: Each field's message: a ConsoleText (translated on the page) or core's text.
    errors: dict[str, str | ConsoleText] = field(default_factory=dict)
    #: What ``take`` made of the form's files (a multipart form's, when the action takes files).
    files: list[Any] = field(default_factory=list)

    @classmethod
    async def read(cls, request: web.Request, *, take: FileTaker | None = None, file_field: str = "files") -> Form:
        """The form's fields. A multipart form's file parts named ``file_field`` go to
        ``take`` one by one as they arrive (a refusal becomes that field's error, and later
        files are skipped); without ``take`` they are read and dropped."""
        reader = request.get(MULTIPART_KEY)
        if reader is None:
            return cls(await form_fields(request))
        form = cls(MultiDictProxy(MultiDict()))
        fields: MultiDict[str] = MultiDict()
        try:
            await form._read_parts(reader, fields, take, file_field)
        except _MALFORMED:
            pass  # as a malformed urlencoded body: what was read so far, the rest missing
        form.data = MultiDictProxy(fields)
        return form

    async def _read_parts(self, reader: MultipartReader, fields: MultiDict[str], take: FileTaker | None,
                          file_field: str) -> None:
        budget = [MAX_DRAIN_BYTES]
        for _ in range(MAX_PARTS):
            part = await reader.next()
            if part is None:
                return
            if not isinstance(part, BodyPartReader):
                await part.release()
                continue
            if part.filename is None:
                value = await _text_part(part, MAX_FIELD * 4)
                if value is not None and part.name:
                    fields.add(part.name, value)
                continue
            # A file input with nothing chosen still sends a part, with an empty name.
            if take is None or part.name != file_field or not part.filename or file_field in self.errors:
                await _drain(part, budget)
                continue
            try:
                self.files.append(await take(_chunks(part), unquote(part.filename, errors="replace")))
            except ValidationError as exc:
                self.errors[file_field] = message_of(exc)
                await _drain(part, budget)

    def text(self, name: str, *, max_len: int = MAX_FIELD) -> str:
        value = self.data.get(name)
        if not isinstance(value, str):
            return ""
        if len(value) > max_len:
            self.errors[name] = _l("at most %(max)d characters", max=max_len)
            return value[:max_len]
        # Browsers send CRLF in textareas; store what a human typed.
        return value.replace("\r\n", "\n")

    def optional(self, name: str, *, max_len: int = 1000) -> str | None:
        return self.text(name, max_len=max_len).strip() or None

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        raw = self.text(name, max_len=30).strip()
        if not raw:
            if required:
                self.errors[name] = _l("required")
            return None
        try:
            value = int(raw)
        except ValueError:
            self.errors[name] = _l("must be a whole number")
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.errors[name] = _l("must be between %(minimum)s and %(maximum)s", minimum=minimum, maximum=maximum)
            return None
        return value

    def all(self, name: str) -> list[str]:
        getall = getattr(self.data, "getall", None)
        values = getall(name, []) if getall else ([self.data[name]] if name in self.data else [])
        return [v for v in values if isinstance(v, str)][:500]

    def checked(self, name: str) -> bool:
        return self.text(name, max_len=10) in ("1", "on", "true", "yes")


async def multipart_csrf(request: web.Request, name: str) -> str | None:
    """The CSRF token of a multipart form: its first part, named ``name`` (every console
    form puts it first). The reader is kept for ``Form.read``."""
    try:
        reader = await request.multipart()
        request[MULTIPART_KEY] = reader
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != name or part.filename is not None:
            return None
        return await _text_part(part, 512)
    except _MALFORMED:
        return None


async def _text_part(part: BodyPartReader, limit: int) -> str | None:
    """A text part's value; None (and the part skipped) past ``limit`` bytes or not UTF-8."""
    data = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        data += chunk
        if len(data) > limit:
            await part.release()
            return None
    try:
        return data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        return None


async def _chunks(part: BodyPartReader) -> AsyncIterable[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk


async def _drain(part: BodyPartReader, budget: list[int]) -> None:
    while chunk := await part.read_chunk(_CHUNK):
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise ValueError("too much to drain")


async def form_fields(request: web.Request) -> MultiDictProxy[str]:
    """The text fields of a urlencoded or multipart body.

    The console takes no uploads. aiohttp spools any file part to a temporary file and
    closes it only when the response is finished, which a cancelled handler (the client
    gone, a shutdown) never reaches; so a file a client sends anyway is closed here and
    dropped. A malformed body reads as empty, as Form.read always treated it: the
    handler reports the missing fields, and the CSRF check refuses it (it was a 500)."""
    try:
        data = await request.post()
    except ValueError:
        return MultiDictProxy(MultiDict())
    fields: MultiDict[str] = MultiDict()
    for key, value in data.items():
        if isinstance(value, web.FileField):
            value.file.close()
        elif isinstance(value, str):
            fields.add(key, value)
    return MultiDictProxy(fields)


_LINE_FIELD = re.compile(r"lines\[(\d+)\]\.(\w+)")


def message_of(exc: DomainError) -> str | ConsoleText:
    """What to show for a refusal, translated on the page: the console's own message, or
    core's words by their code (``core.errors.ErrorText``); else core's text as it is."""
    first = exc.args[0] if exc.args else None
    if isinstance(first, ConsoleText):
        return first
    if exc.error_text is not None:
        # A workflow refusal names activities by value ("answer_sent"): the page shows their labels.
        params = tuple((k, _l(LABELS[v]) if k in _LABELLED_PARAMS and isinstance(v, str) and v in LABELS else v)
                       for k, v in exc.error_text.params)
        return ConsoleText(exc.error_text.template, params, context=exc.error_text.code)
    return str(exc)


#: Parameters of core's refusals whose values are labels (activities, in core.workflow).
_LABELLED_PARAMS = frozenset({"current", "target"})


def domain_errors(exc: DomainError, default_field: str) -> dict[str, str | ConsoleText]:
    """A core error as {field: message} for the form that caused it.

    Core names list items ``lines[2].quantity``; the form's inputs are ``quantity_2``.
    """
    if isinstance(exc, ValidationError) and exc.field:
        line = _LINE_FIELD.fullmatch(exc.field)
        return {f"{line.group(2)}_{line.group(1)}" if line else exc.field: message_of(exc)}
    if isinstance(exc, MissingCaseType):
        # The agent's words, at the button they pressed and at the type selector.
        move = _l(LABELS.get(exc.target.value, exc.target.value))
        return {"activity": _l("Choose the case's type (Request, Complaint or Incident) before “%(move)s”.", move=move),
                "type": _l("Required: the case has no type yet.")}
    if isinstance(exc, InvalidTransition):
        return {"activity": message_of(exc)}
    return {default_field: message_of(exc)}
