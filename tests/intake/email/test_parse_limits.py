"""Hostile and oversized input: every case ends in a ParsedEmail or a clear EmailRejected.

No timing assertions (the benchmarks do timing); the structure of each attack is chosen
so that an unbounded implementation would not finish within any sane test run.
"""

from __future__ import annotations

import base64
import random

import pytest

from posventa.intake.email.parse import EmailLimits, EmailRejected, ParsedEmail, parse_email

HEAD = b"From: Ana <ana@example.com>\nTo: soporte@posventa.example\nSubject: prueba\nMessage-ID: <t@example.com>\n"


def _attachment(name: str, data: bytes) -> bytes:
    encoded = base64.encodebytes(data)
    return (
        b"--B\nContent-Type: application/octet-stream\n"
        b'Content-Disposition: attachment; filename="' + name.encode() + b'"\n'
        b"Content-Transfer-Encoding: base64\n\n" + encoded + b"\n"
    )


def _mixed(*parts: bytes, text: bytes = b"Mando los archivos.") -> bytes:
    body = b"--B\nContent-Type: text/plain; charset=utf-8\n\n" + text + b"\n" + b"".join(parts) + b"--B--\n"
    return HEAD + b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n' + body


def test_huge_attachment_is_dropped_and_named_with_default_limits() -> None:
    huge = random.Random(1).randbytes(10_000_001)  # one byte over the 10 MB default
    parsed = parse_email(_mixed(_attachment("backup.zip", huge), _attachment("foto.jpg", b"\xff\xd8small")))
    assert parsed.dropped_attachments == ("backup.zip",)
    assert [(a.filename, a.data) for a in parsed.attachments] == [("foto.jpg", b"\xff\xd8small")]
    assert parsed.text == "Mando los archivos."


def test_total_attachment_budget_keeps_the_first_ones_that_fit() -> None:
    limits = EmailLimits(max_attachment_bytes=500, max_total_attachment_bytes=1000)
    parsed = parse_email(
        _mixed(*(_attachment(f"f{i}.bin", bytes([i]) * 400) for i in range(4)), _attachment("big.bin", b"x" * 501)),
        limits=limits,
    )
    assert [a.filename for a in parsed.attachments] == ["f0.bin", "f1.bin"]
    assert parsed.dropped_attachments == ("f2.bin", "f3.bin", "big.bin")


def test_too_many_parts_is_rejected() -> None:
    raw = _mixed(*(_attachment(f"{i}.txt", b"x") for i in range(300)))
    with pytest.raises(EmailRejected) as caught:
        parse_email(raw)
    assert (caught.value.smtp_code, caught.value.smtp_status) == (554, "5.6.0")
    assert caught.value.smtp_reply == "554 5.6.0 message has too many MIME parts"


def _nested_multipart(depth: int) -> bytes:
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth))
    return HEAD + opening + b"Content-Type: text/plain\n\nhola\n"


def test_billion_laughs_nesting_is_rejected() -> None:
    # 50,000 levels: a parser that recursed or re-checked every boundary per line would
    # blow the stack or run for hours; ours stops at max_depth while parsing.
    with pytest.raises(EmailRejected) as caught:
        parse_email(_nested_multipart(50_000))
    assert caught.value.smtp_reply == "554 5.6.0 MIME structure nested too deeply"


def test_nested_message_rfc822_forwards_are_bounded_too() -> None:
    raw = HEAD + b"Content-Type: message/rfc822\n\n" * 5_000 + b"Subject: x\n\nfin\n"
    with pytest.raises(EmailRejected):
        parse_email(raw)


def test_nesting_just_under_the_limit_is_parsed() -> None:
    parsed = parse_email(_nested_multipart(18))  # + the top-level message and the leaf = 20
    assert parsed.text == "hola"


def test_a_wide_tree_of_many_lines_per_part_is_bounded_by_the_line_limit() -> None:
    raw = _nested_multipart(18) + b"\n" * 600_001
    with pytest.raises(EmailRejected) as caught:
        parse_email(raw)
    assert (caught.value.smtp_code, caught.value.smtp_status) == (552, "5.3.4")


def test_too_many_header_fields_is_rejected() -> None:
    raw = b"".join(b"X-Filler-%d: v\n" % i for i in range(5_000)) + HEAD + b"\nhola\n"
    with pytest.raises(EmailRejected, match="too many header fields"):
        parse_email(raw)


def test_message_over_the_size_limit_is_rejected_before_parsing() -> None:
    with pytest.raises(EmailRejected) as caught:
        parse_email(HEAD + b"\n" + b"a" * 2_000, limits=EmailLimits(max_message_bytes=1_000))
    assert caught.value.smtp_reply == "552 5.3.4 message too big"


