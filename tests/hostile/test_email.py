"""Bad input over real SMTP: a fuzzed dialogue, mutated real mails through the parser,
oversized and billion-laughs mail, and open-relay probes, against a running Service.

Every attack ends the same way: a legitimate mail sent afterwards (on another
connection) gets 250 and is stored, /healthz answers 200, no reply carries a traceback or
aiosmtpd's generic "500 Error: (SomeException)" (the sign of a handler crash), and no
reply is our own "451 Temporary local problem" safety net (the sign of a bug of ours).
The parser itself is fuzzed as a pure function in tests/intake/email/; here the same
mutations go through the whole door: socket, aiosmtpd, handler, parser, inbox, database.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from email.message import EmailMessage

import aiosmtplib
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from posventa.core.persistence.schema import messages
from posventa.service import Service
from tests.fakes.smtp_sink import SmtpSink
from tests.hostile.conftest import assert_healthy, assert_no_leak, fuzz
from tests.intake.email.test_parse_property import FIXTURES, header_noise
from tests.support import free_port, make_config

MAX_BYTES = 200_000
#: aiosmtpd echoes a bad command back in its 500 reply, stray CRs and all (harmless: the
#: sender only injects into its own session), so a reply line is "NNN", then anything.
REPLY = re.compile(rb"\d{3}(?:[ -].*)?", re.DOTALL)
_ids = itertools.count(1)


@pytest.fixture
async def sink():
    async with SmtpSink() as s:
        yield s


@pytest.fixture
async def smtp(database_url, tmp_path, sink):
    config = make_config(database_url, tmp_path, email={
        "enabled": True, "listen_port": free_port(), "domains": ("example.com", "soporte.example"),
        "address": "support@example.com", "max_message_bytes": MAX_BYTES,
        "outbound": {"host": "127.0.0.1", "port": sink.port}})
    async with Service(config) as service:
        yield service


def base_url(service: Service) -> str:
    return f"http://127.0.0.1:{service.http.bound_port}"


async def stored_in(service: Service) -> int:
    async with service.db.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(messages)
                                   .where(messages.c.direction == "in"))).scalar_one()


async def legitimate_mail_is_stored(service: Service) -> None:
    """The "no loss" half of every attack: a normal customer still gets through."""
    n = next(_ids)
    m = EmailMessage()
    m["From"] = "Ana Pérez <ana@cliente.com>"
    m["To"] = "support@example.com"
    m["Subject"] = f"Pedido {n} no llegó"
    m["Message-ID"] = f"<legit-{n}@cliente.com>"
    m.set_content("Hola, sigo esperando el pedido.")
    _, reply = await aiosmtplib.send(m, hostname="127.0.0.1", port=service.smtp.bound_port, timeout=15)
    assert reply.startswith("2.0.0 OK"), reply
    async with service.db.engine.connect() as conn:
        found = (await conn.execute(select(func.count()).select_from(messages)
                                    .where(messages.c.external_id == f"<legit-{n}@cliente.com>"))).scalar_one()
    assert found == 1


def check_replies(raw: bytes) -> list[bytes]:
    """Every line the server sent is an SMTP reply, and none betrays a crash or a leak."""
    assert_no_leak(raw)
    lines = [line for line in raw.split(b"\r\n") if line]
    for line in lines:
        assert REPLY.fullmatch(line), line[:200]
        # 451 is "storage failed, retry": with the database up it means a bug of ours (the
        # handler's safety net, or a value the database refused), and the mail would loop.
        assert not line.startswith(b"451"), line
        assert not line.startswith(b"500 Error: ("), line
    return lines


async def raw_dialogue(port: int, payload: bytes, *, idle: float = 2.0, limit: float = 15.0) -> bytes:
    """Write ``payload`` at once (pipelined, however broken) and collect the answers until
    the server goes quiet for ``idle`` seconds or closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    try:
        received += await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)  # the banner
        writer.write(payload)
        try:
            await writer.drain()
        except ConnectionError:
            pass  # the server may close first (QUIT, too many errors): that is allowed
        async with asyncio.timeout(limit):
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), idle)
                except TimeoutError:
                    break
                if not chunk:
                    break
                received += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    return bytes(received)


