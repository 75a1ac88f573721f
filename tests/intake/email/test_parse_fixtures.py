"""Real-world-shaped messages (tests/intake/email/fixtures/*.eml) and what agents must see.

Each entry lists the fields that matter for that message; every listed field is compared
exactly. Fields a fixture does not mention are checked against the plain defaults
(no threading, no loop markers, no attachments) so a parser change that suddenly marks a
normal mail as a bounce fails here too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from posventa.intake.email.parse import ParsedEmail, case_number_from_subject, parse_email

FIXTURES = Path(__file__).parent / "fixtures"
ART = timezone(timedelta(hours=-3))

DEFAULTS = {
    "cc": (),
    "in_reply_to": (),
    "references": (),
    "auto_submitted": None,
    "precedence": None,
    "list_id": None,
    "x_autoreply": False,
    "is_bounce": False,
    "dropped_attachments": (),
    "attachments": (),
}

EXPECTED: dict[str, dict[str, object]] = {
    "gmail_reply_es.eml": {
        "message_id": "<CAF7mQ1x8kZp0v=4n2Yh3bW+1qLr9s@mail.gmail.com>",
        "from_address": "lucia.fernandez@gmail.com",
        "from_name": "Lucía Fernández",
        "to": ("soporte@posventa.example",),
        "subject": "Re: Pedido 4411 no llegó [#123]",
        "date": datetime(2024, 6, 3, 10, 41, 52, tzinfo=ART),
        "in_reply_to": ("<case-123.out-41@posventa.example>",),
        "references": ("<case-123.out-41@posventa.example>",),
        "text": "Hola, gracias por responder.\n\nLes adjunto el número de seguimiento: AR-88213. "
        "Todavía no llegó el pedido.\n\nSaludos,\nLucía",
        "language": "es",
    },
    "gmail_reply_en_wrapped.eml": {
        "from_address": "mark.whitfield@gmail.com",
        "subject": "Re: Replacement charger [#87]",
        "in_reply_to": ("<case-87.out-12@posventa.example>",),
        "references": ("<CAHk7Qw0aaa@mail.gmail.com>", "<case-87.out-12@posventa.example>"),
        "text": "Thanks, the replacement arrived today and it works fine.\nPlease close the ticket.",
        "language": "en",
    },
    "outlook_reply_es.eml": {
        "message_id": "<AM0PR02MB5521A1B2C3D4E5F6A7B8C9D0A1B2C@AM0PR02MB5521.eurprd02.prod.outlook.com>",
        "from_address": "mgomez@eltornillo.com.ar",
        "from_name": "Martín Gómez",
        "cc": ("compras@eltornillo.com.ar",),
        "subject": "RE: Equipo no enciende [#204]",
        "in_reply_to": ("<case-204.out-3@posventa.example>",),
        "references": ("<case-204.out-3@posventa.example>",),
        "text": "Buenos días:\n\nAdjunto la factura que me pidieron. El equipo sigue sin encender después "
        "de la actualización.\n\nAtentamente,\nMartín Gómez\nCompras – Ferretería El Tornillo",
        "language": "es",
    },
    "outlook_original_message_en.eml": {
        "message_id": "<000a01dab71c$3f2e1d00$bd8a5700$@acme-logistics.com>",
        "from_name": "Dana Price",
        "subject": "RE: Invoice copy [#311]",
        "text": "Hi,\n\nWe still have not received the invoice copy for order 77120. Could you resend it "
        "to accounts@acme-logistics.com?\n\nThanks\nDana",
        "language": "en",
    },
    "apple_mail_reply_pt.eml": {
        "message_id": "<8F2C4A1E-3B7D-4C9A-9E1F-2D6B5A4C3E21@uol.com.br>",
        "from_name": "João Batista",
        "to": ("suporte@posventa.example",),
        "subject": "Re: Assistência técnica [#512]",
        "in_reply_to": ("<case-512.out-8@posventa.example>",),
        "references": ("<case-512.out-8@posventa.example>",),
        # format=flowed: the soft break after "técnica? " is joined back; the phone's
        # "Enviado do meu iPhone" signature is not the customer's words.
        "text": "Oi, tudo bem?\n\nO aparelho voltou a apresentar o mesmo defeito depois da troca da placa. "
        "Vocês podem agendar uma nova visita técnica? Estou disponível na parte da manhã.\n\n"
        "Abraço,\nJoão",
        "language": "pt",
    },
    "html_only_es.eml": {
        "from_address": "cruiz@fibertel.com.ar",
        "subject": "Reclamo: heladera abollada",
        "text": "Buenas tardes,\n\nCompré una heladera modelo HX-300 y llegó con la puerta abollada. "
        "Adjunto fotos en este álbum (https://fotos.example.com/album/9931).\n\n"
        "- Número de pedido: 55102\n- Fecha de entrega: 01/06/2024\n\n"
        "Quedo a la espera de una solución.\nCarlos Ruiz",
        "language": "es",
    },
    "forwarded_rfc822.eml": {
        "from_address": "psosa@distribuidora-sur.com",
        "subject": "Fwd: Reclamo de cliente final - pedido 90012",
        "text": "Les reenvío el reclamo que nos llegó de un cliente final. ¿Pueden revisarlo?\n\nPaula\n\n"
        "---------- Forwarded message ---------\nFrom: Jorge Ibarra <jibarra@hotmail.com>\n"
        "Date: Sat, 08 Jun 2024 20:11:09 -0300\nSubject: Reclamo pedido 90012\n"
        "To: ventas@distribuidora-sur.com\n\n"
        "El ventilador que compré hace un mes hace un ruido fuerte. Adjunto la factura.",
        "attachments": (("factura-90012.pdf", "application/pdf", 45, False, None),),
        "language": "es",
    },
    "auto_submitted_vacation.eml": {
        "subject": "Ausente: Re: Su consulta [#77]",
        "auto_submitted": "auto-replied (vacation)",
        "precedence": "bulk",
        "x_autoreply": True,  # the "Ausente:" subject prefix
        "language": "es",
    },
    "x_autoreply.eml": {
        "from_address": "ivan.petrov@yandex.com",
        "subject": "Re: Your request [#90]",
        "x_autoreply": True,
        "text": "Thank you for your message. I will answer as soon as possible.",
    },
    "out_of_office_en.eml": {
        "subject": "Automatic reply: Your order has shipped [#140]",
        "x_autoreply": True,
        "auto_submitted": None,
        "language": "en",
    },
    "bounce_dsn.eml": {
        "from_address": "mailer-daemon@mail.posventa.example",
        "from_name": None,
        "subject": "Undelivered Mail Returned to Sender",
        "auto_submitted": "auto-replied",
        "is_bounce": True,
    },
    "bounce_mailer_daemon_plain.eml": {
        "from_address": "mailer-daemon@relay.legacyhost.example",
        "is_bounce": True,
        "date": datetime(2024, 6, 13, 16, 0, tzinfo=timezone.utc),
    },
    "mailing_list.eml": {
        "to": ("distribuidores@lists.proveedores.example",),
        "precedence": "list",
        "list_id": "distribuidores.lists.proveedores.example",
        "text": "Estimados distribuidores: desde el 1 de julio se actualiza la lista de precios.",
    },
    "latin1_pt.eml": {
        "from_name": "Conceição Araújo",
        "subject": "Garantia do refrigerador não foi aceita",
        "text": "Bom dia,\n\nA assistência técnica não aceitou a garantia do refrigerador. Disseram que o "
        "número de série não consta no sistema. Poderiam verificar, por favor?\n\n"
        "Atenciosamente,\nConceição Araújo",
        "language": "pt",
    },
    "cp1252_es.eml": {
        "subject": "Cobro de visita técnica – garantía",
        "text": "Hola:\n\nEl técnico me cobró 45 € por la visita, pero el equipo está en “garantía "
        "extendida”. ¿Me pueden reintegrar el importe?\n\nGracias,\nNuria Vidal",
        "date": datetime(2024, 6, 18, 12, 29, 44, tzinfo=timezone(timedelta(hours=2))),
        "language": "es",
    },
    "broken_charset_unknown.eml": {
        # Raw 8-bit header bytes and an unknown body charset: read as Windows-1252.
        "from_name": "Raúl Medina",
        "from_address": "rmedina@viejo-isp.example",
        # An encoded word in a charset nobody knows: the byte is lost, not the subject.
        "subject": "Consulta r\ufffdpida",
        "text": "El control remoto no funciona desde que cambié las pilas. ¿Qué puedo hacer?",
        "language": "es",
    },
    "broken_charset_invalid_utf8.eml": {
        # "UTF-8" without one valid multi-byte sequence is Latin-1 in disguise; the second
        # part's charset is a Python codec ("base64") that is not a charset at all.
        "text": "Faltó una caja del pedido ÿþ 3321.\n\nSegunda parte con charset absurdo.",
    },
    "base64_body_en.eml": {
        "text": "Hello,\n\nMy dishwasher (model DW-45) shows error E24 after every cycle. I already "
        "cleaned the filter.\nCan you send a technician?\n\nBest regards,\nTom Becker",
        "language": "en",
    },
    "qp_softbreaks_pt.eml": {
        "text": "Olá, equipe de suporte. Recebi o produto ontem, mas a embalagem veio violada e faltam os "
        "parafusos de fixação da base. Gostaria de saber se vocês podem enviar as peças que faltam "
        "ou se devo devolver o produto inteiro.\n\nObrigado,\nRenato Lima",
        "language": "pt",
    },
    "rfc2047_headers.eml": {
        "from_name": "Ángel Nuñez Peña",
        "to": ("soporte@posventa.example", "jmaria@movistar.example"),
        "subject": "Reparación del lavarropas — segunda solicitud (año 2024)",
    },
    "inline_image.eml": {
        "text": "El monitor llegó con la pantalla rota, mando foto:\n[image: pantalla.png]",
        "attachments": (("pantalla.png", "image/png", 70, True, "ii_lxq2f0a10"),),
    },
    "no_message_id.eml": {
        "message_id": None,
        "from_address": "formulario@tienda.example",
        "from_name": None,
        "text": "Nombre: Pedro Alonso\nConsulta: necesito el manual de la cafetera CF-10.",
    },
    "newsletter.eml": {
        "subject": "❄ Ofertas de invierno",
        "precedence": "bulk",
        "text": "Ofertas de invierno\n\nHasta 30% de descuento en calefactores: https://news.electro.example/c/abc123",
        "language": None,  # too few words that only one language uses
    },
    "plain_es.eml": {"from_name": "Gabriela Ríos", "language": "es"},
    "plain_pt.eml": {"subject": "Troca de produto com defeito", "language": "pt"},
    "plain_en.eml": {"subject": "Where is my order?", "language": "en"},
    "calendar_invite.eml": {
        "subject": "Invitación: Revisión del equipo @ mié 3 jul 2024 11:00 - 11:30",
        "text": "Te invito a la revisión del equipo el miércoles 3 de julio a las 11:00.",
        "attachments": (
            ("attachment-1.ics", "text/calendar", 236, False, None),
            ("invite.ics", "application/ics", 248, False, None),
        ),
        "language": "es",
    },
    "empty_body.eml": {"subject": "Llamenme por favor", "text": "", "full_text": "", "language": None},
    "case_tag_reply.eml": {"subject": "RE: Re: Fwd: Cambio de producto [#123]", "text": "Perfecto, los espero el lunes."},
    "attachments_pdf_rfc2231.eml": {
        "text": "Adjuntamos el presupuesto firmado y el remito.",
        "attachments": (
            # RFC 2231 UTF-8 filename decoded; a path in a filename is cut to its last part.
            ("presupuesto firmado año 2024.pdf", "application/pdf", 75, False, None),
            ("remito.txt", "application/octet-stream", 20, False, None),
        ),
    },
    "duplicate_message_id_a.eml": {"message_id": "<dup-20240627-0859@example.com>"},
    "duplicate_message_id_b.eml": {"message_id": "<dup-20240627-0859@example.com>"},
}


def load(name: str) -> ParsedEmail:
    return parse_email((FIXTURES / name).read_bytes())


def test_every_fixture_has_expectations_and_there_are_enough() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.eml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 25


def _view(parsed: ParsedEmail, field: str) -> object:
    value = getattr(parsed, field)
    if field == "attachments":
        return tuple((a.filename, a.content_type, len(a.data), a.inline, a.content_id) for a in value)
    return value


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name: str) -> None:
    parsed = load(name)
    expected = {**DEFAULTS, **EXPECTED[name]}
    actual = {field: _view(parsed, field) for field in expected}
    assert actual == expected
    # Invariants every parsed mail keeps, whatever came in.
    assert "\n" not in parsed.subject and "\r" not in parsed.subject
    assert parsed.text in parsed.full_text or parsed.text == parsed.full_text.strip()


def test_quoted_history_is_kept_in_full_text() -> None:
    gmail = load("gmail_reply_es.eml")
    assert "> Hola Lucía, ¿nos puede enviar el número de seguimiento?" in gmail.full_text
    assert "escribió:" in gmail.full_text and "escribió:" not in gmail.text
    outlook = load("outlook_reply_es.eml")
    assert "Enviado el: martes, 4 de junio de 2024 9:30" in outlook.full_text
    assert "Estimado Martín" not in outlook.text


def test_plain_alternative_is_preferred_over_html() -> None:
    # The Outlook HTML part renders "De:" in bold and differs in spacing; the plain part
    # is what we read, so the text has none of the HTML's <o:p> artefacts.
    outlook = load("outlook_reply_es.eml")
    assert "Buenos días:\n\nAdjunto" in outlook.full_text


def test_bounce_text_names_the_failed_recipient_and_omits_our_returned_mail() -> None:
    bounce = load("bounce_dsn.eml")
    assert "Status: 5.1.1" in bounce.text
    assert "Final-Recipient: rfc822; cliente.inexistente@example.net" in bounce.text
    assert "Recibimos su consulta." not in bounce.full_text


def test_case_tag_in_fixture_subjects() -> None:
    assert case_number_from_subject(load("case_tag_reply.eml").subject) == 123
    assert case_number_from_subject(load("gmail_reply_es.eml").subject) == 123
    assert case_number_from_subject(load("plain_es.eml").subject) is None


def test_duplicate_pair_differs_only_in_transport() -> None:
    a, b = load("duplicate_message_id_a.eml"), load("duplicate_message_id_b.eml")
    assert (FIXTURES / "duplicate_message_id_a.eml").read_bytes() != (FIXTURES / "duplicate_message_id_b.eml").read_bytes()
    assert a == b  # same Message-ID and content: core's dedupe key sees one message


def test_crlf_and_lf_line_endings_parse_the_same() -> None:
    raw = (FIXTURES / "plain_es.eml").read_bytes()
    assert parse_email(raw.replace(b"\n", b"\r\n")) == parse_email(raw)
