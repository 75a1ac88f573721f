"""Inline-button payloads: a (question, value) pair packed into Telegram's 64-byte
``callback_data``.

The first character says how to read the rest::

    T<case>|<value>      case_type:<case>      (the inbox's "what kind of case is it?")
    K<case>|<value>      kb_feedback:<case>    ("did this solve it?")
    =<question>|<value>  any other question, verbatim
    #<index>             too long to pack: the index of the button on the message; the
                         question is read back from the outbox row that sent it

The data comes back from the customer's client, so it is untrusted: decoding is total
(anything malformed decodes to None) and core checks that the question's case belongs
to the customer who pressed.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BYTES = 64

_SHORT = {"case_type": "T", "kb_feedback": "K"}
_LONG = {v: k for k, v in _SHORT.items()}


@dataclass(frozen=True, slots=True)
class Packed:
    """What a button carries: either the pair itself or an index to look it up by."""

    question: str | None = None
    value: str | None = None
    index: int | None = None


def encode(question: str, value: str, index: int) -> str:
    kind, sep, rest = question.partition(":")
    if sep and kind in _SHORT and "|" not in rest:
        data = f"{_SHORT[kind]}{rest}|{value}"
    elif "|" not in question:
        data = f"={question}|{value}"
    else:
        data = ""
    # Only what decodes back to the same pair is used; anything else goes by index.
    if data and len(data.encode()) <= MAX_BYTES and decode(data) == Packed(question=question, value=value):
        return data
    return f"#{index}"


def decode(data: str | None) -> Packed | None:
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    tag, body = data[0], data[1:]
    if tag == "#":
        return Packed(index=int(body)) if body.isdigit() and len(body) <= 3 else None
    question, sep, value = body.partition("|")
    if not sep or not question:
        return None
    if tag in _LONG:
        return Packed(question=f"{_LONG[tag]}:{question}", value=value)
    if tag == "=":
        return Packed(question=question, value=value)
    return None
