"""Loop guard: one test per reason, the allowed path, and the per-sender rate window."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from posventa.intake.email.guards import LoopVerdict, SenderRateWindow, loop_guard
from posventa.intake.email.parse import ParsedEmail, parse_email

FIXTURES = Path(__file__).parent / "fixtures"
OWN_ADDRESSES = ("soporte@posventa.example", "support@posventa.example", "suporte@posventa.example")
OWN_DOMAINS = ("posventa.example",)


def load(name: str) -> ParsedEmail:
    return parse_email((FIXTURES / name).read_bytes())


def guard(parsed: ParsedEmail, envelope_from: str | None = None, rate: SenderRateWindow | None = None) -> LoopVerdict:
    return loop_guard(
        parsed,
        envelope_from=parsed.from_address if envelope_from is None else envelope_from,
        own_addresses=OWN_ADDRESSES,
        own_domains=OWN_DOMAINS,
        rate=rate,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "name", ["plain_es.eml", "plain_pt.eml", "plain_en.eml", "gmail_reply_es.eml", "outlook_reply_es.eml", "html_only_es.eml"]
)
def test_ordinary_customer_mail_may_get_auto_replies(name: str) -> None:
    assert guard(load(name)) == LoopVerdict(True, None)


@pytest.mark.parametrize(
    ("name", "envelope_from", "reason"),
    [
        ("bounce_dsn.eml", "", "bounce"),  # multipart/report with the null sender
        ("bounce_mailer_daemon_plain.eml", "MAILER-DAEMON@relay.legacyhost.example", "bounce"),
        ("plain_es.eml", "<>", "bounce"),  # a null envelope sender is a bounce whatever the headers say
        ("auto_submitted_vacation.eml", None, "auto-submitted"),
        ("x_autoreply.eml", None, "x-autoreply"),
        ("out_of_office_en.eml", None, "x-autoreply"),
        ("newsletter.eml", None, "precedence-bulk"),
        ("mailing_list.eml", None, "precedence-bulk"),
    ],
)
def test_fixture_reasons(name: str, envelope_from: str | None, reason: str) -> None:
    assert guard(load(name), envelope_from) == LoopVerdict(False, reason)


def test_list_id_without_precedence() -> None:
    parsed = replace(load("mailing_list.eml"), precedence=None)
    assert guard(parsed) == LoopVerdict(False, "list-id")


def test_auto_submitted_no_is_a_human() -> None:
    parsed = replace(load("plain_es.eml"), auto_submitted="no")
    assert guard(parsed) == LoopVerdict(True, None)


@pytest.mark.parametrize(
    ("from_address", "envelope_from", "message_id"),
    [
        ("soporte@posventa.example", "soporte@posventa.example", "<x@gmail.com>"),  # our own address
        ("SOPORTE+tok123@Posventa.Example", "bounce@elsewhere.example", "<x@gmail.com>"),  # a reply address
        ("ventas@posventa.example", "ventas@posventa.example", "<x@gmail.com>"),  # anything at our domain
        ("cliente@gmail.com", "soporte@posventa.example", "<x@gmail.com>"),  # envelope is us (forward loop)
        ("cliente@gmail.com", "cliente@gmail.com", "<case-1.out-2@posventa.example>"),  # our Message-ID came back
    ],
)
def test_from_self(from_address: str, envelope_from: str, message_id: str) -> None:
    parsed = replace(load("plain_es.eml"), from_address=from_address, message_id=message_id)
    assert guard(parsed, envelope_from) == LoopVerdict(False, "from-self")


def test_bounce_outranks_other_reasons() -> None:
    parsed = load("bounce_dsn.eml")  # also Auto-Submitted and from our own domain
    assert guard(parsed, "") == LoopVerdict(False, "bounce")


def test_sender_rate_window_is_consulted_last() -> None:
    clock = Clock()
    rate = SenderRateWindow(max_per_window=2, window_seconds=60, clock=clock)
    customer = load("plain_es.eml")
    assert guard(customer, rate=rate).auto_reply_allowed
    # Mail that a header check already stopped does not use up the customer's slots.
    assert guard(replace(customer, x_autoreply=True), rate=rate).reason == "x-autoreply"
    assert guard(customer, rate=rate).auto_reply_allowed
    assert guard(customer, rate=rate) == LoopVerdict(False, "sender-rate")
    clock.now += 61
    assert guard(customer, rate=rate).auto_reply_allowed


def test_rate_window_slides_and_is_per_sender() -> None:
    clock = Clock()
    rate = SenderRateWindow(max_per_window=3, window_seconds=100, clock=clock)
    assert [rate.allow("a@x.com") for _ in range(4)] == [True, True, True, False]
    assert rate.allow("B@X.com") and rate.allow("b@x.com")  # case-insensitive, separate budget
    clock.now += 50
    assert not rate.allow("A@x.com")  # denied attempts do not extend or consume the window
    clock.now += 50.001
    assert rate.allow("a@x.com")


def test_rate_window_memory_is_bounded() -> None:
    clock = Clock()
    rate = SenderRateWindow(max_per_window=1, window_seconds=1_000, clock=clock, max_senders=100)
    for i in range(1_000):
        assert rate.allow(f"spammer{i}@x.com")
    assert rate.allow("spammer0@x.com")  # long forgotten: evicting idle senders only errs towards replying
    assert not rate.allow("spammer999@x.com")


def test_rate_window_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        SenderRateWindow(max_per_window=0, clock=Clock())
