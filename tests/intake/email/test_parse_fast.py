"""The parser's shortcuts agree with the stdlib paths they skip.

``parse_email`` reads the common shapes of From/To ("Name <a@b>", "<a@b>", "a@b") and
plain-ASCII subjects without the structured header parser, and shares parsed MIME
structure headers (Content-Type, ...) between messages. Each shortcut must give exactly
what the slow path gives: here every fixture, and generated headers near and across the
shortcuts' edges, are parsed both ways and compared field by field.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import posventa.intake.email.parse as parse_module
from posventa.intake.email.parse import EmailRejected, ParsedEmail, parse_email

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.eml"))
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_NEVER = re.compile(r"(?!)")


@contextlib.contextmanager
def slow_paths() -> Iterator[None]:
    """Every header through the stdlib's structured parser, nothing shared between parses."""
    saved = (parse_module._SIMPLE_MAILBOX, parse_module._PLAIN_UNSTRUCTURED, parse_module._SHARED_HEADER_NAMES)
    parse_module._SIMPLE_MAILBOX = _NEVER
    parse_module._PLAIN_UNSTRUCTURED = _NEVER
    parse_module._SHARED_HEADER_NAMES = frozenset()
    try:
        yield
    finally:
        parse_module._SIMPLE_MAILBOX, parse_module._PLAIN_UNSTRUCTURED, parse_module._SHARED_HEADER_NAMES = saved


def both_ways(raw: bytes) -> tuple[ParsedEmail | str, ParsedEmail | str]:
    def one() -> ParsedEmail | str:
        try:
            return parse_email(raw)
        except EmailRejected as exc:
            return exc.smtp_reply

    fast = one()
    with slow_paths():
        slow = one()
    return fast, slow


def test_every_fixture_parses_the_same_both_ways() -> None:
    for path in FIXTURES:
        raw = path.read_bytes()
        fast, slow = both_ways(raw)
        assert fast == slow, path.name
        assert parse_email(raw) == fast, path.name  # again, with the shared headers warm


def test_the_shortcuts_are_taken_for_a_typical_small_mail() -> None:
    msg = parse_module._parse_tree(b"From: Ana Perez <ana@x.example>\r\nTo: support@example.com\r\n"
                                   b"Subject: Consulta 1\r\n\r\nHola\r\n", parse_module.EmailLimits())
    headers = parse_module._Headers(msg)
    assert parse_module._SIMPLE_MAILBOX.fullmatch(headers.raw("from") or "")
    assert parse_module._SIMPLE_MAILBOX.fullmatch(headers.raw("to") or "")
    assert parse_module._PLAIN_UNSTRUCTURED.fullmatch(headers.raw("subject") or "")
    assert headers.addresses("from") == [("Ana Perez", "ana@x.example")]


def test_shared_headers_stay_bounded() -> None:
    for n in range(parse_module._SHARED_HEADERS_MAX + 50):
        parse_email(b'Content-Type: text/plain; charset="utf-8"; x=%d\r\n\r\nbody\r\n' % n)
    assert len(parse_module._shared_headers) <= parse_module._SHARED_HEADERS_MAX


# Pieces of address and subject syntax, from the plain atoms the shortcuts accept to the
# quoting, comments, encoded words, groups and 8-bit bytes they must leave to the stdlib.
ATOMS = st.text(alphabet="abcXYZ019-_+'!#$%&*/^`{|}~", min_size=1, max_size=6)
SPECIALS = st.sampled_from([" ", "  ", "\t", ".", "..", ",", ";", ":", "\"", "\\", "(", ")", "[", "]", "<", ">",
                            "@", "=", "?", "=?", "?=", "=?utf-8?q?J=C3=B3?=", "\r\n ", "\u00e9", "\u00f1",
                            "\udcc3\udcb1", "\x00", "\x7f", "\u2028"])
PIECES = st.lists(st.one_of(ATOMS, SPECIALS), max_size=12).map("".join)
ADDR = st.builds(lambda local, domain: f"{local}@{domain}",
                 st.lists(ATOMS, min_size=1, max_size=3).map(".".join),
                 st.lists(ATOMS, min_size=1, max_size=3).map(".".join))
MAILBOX = st.one_of(
    ADDR,
    ADDR.map(lambda a: f"<{a}>"),
    st.builds(lambda name, a: f"{name} <{a}>", st.lists(ATOMS, min_size=1, max_size=4).map(" ".join), ADDR),
    st.builds(lambda name, a: f"{name} <{a}>", PIECES, ADDR),
    st.builds(lambda a, tail: f"{a}{tail}", ADDR, PIECES),
    st.builds(lambda head, a: f"{head}{a}", PIECES, ADDR),
    PIECES,
)
SUBJECT = st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                    st.lists(st.one_of(ATOMS, SPECIALS), max_size=15).map("".join))


def _header_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


@SETTINGS
@given(sender=MAILBOX, to=MAILBOX, subject=SUBJECT)
def test_generated_headers_parse_the_same_both_ways(sender: str, to: str, subject: str) -> None:
    raw = (b"From: " + _header_bytes(sender) + b"\r\nTo: " + _header_bytes(to) + b"\r\nSubject: "
           + _header_bytes(subject) + b"\r\nMessage-ID: <a@b>\r\n\r\nHola, mi pedido no lleg\xc3\xb3.\r\n")
    fast, slow = both_ways(raw)
    assert fast == slow


@SETTINGS
@given(content_type=st.sampled_from(['text/plain; charset="utf-8"', "text/plain; charset=iso-8859-1",
                                     "text/plain; format=flowed; delsp=yes", "text/html", "TEXT/PLAIN",
                                     'text/plain; charset="utf-8"; name="a.txt"', "application/pdf",
                                     "text/plain; charset=\"unknown-8bit\"", "garbage", ""]),
       encoding=st.sampled_from(["7bit", "8bit", "quoted-printable", "base64", "binary", "x-uuencode", ""]),
       body=st.sampled_from([b"Hola =C3=B1 mundo=\r\n", b"SG9sYSBtdW5kbw==\r\n", b"caf\xe9\r\n", b"<p>hi</p>\r\n"]))
def test_shared_mime_headers_parse_the_same_both_ways(content_type: str, encoding: str, body: bytes) -> None:
    raw = (b"From: a@b.example\r\nContent-Type: " + content_type.encode() + b"\r\nContent-Transfer-Encoding: "
           + encoding.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    fast, slow = both_ways(raw)
    assert fast == slow
