"""Outbound composition: headers that cannot be injected, and a round trip through our own parser."""

from __future__ import annotations

from datetime import datetime, timezone
from email.message import EmailMessage

import pytest

from posventa.core.domain import ChannelName, Choice, EmailThreading, ClaimedDelivery, Suggestion
from posventa.core.errors import PermanentDeliveryError
from posventa.intake.email.compose import compose_email, reply_address
from posventa.intake.email.parse import (
    case_number_from_subject,
    choice_number_from_text,
    parse_email,
    reply_token_from_address,
)
from tests.intake.email.invariants import assert_well_formed

SENDER = "soporte@posventa.example"
NOW = datetime(2024, 7, 1, 12, 0, tzinfo=timezone.utc)


def outbound(**changes: object) -> ClaimedDelivery:
    values: dict[str, object] = {
        "outbox_id": 41,
        "channel": ChannelName.EMAIL,
        "recipient": "lucia.fernandez@gmail.com",
        "text": "Hola Lucía,\n\nYa despachamos el reemplazo; llega el jueves.\n\nSaludos,\nMarta (Soporte)",
        "kind": "reply",
        "case_number": 123,
        "case_title": "Pedido 4411 no llegó",
        "language": "es",
        "email": EmailThreading(
            message_id="<case-123.out-41@posventa.example>",
            in_reply_to="<CAF7mQ1x8kZp0v=4n2Yh3bW+1qLr9s@mail.gmail.com>",
            references=("<first@mail.gmail.com>", "<case-123.out-40@posventa.example>"),
            reply_token="c123Xy9",
        ),
    }
    values.update(changes)
    return ClaimedDelivery(**values)  # type: ignore[arg-type]


def compose(message: ClaimedDelivery, **kwargs: object) -> EmailMessage:
    options: dict[str, object] = {"from_address": SENDER, "from_name": "Soporte Posventa", "reply_to": None, "now": NOW}
    options.update(kwargs)
    return compose_email(message, **options)  # type: ignore[arg-type]


def header_names(msg: EmailMessage) -> list[str]:
    return [name.lower() for name, _ in msg.items()]


def test_headers_of_a_threaded_reply() -> None:
    msg = compose(outbound())
    assert msg["From"] == "Soporte Posventa <soporte@posventa.example>"
    assert msg["To"] == "lucia.fernandez@gmail.com"
    assert msg["Subject"] == "Re: Pedido 4411 no llegó [#123]"
    assert msg["Message-ID"] == "<case-123.out-41@posventa.example>"
    assert msg["In-Reply-To"] == "<CAF7mQ1x8kZp0v=4n2Yh3bW+1qLr9s@mail.gmail.com>"
    assert msg["References"] == (
        "<first@mail.gmail.com> <case-123.out-40@posventa.example> <CAF7mQ1x8kZp0v=4n2Yh3bW+1qLr9s@mail.gmail.com>"
    )
    assert msg["Reply-To"] == "soporte+c123Xy9@posventa.example"
    assert msg["Date"] == "Mon, 01 Jul 2024 12:00:00 +0000"
    assert msg["Content-Language"] == "es"
    assert msg.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    assert b"\n\n" not in msg.as_bytes().split(b"\r\n\r\n")[0]  # CRLF line endings throughout the head


def test_message_id_is_stable_across_retries() -> None:
    first = compose(outbound(attempt=1), now=NOW)
    retry = compose(outbound(attempt=4), now=datetime(2024, 7, 2, tzinfo=timezone.utc))
    assert first["Message-ID"] == retry["Message-ID"] == "<case-123.out-41@posventa.example>"
    # Without threading info the id still comes from the outbox id, not from a clock.
    bare = outbound(email=None)
    assert compose(bare)["Message-ID"] == compose(bare)["Message-ID"] == "<posventa.outbox.41@posventa.example>"