# --- the SMTP dialogue -------------------------------------------------------------------------

VERBS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP", b"VRFY", b"EXPN", b"HELP",
         b"STARTTLS", b"AUTH PLAIN", b"AUTH LOGIN", b"BDAT", b"XCLIENT", b"QUIT", b"mail from:", b"rcpt to:",
         b"MAIL FROM:<>", b"RCPT TO:<support@example.com>", b"MAIL FROM:<ana@cliente.com> SIZE=999999999",
         b"MAIL FROM:<ana@cliente.com> BODY=8BITMIME SMTPUTF8", b"RCPT TO:<victim@elsewhere.org>",
         b"RCPT TO:<support@example.com> NOTIFY=SUCCESS", b".", b"\x00", b"\xff\xfe", b""]
ENDINGS = [b"\r\n", b"\n", b"\r", b"", b"\r\r\n"]
ARGS = st.one_of(
    st.just(b""),
    st.sampled_from([b" <ana@cliente.com>", b" <support@example.com>", b" example.com", b" <>", b"<@a:b@c>",
                     b' <"support@example.com"@evil.com>', b" <support%evil.com@example.com>", b" =?utf-8?q?x?="]),
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.integers(600, 3000).map(lambda n: b" " + b"A" * n),  # past the 512-byte command line limit
)
COMMAND = st.tuples(st.sampled_from(VERBS), ARGS, st.sampled_from(ENDINGS)).map(b"".join)
DATA_BLOCK = st.tuples(st.just(b"MAIL FROM:<ana@cliente.com>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"),
                       header_noise, st.sampled_from([b"\r\n.\r\n", b"\n.\n", b"\r\n.\r\nQUIT\r\n", b""])).map(b"".join)


#: Ends an open DATA and then the session, so most dialogues finish by the server closing
#: the connection instead of by waiting for silence.
CLOSING = b"\r\n.\r\nQUIT\r\n"
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@sqlite_only  # the dialogue is aiosmtpd and our hooks; storage on both databases is fuzzed below
@fuzz(50)
@given(chunks=st.lists(st.one_of(COMMAND, COMMAND, DATA_BLOCK), min_size=1, max_size=25))
async def test_fuzzed_smtp_dialogue_never_crashes_the_server(smtp, tally, chunks):
    tally.add("email.smtp_dialogue")
    check_replies(await raw_dialogue(smtp.smtp.bound_port, b"".join(chunks) + CLOSING))
    await legitimate_mail_is_stored(smtp)


