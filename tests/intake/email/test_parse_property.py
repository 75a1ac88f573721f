"""Property test: arbitrary bytes and mutated real messages never escape the contract.

``parse_email`` returns a well-formed ParsedEmail or raises EmailRejected with a 5xx
reply. The 451 reply is the safety net for *our* bugs, so seeing it here is a failure.
The per-example deadline is generous (machines are noisy); it is there to catch
super-linear behaviour, which on these input sizes shows up as seconds, not milliseconds.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posventa.intake.email.parse import EmailLimits, EmailRejected, parse_email
from tests.intake.email.invariants import assert_well_formed

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.eml"))
SMALL = EmailLimits(max_attachment_bytes=2_000, max_total_attachment_bytes=3_000, max_parts=30, max_depth=8, max_text_chars=5_000)
SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("EMAIL_FUZZ_EXAMPLES", "300")),
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces that steer random input towards the parser's interesting paths.
MIME_TOKENS = [
    b"\n", b"\r\n", b"\r", b"\n\n", b" ", b"\t", b":", b";", b",", b"<", b">", b"(", b")", b'"', b"\\", b"=", b"@",
    b"--", b"--b", b"--b--", b"=?utf-8?q?", b"=?iso-8859-1?b?", b"?=", b"=C3=B1", b"=\n", b"\x00", b"\xff", b"\xc3",
    b"Content-Type: multipart/mixed; boundary=b", b"Content-Type: multipart/alternative; boundary=b",
    b"Content-Type: message/rfc822", b"Content-Type: text/html", b"Content-Type: text/plain; charset=",
    b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Disposition: attachment; filename*=UTF-8''a%C3%B1o.pdf", b"Content-ID: <x@y>",
    b"From: ", b"To: ", b"Subject: ", b"Date: ", b"Message-ID: ", b"References: ", b"Auto-Submitted: ",
    b"<blockquote>", b"<script>", b"<a href='", b"<!--", b"On Mon wrote:", b"> ", b"-----Original Message-----",
]
header_noise = st.lists(st.one_of(st.sampled_from(MIME_TOKENS), st.binary(max_size=8)), max_size=40).map(b"".join)


def check(raw: bytes) -> None:
    try:
        parsed = parse_email(raw, limits=SMALL)
    except EmailRejected as rejected:
        assert 500 <= rejected.smtp_code < 600, rejected.smtp_reply
        assert rejected.__cause__ is None  # our own refusal, not a wrapped crash
        return
    assert_well_formed(parsed, SMALL)


@SETTINGS
@given(st.binary(max_size=4_000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@SETTINGS
@given(header_noise, header_noise)
def test_token_soup(head: bytes, body: bytes) -> None:
    check(head + b"\n\n" + body)


@SETTINGS
@given(
    fixture=st.sampled_from(FIXTURES),
    edits=st.lists(
        st.tuples(st.sampled_from(["insert", "delete", "replace_line", "duplicate_line"]), st.floats(0, 1), header_noise),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_real_messages(fixture: Path, edits: list[tuple[str, float, bytes]]) -> None:
    raw = fixture.read_bytes()
    for kind, where, noise in edits:
        lines = raw.split(b"\n")
        index = int(where * (len(lines) - 1))
        if kind == "insert":
            at = int(where * len(raw))
            raw = raw[:at] + noise + raw[at:]
        elif kind == "delete":
            at = int(where * len(raw))
            raw = raw[:at] + raw[at + len(noise) + 1 :]
        elif kind == "replace_line":
            # Header lines are early; aiming at them keeps the name and mangles the value.
            name = lines[index].partition(b":")[0]
            lines[index] = name + b": " + noise
            raw = b"\n".join(lines)
        else:
            lines.insert(index, lines[index])
            raw = b"\n".join(lines)
    check(raw)
