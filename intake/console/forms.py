"""Reading HTML form posts: bounded strings, optional integers, and errors by field.

A browser form is untrusted input like any other. Each getter bounds what it returns,
and a bad value becomes a message next to its field instead of an exception page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from posventa.core.errors import DomainError, InvalidTransition, ValidationError
from posventa.core.workflow import MissingCaseType
from posventa.intake.console.i18n import ConsoleText, _l
from posventa.intake.console.labels import LABELS

MAX_FIELD = 100_000


@dataclass
class Form:
    data: Mapping[str, Any]
    #: Each field's message: a ConsoleText (translated on the page) or core's text.
    errors: dict[str, str | ConsoleText] = field(default_factory=dict)

    @classmethod
    async def read(cls, request: web.Request) -> Form:
        return cls(await form_fields(request))

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
    """What to show for a refusal: the console's own message (translated on the page),
    or core's text as it is."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, ConsoleText) else str(exc)


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