async def test_dialogue_edge_cases(smtp, tally):
    """Named cases the random search may miss, each on its own connection."""
    cases = {
        "data_without_rcpt": (b"EHLO x\r\nMAIL FROM:<a@b.com>\r\nDATA\r\n", b"503"),
        "data_without_mail": (b"EHLO x\r\nDATA\r\n", b"503"),
        "rcpt_without_mail": (b"EHLO x\r\nRCPT TO:<support@example.com>\r\n", b"503"),
        "overlong_command": (b"EHLO " + b"x" * 5000 + b"\r\n", b"500"),
        "bare_lf_commands": (b"EHLO x\nMAIL FROM:<a@b.com>\nRCPT TO:<support@example.com>\nRSET\n", b"250"),
        "binary_garbage": (bytes(range(256)) * 4 + b"\r\n", b"500"),
        # No From header: the envelope sender (with its NUL) is all we know of the customer.
        "nul_in_envelope": (b"EHLO x\r\nMAIL FROM:<a\x00b@c.com>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
                            b"Subject: nul\r\nMessage-ID: <nul-env@c.com>\r\n\r\nhola\r\n.\r\n", b"250 2.0.0"),
        "unknown_verb": (b"FROB\r\n", b"500"),
        "auth_unsupported": (b"EHLO x\r\nAUTH PLAIN AGFkbWluAGFkbWlu\r\n", b"5"),
        "starttls_without_tls": (b"EHLO x\r\nSTARTTLS\r\n", b"454"),
        "size_over_limit": (b"EHLO x\r\nMAIL FROM:<a@b.com> SIZE=%d\r\n" % (MAX_BYTES * 10), b"552"),
    }
    for name, (payload, expected) in cases.items():
        tally.add("email.smtp_dialogue")
        # QUIT last: the server closes, so no answer is missed by waiting for silence.
        lines = check_replies(await raw_dialogue(smtp.smtp.bound_port, payload + b"QUIT\r\n"))
        assert any(line.startswith(expected) for line in lines[1:]), (name, lines)

    # Many RCPTs: past the cap the server says 452 and keeps the ones it took.
    tally.add("email.smtp_dialogue")
    many = b"EHLO x\r\nMAIL FROM:<a@b.com>\r\n" + b"".join(
        b"RCPT TO:<support+%d@example.com>\r\n" % i for i in range(120)) + b"RSET\r\nQUIT\r\n"
    lines = check_replies(await raw_dialogue(smtp.smtp.bound_port, many))
    assert sum(line.startswith(b"250 2.1.5") for line in lines) == 50
    assert any(line.startswith(b"452") for line in lines)

    # A mail body with bare LFs, bare CRs and NULs is stored, cleaned.
    tally.add("email.smtp_dialogue")
    body = (b"EHLO x\r\nMAIL FROM:<ana@cliente.com>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
            b"From: ana@cliente.com\nSubject: bare\rLF\x00\nMessage-ID: <bare-lf@cliente.com>\n\nho\x00la\rque\ntal\r\n.\r\n"
            b"QUIT\r\n")
    lines = check_replies(await raw_dialogue(smtp.smtp.bound_port, body))
    assert lines[-2].startswith(b"250 2.0.0") and lines[-1].startswith(b"221"), lines
    await legitimate_mail_is_stored(smtp)
    await assert_healthy(base_url(smtp))


# --- MIME through SMTP -----------------------------------------------------------------------


def mutate(raw: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    for kind, where, noise in edits:
        lines = raw.split(b"\n")
        index = int(where * (len(lines) - 1))
        at = int(where * len(raw))
        if kind == "insert":
            raw = raw[:at] + noise + raw[at:]
        elif kind == "delete":
            raw = raw[:at] + raw[at + len(noise) + 1:]
        elif kind == "replace_line":
            lines[index] = lines[index].partition(b":")[0] + b": " + noise
            raw = b"\n".join(lines)
        else:
            lines.insert(index, lines[index])
            raw = b"\n".join(lines)
    return raw


@fuzz(50)
@given(fixture=st.sampled_from(FIXTURES),
       edits=st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace_line", "duplicate_line"]),
                                st.floats(0, 1), header_noise), min_size=1, max_size=6))
async def test_mutated_real_mails_through_smtp(smtp, tally, fixture, edits):
    tally.add("email.mime_via_smtp")
    raw = mutate(fixture.read_bytes(), edits)
    try:
        _, reply = await aiosmtplib.send(raw, sender="ana@cliente.com", recipients=["support@example.com"],
                                          hostname="127.0.0.1", port=smtp.smtp.bound_port, timeout=20)
    except aiosmtplib.SMTPResponseException as exc:
        # A refusal is fine when it is ours and permanent: a clear 5xx, never "try later".
        assert 500 <= exc.code < 600, (exc.code, exc.message)
        assert not exc.message.startswith("Error: ("), exc.message
        assert_no_leak(exc.message)
    else:
        assert reply.startswith("2.0.0 OK"), reply
    await legitimate_mail_is_stored(smtp)


