"""The small pure pieces: button payloads, command parsing, splitting and naming, the
flood gate, and how PTB's errors map onto the outbox's transient/permanent split."""

from __future__ import annotations

import datetime as dtm

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

import posventa.bots.telegram
from posventa.bots.telegram import callbacks
from posventa.bots.telegram.channel import FloodGate
from posventa.bots.telegram.client import chunk_text, delivery_error, retry_after_seconds
from posventa.bots.telegram.customer import Command, parse_command
from posventa.core.replies import case_type_from_word
from posventa.bots.telegram.render import customer_message, esc, topic_name
from posventa.core.errors import PermanentDeliveryError, TransientDeliveryError


def test_public_surface_is_complete():
    assert sorted(posventa.bots.telegram.__all__) == sorted(
        n for n in vars(posventa.bots.telegram) if not n.startswith("_") and n not in ("os", "bot", "channel", "client",
        "customer", "desk", "poller", "router", "webhook", "render", "store", "tables", "texts", "callbacks", "shape"))


@pytest.mark.parametrize(("question", "value", "data"), [
    ("case_type:123456789", "incident", "T123456789|incident"),
    ("kb_feedback:42", "yes", "K42|yes"),
    ("survey:981:7", "10", "=survey:981:7|10"),
    ("survey:" + "x" * 60, "5", "#2"),
    ("odd|question", "1", "#0"),
])
def test_callback_data_is_compact_and_round_trips(question, value, data):
    index = int(data[1:]) if data.startswith("#") else 0
    assert callbacks.encode(question, value, index) == data
    decoded = callbacks.decode(data)
    if data.startswith("#"):
        assert decoded == callbacks.Packed(index=index)
    else:
        assert (decoded.question, decoded.value) == (question, value)


@given(st.text(max_size=80), st.text(max_size=80), st.integers(0, 99))
def test_any_question_fits_telegrams_64_bytes(question, value, index):
    data = callbacks.encode(question, value, index)
    assert 1 <= len(data.encode()) <= 64
    decoded = callbacks.decode(data)
    assert decoded is not None
    if decoded.index is None:
        assert (decoded.question, decoded.value) == (question, value)


@pytest.mark.parametrize("data", [None, "", "#", "#abc", "#99999", "T|x", "Xfoo|bar", "=nopipe", "x" * 65])
def test_untrusted_callback_data_decodes_to_nothing(data):
    assert callbacks.decode(data) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("/start", Command("start", "")),
    ("/new la impresora no imprime", Command("new", "la impresora no imprime")),
    ("/Close@Posventa_Bot", Command("close", "")),
    ("/note primera línea\nsegunda", Command("note", "primera línea\nsegunda")),
    ("/close@otro_bot", None),
    ("hola /start", None),
    ("/", None),
    ("/ espacio", None),
    ("/" + "x" * 40, None),
    ("/rm -rf", Command("rm", "-rf")),
])
def test_parse_command(text, expected):
    assert parse_command(text, "posventa_bot") == expected


def test_chunks_fit_telegram_and_keep_everything():
    text = ("palabra " * 1500 + "\n") * 3
    parts = chunk_text(text)
    assert all(len(p) <= 4096 for p in parts) and len(parts) == 9
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())
    assert chunk_text("x" * 9000) == ["x" * 4096, "x" * 4096, "x" * 808]
    assert chunk_text("  ") == ["…"]


def test_topic_name_and_escaping():
    assert topic_name(18, "Pantalla   rota\nurgente") == "#18 · Pantalla rota urgente"
    assert len(topic_name(18, "x" * 300)) == 128 and topic_name(18, "x" * 300).endswith("…")
    assert topic_name(7, "") == "#7"
    assert esc("<b>a & b</b>") == "&lt;b&gt;a &amp; b&lt;/b&gt;"
    assert customer_message("<script>", name="<Ana>", channel="email") == (
        "👤 <b>&lt;Ana&gt;</b> · email\n&lt;script&gt;")


@pytest.mark.parametrize(("word", "value"), [("reclamo", "complaint"), ("Reclamação", "complaint"),
                                             ("SOLICITUD", "request"), ("incident", "incident"), ("otro", None)])
def test_case_type_words_in_three_languages(word, value):
    assert case_type_from_word(word) == value


def test_error_classification():
    retry = delivery_error(RetryAfter(7), what="x")
    assert isinstance(retry, TransientDeliveryError) and retry.retry_after == 7
    blocked = delivery_error(Forbidden("Forbidden: bot was blocked by the user"), what="x")
    assert isinstance(blocked, PermanentDeliveryError) and blocked.unreachable
    not_found = delivery_error(BadRequest("Chat not found"), what="x")
    assert isinstance(not_found, PermanentDeliveryError) and not_found.unreachable
    bad = delivery_error(BadRequest("Can't parse entities"), what="x")
    assert isinstance(bad, PermanentDeliveryError) and not bad.unreachable
    assert isinstance(delivery_error(TimedOut(), what="x"), TransientDeliveryError)
    assert isinstance(delivery_error(NetworkError("httpx.ConnectError"), what="x"), TransientDeliveryError)
    assert isinstance(delivery_error(ChatMigrated(-100123), what="x"), PermanentDeliveryError)
    revoked = delivery_error(InvalidToken("The token `123:abc` was rejected"), what="x")
    assert isinstance(revoked, TransientDeliveryError) and "123:abc" not in str(revoked)


def test_retry_after_reads_without_deprecation_warnings(recwarn):
    assert retry_after_seconds(RetryAfter(dtm.timedelta(seconds=3))) == 3.0
    assert retry_after_seconds(RetryAfter(12)) == 12.0
    assert not recwarn.list


def test_flood_gate_turns_back_sends_until_retry_after_passes():
    now = [100.0]
    gate = FloodGate(monotonic=lambda: now[0], max_chats=2)
    gate.check(1)
    gate.hit(1, 5)
    with pytest.raises(TransientDeliveryError) as caught:
        gate.check(1)
    assert caught.value.retry_after == 5
    gate.check(2)  # other chats are not held back
    now[0] += 5.1
    gate.check(1)
    gate.hit(2, 1)
    gate.hit(3, 1)
    now[0] += 2
    gate.hit(4, 1)  # full: expired entries are dropped, memory stays bounded
    assert len(gate._until) <= 2


def test_a_desk_copy_counts_as_shown_only_if_sent_to_that_chat_before_the_message():
    from posventa.bots.telegram.store import _shown_before

    assert _shown_before("-100123:41", -100123, 42)
    assert not _shown_before("-100123:43", -100123, 42)  # posted after the agent wrote
    assert not _shown_before("-100123:42", -100123, 42)
    assert not _shown_before("-100999:41", -100123, 42)  # a previous agents' group
    assert not _shown_before(None, -100123, 42) and not _shown_before("-100123:x", -100123, 42)