def test_explicit_reply_to_wins_over_the_token() -> None:
    assert compose(outbound(), reply_to="casos@posventa.example")["Reply-To"] == "casos@posventa.example"
    assert "reply-to" not in header_names(compose(outbound(email=EmailThreading(message_id="<m@x>"))))


def test_reply_address_round_trips_through_the_token_parser() -> None:
    address = reply_address(SENDER, "tok_123-x")
    assert address == "soporte+tok_123-x@posventa.example"
    assert reply_token_from_address(address, local_part="soporte") == "tok_123-x"
    with pytest.raises(ValueError):
        reply_address(SENDER, "bad token\r\nBcc: x@y")


def test_auto_submitted_only_when_automatic() -> None:
    automatic = compose(outbound(automatic=True, kind="ack"))
    assert automatic["Auto-Submitted"] == "auto-replied"
    assert automatic["X-Auto-Response-Suppress"] == "All"
    manual = compose(outbound(automatic=False))
    assert "auto-submitted" not in header_names(manual)
    assert "x-auto-response-suppress" not in header_names(manual)


@pytest.mark.parametrize(
    "evil",
    [
        "Pedido\r\nBcc: victim@example.com",
        "Pedido\nBcc: victim@example.com",
        "Pedido\rBcc: victim@example.com",
        "Pedido\u2028Bcc: victim@example.com",
        "Pedido\x85Bcc: victim@example.com",
        "Pedido\r\n\r\n<html>body takeover</html>",
    ],
)
def test_header_injection_through_title_and_names_is_impossible(evil: str) -> None:
    msg = compose(
        outbound(case_title=evil, extra={}, text=evil),
        from_name=evil,
    )
    raw = msg.as_bytes()
    head = raw.split(b"\r\n\r\n")[0]
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in head
    assert "bcc" not in header_names(msg)
    parsed = parse_email(raw)
    assert parsed.subject.startswith("Re: Pedido")
    assert "Bcc: victim@example.com" in parsed.subject or "<html>" in parsed.subject
    assert case_number_from_subject(parsed.subject) == 123
    assert parsed.to == ("lucia.fernandez@gmail.com",)


@pytest.mark.parametrize(
    "recipient",
    [
        "lucia@gmail.com\r\nBcc: victim@example.com",
        "lucia@gmail.com, victim@example.com",
        "Lucía <lucia@gmail.com>",
        "not-an-address",
        "",
    ],
)
def test_recipient_that_is_not_one_plain_address_is_a_permanent_failure(recipient: str) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        compose(outbound(recipient=recipient))
    assert caught.value.unreachable
    assert "victim" not in str(caught.value)  # never echo attacker input into logs


def test_injection_through_threading_ids_is_dropped() -> None:
    msg = compose(
        outbound(
            email=EmailThreading(
                message_id="<ok@posventa.example>",
                in_reply_to="<x@y>\r\nBcc: victim@example.com",
                references=("<a@b>", "<c@d> <e@f>", "bad\nid"),
            )
        )
    )
    assert "in-reply-to" not in header_names(msg)
    assert msg["References"] == "<a@b>"


def test_suggestions_and_choices_are_rendered_in_the_text() -> None:
    msg = compose(
        outbound(
            text="¿Quedó conforme con la atención?",
            suggestions=(Suggestion("Cómo rastrear un envío", "https://kb.example/t/rastreo/12", 0.91),),
            choices=(Choice("Muy conforme", "5"), Choice("Conforme", "3"), Choice("Nada conforme", "1")),
        )
    )
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text == (
        "¿Quedó conforme con la atención?\n\n"
        "Estos artículos pueden ayudarle:\n- Cómo rastrear un envío: https://kb.example/t/rastreo/12\n\n"
        "Responda a este correo con el número de su opción:\n1) Muy conforme\n2) Conforme\n3) Nada conforme\n"
    )
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<a href="https://kb.example/t/rastreo/12">Cómo rastrear un envío</a>' in html
    assert "1) Muy conforme<br>" in html


