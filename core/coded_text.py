"""A sentence of core's stored as a message code and the values that fill it, never as
words, so that each reader gets it in their own language: a contact's history
(core.contacts.history) and a case's (core.case_history).

Each sentence is an ``explain`` text (core.errors.ErrorText: the code and its English
template; scripts/i18n extracts it into the console's catalogues under its code). Here,
once for both histories: how values fill a sentence, and a stored entry's code, values and
English ``detail`` as the API, the export and the console read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from posventa.core.errors import ErrorText


def fill(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a sentence's placeholders take them: a list (the fields an edit
    changed, a rule's operators) reads as its items joined by ", "."""
    return {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in values.items()}


def english(text: ErrorText, values: Mapping[str, Any]) -> str:
    """``text``'s English sentence filled with ``values``."""
    return text.template % fill(values)


def columns(text: ErrorText) -> dict[str, Any]:
    """The stored columns of an entry saying ``text`` (``explain(code, template, **values)``):
    its ``code`` and ``params``, no English ``detail``. Filled once here, so a value missing
    from the template is an error where the entry is written rather than where it is read."""
    values = dict(text.params)
    english(text, values)
    return {"code": text.code, "params": values or None, "detail": None}


def read(sentences: Mapping[str, ErrorText], code: str | None, params: Mapping[str, Any] | None,
         detail: str | None) -> dict[str, Any]:
    """A stored entry's ``code`` and ``values`` (null and {} for a code that is not one of
    ``sentences``) and its ``detail``: the code's English sentence, or else the stored text
    (an entry written before codes, as it was written)."""
    if code in sentences:
        values = dict(params or {})
        return {"code": code, "values": values, "detail": english(sentences[code], values)}
    return {"code": None, "values": {}, "detail": detail}