@pytest.mark.parametrize(
    "header",
    [
        b"From: " + b"(" * 100_000,  # nested comments: RecursionError in the stdlib parser
        b"From: " + b'"' * 100_000,  # quadratic in the stdlib structured parser
        b"To: " + b"a@b.c, " * 200_000,
        b"Content-Type: text/plain; charset=" + b"(" * 100_000,
        b"Content-Type: multipart/mixed; boundary=" + b'"' * 50_000,
        b"Date: " + b"Mon, 32 Foo 99999999 99:99:99 +9999" * 1000,
        b"Subject: " + b"=?utf-8?q?=C3?= " * 50_000,
        b"Subject: " + b"=?x-nonexistent?b?////?= " * 50_000,
        b"Message-ID: " + b"<" * 100_000,
        b"References: " + b"<a@b> " * 200_000,
    ],
    ids=lambda h: h[:30].decode(errors="replace"),
)
def test_hostile_headers_parse_with_bounded_fields(header: bytes) -> None:
    parsed = parse_email(header + b"\n\nhola\n")
    assert isinstance(parsed, ParsedEmail)
    assert len(parsed.subject) <= 998 and "\n" not in parsed.subject
    assert len(parsed.to) <= 100 and len(parsed.references) <= 50
    assert parsed.from_address == "" or "@" in parsed.from_address


def test_eight_bit_utf8_headers_are_decoded() -> None:
    raw = "From: José Peña <jose@example.com>\nSubject: Atención al cliente – ñandú\n\nhola\n".encode()
    parsed = parse_email(raw)
    assert (parsed.from_name, parsed.subject) == ("José Peña", "Atención al cliente – ñandú")


def test_text_is_cut_at_max_text_chars() -> None:
    raw = HEAD + b"\n" + b"palabra " * 100_000
    parsed = parse_email(raw, limits=EmailLimits(max_text_chars=5_000))
    assert len(parsed.full_text) <= 5_000 and parsed.full_text.startswith("palabra palabra")


def test_html_bomb_body_is_rendered_within_limits() -> None:
    raw = HEAD + b"Content-Type: text/html\n\n<p>Hola</p>" + b"<a b='>' " * 200_000
    parsed = parse_email(raw, limits=EmailLimits(max_text_chars=10_000))
    assert parsed.full_text.startswith("Hola") and len(parsed.full_text) <= 10_000


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 1000,
        b"\r\r\r\n\n\r",
        b":" * 10_000,
        b"From:\n\n",
        b"Content-Type: multipart/mixed\n\nno boundary at all\n",
        b'Content-Type: multipart/alternative; boundary="x"\n\n--x\n--x\n--x--\n',
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n!!!not base64$$$\n",
        b"Content-Type: application/pdf\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n#0V%T\n`\nend\n",
        b"Content-Type: text/plain; charset=unicode_escape\n\n\\N{BLACK STAR} \\x41\n",
        b"Content-Type: message/rfc822\n\n",
        b"Content-Type: message/delivery-status\n\nAction: failed\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\n\n--r\n--r--\n",
    ],
)
def test_malformed_mime_never_crashes(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert isinstance(parsed, ParsedEmail)


def test_unicode_escape_is_not_a_charset() -> None:
    raw = b"Content-Type: text/plain; charset=unicode_escape\n\n\\N{BLACK STAR} ok\n"
    assert parse_email(raw).text == "\\N{BLACK STAR} ok"


def test_random_garbage_bytes_parse() -> None:
    garbage = random.Random(7).randbytes(200_000)
    parsed = parse_email(garbage)
    assert isinstance(parsed, ParsedEmail)
    assert "\ud800" not in parsed.full_text


@pytest.mark.parametrize(
    ("subject", "autoreply"),
    [
        ("Respuesta automática: Su consulta", True),
        ("Resposta automática: Seu pedido", True),
        ("Out of Office: Your order", True),
        ("Auto: Re: Pedido", True),
        ("Ausente: Re: Su consulta [#77]", True),
        ("Ausente el técnico en la visita", False),  # a complaint, not a robot
        ("Automatic replies are annoying", False),
        ("Re: Reply from our office", False),
    ],
)
def test_out_of_office_subjects(subject: str, autoreply: bool) -> None:
    raw = HEAD.replace(b"Subject: prueba", b"Subject: " + subject.encode()) + b"\nhola\n"
    assert parse_email(raw).x_autoreply is autoreply


def test_buffers_other_than_bytes_are_accepted() -> None:
    raw = HEAD + b"\nhola\n"
    assert parse_email(bytearray(raw)) == parse_email(memoryview(raw)) == parse_email(raw)