def test_html_alternative_escapes_agent_text_and_refuses_script_links() -> None:
    msg = compose(
        outbound(
            text="<script>alert(1)</script> & <b>",
            suggestions=(Suggestion('x"><img src=x onerror=alert(1)>', "javascript:alert(1)", 0.5),),
        )
    )
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in html
    assert 'href="javascript' not in html and "<img" not in html


def test_language_picks_the_wording_and_unknown_falls_back_to_spanish() -> None:
    pt = compose(outbound(language="pt", choices=(Choice("Sim", "s"),), case_title=None))
    assert pt["Subject"] == "Sua solicitação [#123]"
    assert "Responda a este e-mail com o número da sua opção:\n1) Sim" in pt.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    en = compose(outbound(language="en", case_number=None, case_title="Broken charger"))
    assert en["Subject"] == "Re: Broken charger"
    xx = compose(outbound(language="de", case_title=None, case_number=None))
    assert xx["Subject"] == "Su consulta" and "content-language" not in header_names(xx)


def test_subject_tag_is_not_doubled_and_can_be_turned_off() -> None:
    assert compose(outbound(case_title="Re: Pedido [#123] roto"))["Subject"] == "Re: Pedido roto [#123]"
    assert compose(outbound(), subject_prefix_tag=False)["Subject"] == "Re: Pedido 4411 no llegó"
    assert compose(outbound(extra={"subject": "Encuesta de satisfacción"}))["Subject"] == "Encuesta de satisfacción [#123]"


@pytest.mark.parametrize("automatic", [True, False])
def test_round_trip_through_parse_keeps_text_threading_and_tag(automatic: bool) -> None:
    message = outbound(automatic=automatic, choices=(Choice("Sí", "yes"), Choice("No", "no")))
    parsed = parse_email(compose(message).as_bytes())
    assert_well_formed(parsed)
    assert parsed.text == (
        "Hola Lucía,\n\nYa despachamos el reemplazo; llega el jueves.\n\nSaludos,\nMarta (Soporte)\n\n"
        "Responda a este correo con el número de su opción:\n1) Sí\n2) No"
    )
    assert parsed.message_id == "<case-123.out-41@posventa.example>"
    assert parsed.in_reply_to == ("<CAF7mQ1x8kZp0v=4n2Yh3bW+1qLr9s@mail.gmail.com>",)
    assert parsed.references == (
        "<first@mail.gmail.com>",
        "<case-123.out-40@posventa.example>",
        "<CAF7mQ1x8kZp0v=4n2Yh3bW+1qLr9s@mail.gmail.com>",
    )
    assert case_number_from_subject(parsed.subject) == 123
    assert parsed.from_address == SENDER and parsed.from_name == "Soporte Posventa"
    assert parsed.auto_submitted == ("auto-replied" if automatic else None)
    assert parsed.language == "es"


def test_customer_answering_a_numbered_choice_round_trips() -> None:
    question = compose(outbound(text="¿Resolvimos su problema?", choices=(Choice("Sí", "y"), Choice("No", "n"))))
    quoted = "\n".join("> " + line for line in question.get_body(("plain",)).get_content().splitlines())  # type: ignore[union-attr]
    answer = (
        "From: lucia.fernandez@gmail.com\nTo: soporte+c123Xy9@posventa.example\nSubject: Re: " + "x"
        + "\nContent-Type: text/plain; charset=utf-8\n\n2\n\nEl lun, 1 jul 2024 a las 9:00, Soporte escribió:\n"
        + quoted + "\n"
    ).encode()
    parsed = parse_email(answer)
    assert parsed.text == "2"
    assert choice_number_from_text(parsed.text, count=2) == 2


def test_long_agent_text_is_wrapped_safely_and_survives() -> None:
    text = "palabra " * 2_000 + "fin"
    parsed = parse_email(compose(outbound(text=text)).as_bytes())
    assert parsed.text == text
    assert max(len(line) for line in compose(outbound(text=text)).as_bytes().split(b"\r\n")) <= 998
