"""Injection through the REST API's filters (SQL) and into outbound mail (headers).

SQL: every filter of ``/api/v1/cases`` and of the survey panel gets classic payloads and
random text. The answer is the right result (a payload is data: it matches nothing, or
exactly the rows that contain it) or a clear 4xx; never a 500, never more rows than an
honest query, never a driver message; and the tables are all still there afterwards.

Headers: case titles, agent text, contact names and addresses carrying CR/LF (raw,
RFC 2047-encoded, Unicode separators) reach the real outbound email channel; what the
SMTP sink receives has only our headers and only the customer as recipient.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import unicodedata
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from posventa.core.domain import ChannelName, EmailThreading, InboundMessage, ClaimedDelivery
from posventa.core.persistence.schema import cases, outbox, rule_instances, sales
from posventa.intake.email.compose import compose_email
from posventa.service import Service
from tests.core.surveys.conftest import CATALOG, sale
from tests.fakes.smtp_sink import SmtpSink
from tests.hostile.conftest import assert_healthy, assert_no_leak, fuzz
from tests.support import API_TOKEN, FakeClock, free_port, make_config

PAYLOADS = [
    "' OR '1'='1", "' OR 1=1 --", "1 OR 1=1", "1; DROP TABLE cases; --", "'; DROP TABLE cases; --",
    "' UNION SELECT token_hash, 1, 1 FROM webchat_sessions --", "1 UNION SELECT NULL--", "%", "_", "%%", "\\",
    "%' --", "1)) OR ((1=1", "0x31", "' AND SLEEP(5)--", "'; SELECT pg_sleep(5); --",
    "' || (SELECT sqlite_version()) || '", "1 AND 1=CAST((SELECT version()) AS int)", "\x00", "a\x00b", "%00",
    "9" * 30, "-9" + "9" * 30, "-1", "1e3", "1.5", " 1", "0", "\u202e", "${7*7}", "{{7*7}}", "ñ' OR 'ñ'='ñ",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "x" * 5000, "true", "null", "[]",
]
#: Where the database kind changes nothing (mail composition) SQLite alone keeps the folder
#: fast; random text goes to PostgreSQL, the stricter of the two (NUL, integer ranges).
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
CASE_TEXTS = ["impresora rota", "factura duplicada", "100% fallo_x"]
CASE_FILTERS = ["q", "type", "channel", "activity", "category", "assigned", "open", "limit", "offset"]
PANEL_FILTERS = ["operator", "seller", "product", "rule", "from", "to", "section", "limit", "offset", "format"]


@pytest.fixture
async def api(database_url, tmp_path):
    clock = FakeClock()
    service = Service(make_config(database_url, tmp_path, surveys={"enabled": True, "timezone": "UTC"}),
                      clock=clock)
    async with service:
        await service.surveys.catalog.import_toml(CATALOG)
        results, errors = await service.surveys.sales.record_many(
            [sale(f"S-{i}", seller=seller, telegram_id=str(5000 + i), closed_at="2026-02-01")
             for i, seller in enumerate(["marta", "marta", "juan"])])
        assert not errors
        for i, text in enumerate(CASE_TEXTS):
            await service.inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id=f"m{i}",
                                                       sender=str(100 + i), text=text))
        base = f"http://127.0.0.1:{service.http.bound_port}"
        async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http


async def get(http: aiohttp.ClientSession, path: str, params: dict[str, str]) -> tuple[int, Any]:
    async with http.get(path, params=params) as r:
        text = await r.text()
        assert r.status != 500 and r.status < 600, (path, params, r.status, text[:300])
        assert_no_leak(text, [API_TOKEN])
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, text


async def tables_intact(service: Service) -> None:
    async with service.db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(cases))).scalar_one() == 3
        assert (await conn.execute(select(func.count()).select_from(sales))).scalar_one() == 3
        assert (await conn.execute(select(func.count()).select_from(rule_instances))).scalar_one() == 6


async def check_case_filter(http: aiohttp.ClientSession, name: str, value: str) -> None:
    status, body = await get(http, "/api/v1/cases", {name: value})
    if status >= 400:
        assert status in (400, 404, 422) and set(body) >= {"error", "message"}, body
        return
    found = body["cases"]
    assert len(found) <= 3  # never more than there is
    if value == "":
        return  # an empty parameter is no filter
    if name == "q":
        # The payload is data: each case found either is the one numbered so, or shows
        # where it matched, every highlighted word (from stored text) beginning with one
        # of the payload's words, accents and case aside.
        words = _words(value)
        for case in found:
            match = case["match"]
            if match["source"] == "number":
                assert case["number"] == _number(value), (value, case)
                continue
            marked = [w for a, b in match["highlights"] for w in _words(match["snippet"][a:b])]
            assert words and marked and all(any(m.startswith(w) for w in words) for m in marked), (value, match)
    elif name in ("assigned", "category"):
        assert found == [], (name, value, found)  # nobody is assigned, nothing categorised
    elif name in ("type", "channel", "activity"):
        assert value in ("unclassified", "telegram", "preliminary_analysis"), (name, value)


def _words(text: str) -> list[str]:
    bare = unicodedata.normalize("NFKD", text.lower())
    return re.findall(r"[^\W_]+", "".join(ch for ch in bare if not unicodedata.combining(ch)))


def _number(text: str) -> int | None:
    bare = text.strip().removeprefix("#")
    return int(bare) if bare.isascii() and bare.isdigit() else None


async def test_sql_payloads_in_case_filters(api, tally):
    service, http = api
    for name in CASE_FILTERS:
        for value in PAYLOADS:
            tally.add("injection.sql_case_filters")
            await check_case_filter(http, name, value)
    # Every parameter at once, and a parameter given twice.
    tally.add("injection.sql_case_filters", 2)
    status, _ = await get(http, "/api/v1/cases", {n: "' OR '1'='1" for n in CASE_FILTERS})
    assert status == 422
    async with http.get("/api/v1/cases?q=factura&q=' OR 1=1 --") as r:
        assert r.status == 200 and [c["title"] for c in (await r.json())["cases"]] == ["factura duplicada"]
    await tables_intact(service)
    await assert_healthy(f"http://127.0.0.1:{service.http.bound_port}")


@postgres_only
@fuzz(40, deadline_seconds=10)
@given(name=st.sampled_from(CASE_FILTERS), value=st.text(max_size=60))
async def test_random_text_in_case_filters(api, tally, name, value):
    tally.add("injection.sql_case_filters")
    await check_case_filter(api[1], name, value)


async def check_panel(http: aiohttp.ClientSession, path: str, params: dict[str, str]) -> None:
    status, body = await get(http, path, params)
    if status >= 400:
        assert status in (400, 404, 422), (params, status, body)
        return
    if isinstance(body, str):  # format=csv
        assert body.count("\n") <= 1 + 6, body  # a header and at most every survey
        return
    if path.endswith("panel"):
        assert sum(len(v) for v in body["items"].values()) <= 4 * 6
        assert all(0 <= n <= 6 for n in body["counts"].values())
        if params.keys() & {"operator", "seller", "product", "rule"}:
            assert body["counts"]["executed"] == 0  # nothing has been executed at all
    else:
        assert len(body["sellers"]) == 0  # no executed surveys: no scores for anyone


async def test_sql_payloads_in_panel_filters(api, tally):
    service, http = api
    baseline = await get(http, "/api/v1/surveys/panel", {})
    assert baseline[0] == 200 and baseline[1]["counts"]["not_executed"] + baseline[1]["counts"]["executed"] <= 6
    for path in ("/api/v1/surveys/panel", "/api/v1/surveys/seller-scores"):
        for name in PANEL_FILTERS:
            for value in [*PAYLOADS, "0001-01-01", "9999-12-31", "2026-02-30", "marta", "PRN", "csv"]:
                tally.add("injection.sql_panel_filters")
                await check_panel(http, path, {name: value})
    # A payload as an operator must not widen the scope to every rule.
    tally.add("injection.sql_panel_filters")
    status, body = await get(http, "/api/v1/surveys/panel", {"operator": "' OR '1'='1"})
    assert status == 200 and body["counts"] == {s: 0 for s in body["counts"]}
    await tables_intact(service)
    await assert_healthy(f"http://127.0.0.1:{service.http.bound_port}")


# --- the create-case body: wrong types and NULs -----------------------------------------------

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                                     st.text(max_size=30), st.sampled_from(PAYLOADS)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)


@postgres_only
@fuzz(60, deadline_seconds=10)
@given(title=json_values, description=json_values, contact=st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"name": json_values, "email": json_values, "phone": json_values})),
    extra=st.dictionaries(st.sampled_from(["type", "organization", "category_id", "subcategory_id", "language",
                                           "agent"]), json_values, max_size=3))
async def test_create_case_with_hostile_fields(api, tally, title, description, contact, extra):
    tally.add("injection.api_bodies")
    service, http = api
    async with http.post("/api/v1/cases", json={"title": title, "description": description, "contact": contact,
                                                **extra}) as r:
        text = await r.text()
        assert r.status in (201, 400, 404, 422), (r.status, text[:300])
        assert_no_leak(text, [API_TOKEN])
        if r.status == 201:
            number = (await r.json())["number"]
            async with http.get(f"/api/v1/cases/{number}") as again:
                assert again.status == 200


# --- header injection into outbound mail ----------------------------------------------------

EVIL = "evil@attacker.example"
CRLF_TRICKS = [f"\r\nBcc: {EVIL}", f"\nBcc: {EVIL}", f"\rBcc: {EVIL}", f"\r\n\r\nBcc: {EVIL}", f"\u2028Bcc: {EVIL}",
               f"\x85Bcc: {EVIL}", f"\r\n Bcc: {EVIL}", f"\r\nX-Injected: 1\r\nTo: {EVIL}",
               f"=?utf-8?q?x=0D=0ABcc:_{EVIL}?=", "=?utf-8?b?eA0KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?="]
OUR_HEADERS = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "reply-to",
               "auto-submitted", "x-auto-response-suppress", "mime-version", "content-type",
               "content-transfer-encoding", "content-language"}
_numbers = itertools.count(1)


@pytest.fixture
async def sink():
    async with SmtpSink() as s:
        yield s


@pytest.fixture
async def mail_service(database_url, tmp_path, sink):
    config = make_config(database_url, tmp_path, email={
        "enabled": True, "listen_port": free_port(), "domains": ("example.com",), "address": "support@example.com",
        "outbound": {"host": "127.0.0.1", "port": sink.port}})
    async with Service(config) as service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http


async def settle(service: Service, timeout: float = 20.0) -> dict[str, int]:
    """Wait until every outbox item is sent or failed; returns the counts by status."""
    async with asyncio.timeout(timeout):
        while True:
            async with service.db.engine.connect() as conn:
                rows = dict((await conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))).all())
            if set(rows) <= {"sent", "failed"}:
                return rows
            await asyncio.sleep(0.1)


def assert_clean_mail(captured, allowed_rcpts: set[str]) -> None:
    assert set(captured.rcpt_tos) <= allowed_rcpts, captured.rcpt_tos
    head = captured.raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    names = {line.split(":", 1)[0].strip().lower() for line in head.split("\r\n") if line and not line[0].isspace()}
    assert names <= OUR_HEADERS, (names - OUR_HEADERS, head)
    m = captured.message
    for name, value in m.items():
        assert "\n" not in str(value) and "\r" not in str(value), (name, value)
    assert EVIL not in " ".join(str(v) for _, v in m.items() if _.lower() != "subject"), head


@sqlite_only
async def test_header_injection_through_api_fields(mail_service, sink, tally):
    service, http = mail_service
    for trick in CRLF_TRICKS:
        tally.add("injection.mail_headers", 3)
        async with http.post("/api/v1/cases", json={
                "title": f"Pedido{trick}", "description": f"desc{trick}", "organization": f"Org{trick}", "type": "request",
                "contact": {"name": f"Ana{trick}", "email": "ana@cliente.com"}, "agent": "maria"}) as r:
            assert r.status in (201, 422), await r.text()
            if r.status != 201:
                continue
            number = (await r.json())["number"]
        async with http.post(f"/api/v1/cases/{number}/reply", json={"text": f"Hola{trick}\r\n.\r\nMAIL FROM:<x@y.z>"
                                                                             f"\r\nRCPT TO:<{EVIL}>\r\nDATA\r\n"}) as r:
            assert r.status == 202, await r.text()
    # Addresses: each is refused when the case is opened, or fails permanently when sent.
    for bad in [f"ana@cliente.com\r\nBcc: {EVIL}", f"ana@cliente.com,{EVIL}", f"ana@cliente.com>{EVIL}",
                f"ana@cliente.com%{EVIL}", f"{EVIL}\x00ana@cliente.com", f'"ana@cliente.com"@{EVIL.split("@")[1]}x',
                "ana@cliente.com\u2028x", f"ana@cliente.com;{EVIL}"]:
        tally.add("injection.mail_headers")
        async with http.post("/api/v1/cases", json={"title": "t", "description": "d", "contact": {"email": bad},
                                                    "type": "request"}) as r:
            text = await r.text()
            assert r.status in (201, 422), text
            assert_no_leak(text)
            if r.status == 201:
                number = (await r.json())["number"]
                async with http.post(f"/api/v1/cases/{number}/reply", json={"text": "hola"}) as reply:
                    assert reply.status in (202, 422), await reply.text()
    await settle(service)
    assert sink.messages, "the legitimate replies should have been sent"
    for captured in sink.messages:
        assert_clean_mail(captured, {"ana@cliente.com"})
    await assert_healthy(f"http://127.0.0.1:{service.http.bound_port}")


@sqlite_only
async def test_header_injection_through_inbound_mail(mail_service, sink, tally):
    """A customer's mail controls the Subject (our case title, echoed in every reply), the
    From display name and the Message-ID/References we thread with. Raw and RFC 2047
    encoded CR/LF in each must not add a header to our acknowledgement or reply."""
    service, http = mail_service
    encoded = [f"=?utf-8?q?x=0D=0ABcc:_{EVIL}?=", "=?utf-8?b?eA0KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?=",
               f"=?iso-8859-1?q?x=0ABcc:_{EVIL}?=", "=?utf-8?q?x=0D=0A=0D=0Abody?="]
    vectors = ([{"subject": f"Pedido {e}"} for e in encoded]
               + [{"subject": f"Pedido {e}", "msgid": f"<{e.replace(' ', '_')}>"} for e in encoded[:2]]
               + [{"references": f"<a@b> <{e}>", "in_reply_to": f"<{e}>"} for e in encoded[:2]]
               + [{"from_name": e} for e in encoded[:2]])
    for v in vectors:
        tally.add("injection.mail_headers")
        n = next(_numbers)
        head = [f"From: {v.get('from_name', 'Ana')} <ana@cliente.com>", "To: support@example.com",
                f"Subject: {v.get('subject', 'Consulta')}", f"Message-ID: {v.get('msgid', f'<inj-{n}@cliente.com>')}"]
        if "references" in v:
            head += [f"References: {v['references']}", f"In-Reply-To: {v['in_reply_to']}"]
        raw = ("\r\n".join(head) + "\r\n\r\nhola\r\n").encode()
        _, reply = await aiosmtplib.send(raw, sender="ana@cliente.com", recipients=["support@example.com"],
                                         hostname="127.0.0.1", port=service.smtp.bound_port, timeout=10)
        number = int(reply.rsplit("#", 1)[1])
        async with http.post(f"/api/v1/cases/{number}/reply", json={"text": "respuesta"}) as r:
            # The stdlib can misread an encoded ':' in a display name as a group (the
            # sender's address is then unknown); refusing the reply is fine, a 500 is not.
            assert r.status in (202, 422), await r.text()
    await settle(service)
    assert len(sink.messages) >= len(vectors)
    for captured in sink.messages:
        assert_clean_mail(captured, {"ana@cliente.com"})


_encoded_words = st.builds(lambda charset, enc, payload: f"=?{charset}?{enc}?{payload}?=",
                           st.sampled_from(["utf-8", "iso-8859-1", "us-ascii", "x-unknown"]), st.sampled_from("qQbB"),
                           st.sampled_from(["x=0D=0ABcc:_evil@attacker.example", "eA0KQmNjOiBl", "=0A=0A", "_=0D_",
                                            "a", ""]))
header_text = st.lists(st.one_of(st.text(max_size=20), _encoded_words, st.sampled_from(["\r\n", "\n", "\r", "<", ">",
                                                                                       "@", ":", ",", ";", " "])),
                       max_size=8).map("".join)


@fuzz(300, deadline_seconds=5)
@given(title=header_text, subject=header_text, ids=st.lists(header_text.map(lambda t: f"<{t}>"), max_size=3),
       text=header_text, token=st.sampled_from([None, "tok.1", "x=y"]))
def test_composed_mail_never_carries_a_foreign_header(tally, title, subject, ids, text, token):
    """The composition itself, fuzzed: whatever the case title, explicit subject,
    threading ids and text, the mail's header block holds only our headers, one line each."""
    tally.add("injection.mail_headers")
    message = ClaimedDelivery(
        outbox_id=1, channel=ChannelName.EMAIL, recipient="ana@cliente.com", text=text, kind="reply",
        case_number=7, case_title=title, extra={"subject": subject} if subject else {},
        email=EmailThreading(message_id="<pv.1@example.com>", in_reply_to=ids[-1] if ids else None,
                             references=tuple(ids), reply_token=token))
    raw = compose_email(message, from_address="support@example.com", from_name="Soporte", reply_to=None).as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = {line.split(":", 1)[0].lower() for line in head.split("\r\n") if line and not line[0].isspace()}
    assert names <= OUR_HEADERS, (names - OUR_HEADERS, head)
