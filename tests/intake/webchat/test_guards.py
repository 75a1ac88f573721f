"""The web chat's pure guards: the Origin policy and the frame parser. (Its rate limits are
core's RateLimiter: tests/core/test_rate_limit.py; everything with sockets and databases is
in test_server.py.)"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posventa.intake.webchat.origin import OriginPolicy, normalise_origin
from posventa.intake.webchat.protocol import (
    _CONTROLS,
    Hello,
    ProtocolError,
    SendChoice,
    SendText,
    clean_text,
    encodable,
    parse_frame,
)


@pytest.mark.parametrize(("raw", "norm"), [
    ("https://Shop.Example.com", "https://shop.example.com"),
    ("https://shop.example.com:443", "https://shop.example.com"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("null", None), ("file:///etc/passwd", None), ("https://", None), ("http://h:99999", None),
])
def test_origins_are_normalised(raw, norm):
    assert normalise_origin(raw) == norm


def test_origin_policy():
    same = OriginPolicy((), public_url="https://support.example.com/help")
    assert same.allows("https://support.example.com")
    assert same.allows("https://SUPPORT.example.com:443")
    assert not same.allows("http://support.example.com")  # another scheme is another origin
    assert not same.allows("https://shop.example.com")
    assert same.allows(None)  # not a browser: the token is the credential
    listed = OriginPolicy(["https://shop.example.com", "https://*.tienda.example"], public_url="http://x")
    assert listed.allows("https://a.b.tienda.example")
    assert listed.allows("http://x")  # the service's own demo page, whatever else is listed
    assert not listed.allows("https://tienda.example.evil")
    assert not listed.allows("http://a.tienda.example")  # scheme matters
    assert OriginPolicy(["*"], public_url="http://x").allows("https://anything.example")
    with pytest.raises(ValueError):
        OriginPolicy(["not an origin"], public_url="http://x")


def test_frames_parse_into_values():
    assert parse_frame(json.dumps({"type": "hello", "session": None, "last_seen": None, "lang": "PT-br",
                                   "name": "  Ana \t María ", "email": "Ana@Example.COM "}), max_text_chars=10) \
        == Hello(None, None, "pt", "Ana María", "ana@example.com")
    assert parse_frame('{"type":"hello","session":"t","last_seen":"42","lang":"xx","email":"no"}',
                       max_text_chars=10) == Hello("t", 42, None, None, None)
    # The browser's time zone: kept when it is one we know, else ignored (never refused).
    assert parse_frame('{"type":"hello","session":null,"tz":"America/Sao_Paulo"}', max_text_chars=10).tz \
        == "America/Sao_Paulo"
    for tz in ('"Mars/Olympus"', '"../../etc/passwd"', '"/etc/localtime"', "42", '"' + "A" * 300 + '"', '""'):
        assert parse_frame('{"type":"hello","session":null,"tz":' + tz + '}', max_text_chars=10).tz is None
    assert parse_frame('{"type":"message","id":"u-1","text":"a\\r\\nb"}', max_text_chars=10) == SendText("u-1", "a\nb")
    assert parse_frame('{"type":"choice","id":"u-2","question":"case_type:3","value":5}', max_text_chars=10) \
        == SendChoice("u-2", "case_type:3", "5")


@pytest.mark.parametrize(("raw", "code"), [
    ('{"type":"message","id":"u","text":"' + "x" * 11 + '"}', "too_large"),
    ('{"type":"hello","session":5}', "unauthorized"),
    ('{"type":"hello","last_seen":-1}', "bad_request"),
    ('{"type":"hello","last_seen":true}', "bad_request"),
    ('{"type":"choice","id":"u","question":"q q","value":"v"}', "bad_request"),
    ('{"type":"choice","id":"u","question":"q","value":true}', "bad_request"),
    ("[" * 100_000, "bad_request"),
    ('{"type":"message","id":"u","text":"\\ud800"}', "bad_request"),
])
def test_bad_frames_name_their_problem(raw, code):
    with pytest.raises(ProtocolError) as err:
        parse_frame(raw, max_text_chars=10)
    assert err.value.code == code


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=("Cs",)) | st.sampled_from(
    ["\r", "\n", "\t", "\x00", "\x7f", "\x85", "\x9f", "\u200b", "\u2028"]), max_size=40))
def test_clean_text_fast_paths_change_nothing(text):
    """clean_text's shortcuts (printable text, ASCII) give what the full rule gives:
    newlines normalised, C0/C1 controls but tab and newline removed."""
    full = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    assert clean_text(text) == full
    assert encodable(text) is True
