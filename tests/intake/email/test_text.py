"""Quoted-history stripping, language guess and the small subject/address helpers (the HTML
renderer is core's: tests/core/test_plain_text.py)."""

from __future__ import annotations

import pytest

from posventa.core.plain_text import one_line
from posventa.intake.email.parse import (
    case_number_from_subject,
    choice_number_from_text,
    reply_token_from_address,
    strip_quoted,
)
from posventa.intake.email.text import guess_language

# ------------------------------------------------------------------ strip_quoted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nuevo texto\n\nOn Tue, Jun 4, 2024 at 9:00 AM Ana <a@x.com> wrote:\n> viejo\n> viejo", "Nuevo texto"),
        ("Nuevo\n\nEl mar, 4 jun 2024 a las 9:00, Ana (<a@x.com>) escribió:\n> viejo", "Nuevo"),
        ("Novo\n\nEm ter., 4 de jun. de 2024 às 09:00, Ana <a@x.com> escreveu:\n\n> velho", "Novo"),
        ("Nuevo\n\nOn 4 Jun 2024, at 09:00, Ana <a@x.com> wrote:\n\n> old", "Nuevo"),  # Apple Mail
        ("New\n\n-----Original Message-----\nFrom: A\nSent: B\n\nold", "New"),
        ("Nuevo\n\n-----Mensaje original-----\nDe: A\n\nviejo", "Nuevo"),
        ("Novo\n\n-----Mensagem original-----\nDe: A\n\nvelho", "Novo"),
        ("Nuevo\n\nDe: Soporte <s@x>\nEnviado: lunes\nPara: yo\n\nviejo", "Nuevo"),
        ("Novo\n\nDe: Suporte <s@x>\nEnviado em: segunda\nPara: eu\n\nvelho", "Novo"),
        ("New\n\nFrom: Support <s@x>\nSent: Monday\nTo: me\n\nold", "New"),
        ("New\n________________________________\nFrom: Support\nSent: Monday\n\nold", "New"),
        ("Only new text\n\n> trailing quote\n> more", "Only new text"),
    ],
)
def test_strip_quoted_cuts_history(text: str, expected: str) -> None:
    assert strip_quoted(text) == expected


def test_bottom_posted_answer_after_quote_is_kept() -> None:
    text = "On Mon, Ana <a@x.com> wrote:\n> ¿Cuál es su pedido?\n\nEs el 4411.\n> ¿Y la dirección?\nCalle 1."
    assert strip_quoted(text) == "Es el 4411.\nCalle 1."


def test_interleaved_quotes_without_attribution_are_kept() -> None:
    text = "> ¿Cuál es su pedido?\nEl 4411.\n> ¿Dirección?\nCalle 1."
    assert strip_quoted(text) == text


def test_forwarded_content_is_never_cut() -> None:
    text = (
        "Mire este reclamo.\n\n---------- Forwarded message ---------\nFrom: Cliente <c@x>\n"
        "Date: Mon\nSubject: Reclamo\n\nEl producto llegó roto.\n\n> citado dentro del reenvío"
    )
    assert strip_quoted(text) == text


def test_from_line_in_normal_text_is_not_a_history_marker() -> None:
    text = "De: la sucursal de Córdoba me dijeron que llame.\nGracias."
    assert strip_quoted(text) == text


def test_when_everything_is_quoted_the_text_is_kept() -> None:
    text = "> solo cita\n> nada más"
    assert strip_quoted(text) == text


# -------------------------------------------------------------------- language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hola, necesito ayuda con mi pedido, todavía no llegó. Gracias.", "es"),
        ("Olá, preciso de ajuda com o meu pedido, ainda não chegou. Obrigado.", "pt"),
        ("Hello, I need help with my order, it has not arrived yet. Thanks.", "en"),
        ("4411", None),
        ("", None),
    ],
)
def test_guess_language(text: str, language: str | None) -> None:
    assert guess_language(text) == language


# -------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("Re: Pedido no llegó [#123]", 123),
        ("RE: [#7] Re: [#123]", 123),  # ours goes last
        ("Pedido #123", None),
        ("[#]", None),
        ("[#1234567890]", None),  # more digits than any case number; no giant ints
        ("", None),
    ],
)
def test_case_number_from_subject(subject: str, number: int | None) -> None:
    assert case_number_from_subject(subject) == number


@pytest.mark.parametrize(
    ("address", "token"),
    [
        ("soporte+Ab3_x-9@posventa.example", "Ab3_x-9"),
        ("<SOPORTE+tok@posventa.example>", "tok"),
        ("soporte@posventa.example", None),
        ("ventas+tok@posventa.example", None),
        ("soporte+@posventa.example", None),
        ("soporte+tok en@posventa.example", None),
        ("soporte+tok", None),
        ("", None),
    ],
)
def test_reply_token_from_address(address: str, token: str | None) -> None:
    assert reply_token_from_address(address, local_part="soporte") == token


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("2", 2),
        ("  1)  \n\nEl lun, Soporte escribió:\n> 1) Sí", 1),
        ("Opción 3", 3),
        ("opção 2", 2),
        ("2 - muy conforme", 2),
        ("4", None),
        ("0", None),
        ("tengo 2 pedidos", None),
        ("", None),
    ],
)
def test_choice_number_from_text(text: str, number: int | None) -> None:
    assert choice_number_from_text(text, count=3) == number


def test_one_line_removes_every_line_break_kind() -> None:
    assert one_line("a\r\nb\rc\nd\u2028e\u2029f\x85g\x00h\td") == "a b c d e f g h d"