# --- size and depth ------------------------------------------------------------------------------


async def send_raw(service: Service, raw: bytes) -> tuple[int, str]:
    try:
        _, reply = await asyncio.wait_for(aiosmtplib.send(
            raw, sender="ana@cliente.com", recipients=["support@example.com"], hostname="127.0.0.1",
            port=service.smtp.bound_port, timeout=60), 90)  # a hang guard, not a speed assertion
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return 250, reply


HEAD = b"From: Ana <ana@cliente.com>\r\nTo: support@example.com\r\nSubject: bomba\r\nMessage-ID: <%s@cliente.com>\r\n"


async def test_oversized_and_nested_mail_get_a_clear_5xx(smtp, tally):
    before = await stored_in(smtp)
    attacks = {
        "oversized_body": HEAD % b"big" + b"\r\n" + (b"x" * 998 + b"\r\n") * (3 * MAX_BYTES // 1000),
        "oversized_one_line": HEAD % b"line" + b"\r\n" + b"y" * (2 * MAX_BYTES),
        # Billion laughs, MIME style: multipart inside multipart, thousands deep, in < 200 KB.
        "nested_multipart": HEAD % b"deep" + b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(3000))
        + b"Content-Type: text/plain\r\n\r\nhola\r\n",
        "nested_rfc822": HEAD % b"fwd" + b"Content-Type: message/rfc822\r\n\r\n" * 5000 + b"Subject: x\r\n\r\nfin\r\n",
        "wide_multipart": HEAD % b"wide" + b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        + b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 3000 + b"--B--\r\n",
        "unterminated_boundaries": HEAD % b"open" + b"".join(
            b'Content-Type: multipart/alternative; boundary="%d"\r\n\r\n--%d\r\n' % (i, i) for i in range(3000)),
    }
    for name, raw in attacks.items():
        tally.add("email.oversized_or_nested")
        code, text = await send_raw(smtp, raw)
        assert 500 <= code < 600, (name, code, text)
        assert_no_leak(text)
        if name.startswith("oversized"):
            assert code == 552, (name, text)
        else:
            assert code == 554 and "5.6.0" in text, (name, text)
    assert await stored_in(smtp) == before  # nothing of a refused mail was kept
    # Right at the limit is still accepted.
    tally.add("email.oversized_or_nested")
    code, text = await send_raw(smtp, HEAD % b"edge" + b"\r\n" + (b"z" * 998 + b"\r\n") * (MAX_BYTES // 1000 - 5))
    assert code == 250, text
    await legitimate_mail_is_stored(smtp)
    await assert_healthy(base_url(smtp))


async def test_other_clients_are_served_while_bombs_are_parsed(smtp, tally):
    """The parser runs off the event loop: legitimate mail goes through while several
    hostile connections are being handled at the same time."""
    bomb = HEAD % b"bomb" + b"Content-Type: message/rfc822\r\n\r\n" * 5000 + b"\r\nfin\r\n"
    hostile = [asyncio.create_task(send_raw(smtp, bomb)) for _ in range(4)]
    garbage = [asyncio.create_task(raw_dialogue(smtp.smtp.bound_port, b"\xff" * 4000 + b"\r\n" * 200 + b"QUIT\r\n"))
               for _ in range(4)]
    for _ in range(5):
        await legitimate_mail_is_stored(smtp)
    for code, text in await asyncio.gather(*hostile):
        assert code == 554, text
    for raw in await asyncio.gather(*garbage):
        check_replies(raw)
    tally.add("email.oversized_or_nested", 8)


# --- open relay -------------------------------------------------------------------------------

FOREIGN = [
    "victim@elsewhere.org", "VICTIM@ELSEWHERE.ORG", '"support@example.com"@evil.com',
    "support@example.com.evil.com", "support@example.comevil.com", "support@evil-example.com",
    "victim%elsewhere.org@example.com", "victim%elsewhere.org@EXAMPLE.COM", "elsewhere.org!victim@example.com",
    '"victim@elsewhere.org"@example.com', "@example.com:victim@elsewhere.org", "@example.com,@x.org:v@evil.com",
    "victim@[127.0.0.1]", "victim@[IPv6:::1]", "support@localhost",
    "postmaster@evil.com", "victim@xn--exmple-cua.com", "support@example.co", "support@com",
]
#: Refused by aiosmtpd's address syntax check (553 5.1.3) before our hook sees them.
MALFORMED = ["victim@elsewhere.org.", "support@example.com@evil.com", "support@example.com.", "<victim@evil.com",
             "victim@evil.com>", "victim @evil.com", "victim@evil.com\tsupport@example.com"]
OURS = ["support@example.com", "SUPPORT@EXAMPLE.COM", "support+abc123@example.com", "ventas@soporte.example",
        "@relay.example.net:support@example.com"]


async def rcpt(port: int, address: str, *, mail_from: str = "ana@cliente.com") -> list[bytes]:
    payload = f"EHLO probe.example\r\nMAIL FROM:<{mail_from}>\r\nRCPT TO:<{address}>\r\nRSET\r\nQUIT\r\n"
    return check_replies(await raw_dialogue(port, payload.encode()))


def rcpt_reply(lines: list[bytes]) -> bytes:
    # banner, EHLO (multi-line), MAIL, RCPT, RSET, QUIT: the RCPT answer follows the MAIL one.
    after_ehlo = [line for line in lines[1:] if not line.startswith(b"250-")][1:]
    return after_ehlo[1]


async def test_open_relay_probes_are_refused(smtp, sink, tally):
    port = smtp.smtp.bound_port
    for address in FOREIGN:
        for sender in ("ana@cliente.com", "support@example.com", ""):  # spoofing ourselves changes nothing
            tally.add("email.open_relay")
            answer = rcpt_reply(await rcpt(port, address, mail_from=sender))
            assert answer.startswith(b"550 5.7.1"), (address, sender, answer)
    for address in MALFORMED:
        tally.add("email.open_relay")
        answer = rcpt_reply(await rcpt(port, address))
        assert answer[:1] == b"5", (address, answer)
    for address in OURS:
        tally.add("email.open_relay")
        answer = rcpt_reply(await rcpt(port, address))
        assert answer.startswith(b"250"), (address, answer)

    # A whole relay attempt: a refused RCPT, then DATA anyway.
    tally.add("email.open_relay")
    lines = check_replies(await raw_dialogue(port, (
        b"EHLO x\r\nMAIL FROM:<spam@evil.com>\r\nRCPT TO:<victim@elsewhere.org>\r\nDATA\r\n"
        b"Subject: buy\r\n\r\nspam\r\n.\r\nQUIT\r\n")))
    assert any(line.startswith(b"503") for line in lines), lines
    # Mixed recipients: only ours are taken, and nothing ever leaves through our relay.
    tally.add("email.open_relay")
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = "x@evil.com", "victim@elsewhere.org", "hi", "<relay@evil.com>"
    m.set_content("relay me")
    errors, _ = await aiosmtplib.send(m, hostname="127.0.0.1", port=port, timeout=10,
                                      recipients=["victim@elsewhere.org", "support@example.com"])
    assert set(errors) == {"victim@elsewhere.org"} and errors["victim@elsewhere.org"].code == 550
    await asyncio.sleep(0.5)  # give a (wrong) relay time to happen
    relayed = [c.rcpt_tos for c in sink.messages if not set(c.rcpt_tos) <= {"x@evil.com", "ana@cliente.com"}]
    assert relayed == []  # our acks go to senders only; nothing to the foreign recipients
    await legitimate_mail_is_stored(smtp)
    await assert_healthy(base_url(smtp))
