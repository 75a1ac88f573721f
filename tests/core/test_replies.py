"""Reading the customer's answer to "request, complaint or incident?" in es/pt/en."""

import pytest

from posventa.core.domain import CaseType
import unicodedata

from posventa.core.replies import case_type_from_reply, choice_number_from_text, fold

T = CaseType


@pytest.mark.parametrize(("reply", "expected"), [
    ("2", T.COMPLAINT), ("1", T.REQUEST), ("3)", T.INCIDENT), ("opción 2", T.COMPLAINT), ("opção 3", T.INCIDENT),
    ("Option 1.", T.REQUEST), ("\n\n  2  \n\nGracias", T.COMPLAINT),
    ("Reclamo", T.COMPLAINT), ("reclamação", T.COMPLAINT), ("complaint", T.COMPLAINT), ("Es un reclamo.", T.COMPLAINT),
    ("QUEJA", T.COMPLAINT), ("Solicitud", T.REQUEST), ("solicitação", T.REQUEST), ("una consulta", T.REQUEST),
    ("request", T.REQUEST), ("Incidente", T.INCIDENT), ("an incident", T.INCIDENT), ("é um incidente", T.INCIDENT),
    # Not answers: out of range, two types, prose, nothing.
    ("4", None), ("0", None), ("no es un reclamo es una consulta", None),
    ("Tengo un reclamo por la factura de marzo que nunca llegó", None), ("", None), ("hola", None),
    ("2024 fue un mal año", None), ("/type incident", None),
])
def test_case_type_from_reply(reply, expected):
    assert case_type_from_reply(reply) == expected


def test_only_the_first_non_empty_line_of_twenty_is_read():
    prose = "\n".join(f"línea {i} de un correo largo" for i in range(10_000))
    assert case_type_from_reply("Reclamo\n" + prose) == T.COMPLAINT
    assert case_type_from_reply("\n" * 19 + "3\n" + prose) == T.INCIDENT
    assert case_type_from_reply("\n" * 20 + "3") is None
    assert choice_number_from_text("\n" * 19 + "2", count=3) == 2
    assert choice_number_from_text("\n" * 20 + "2", count=3) is None


def test_choice_number_reads_only_the_first_line():
    assert choice_number_from_text("hola\n2", count=3) is None
    assert choice_number_from_text("2", count=1) is None
    assert choice_number_from_text("#1", count=1) == 1


@pytest.mark.parametrize("text", [
    "", "  Reclamação ", "mensaje 17: mi pedido no llegó todavía", "ÉS UN INCIDENTE", "Straße", "ﬁn ① ²",
    "Tiếng Việt có dấu", "नमस्ते", "привет, жалоба", "e\u0301\u0327\u20dd x", "日本語のテキスト", "🙂 emoji",
    "".join(chr(c) for c in range(0x250, 0x3100)),  # more characters than the table keeps
])
def test_fold_is_lower_case_without_combining_marks(text):
    by_definition = "".join(c for c in unicodedata.normalize("NFKD", text.strip().lower())
                            if not unicodedata.combining(c))
    assert fold(text) == by_definition
    assert fold(text) == by_definition  # from the learnt table too


@pytest.mark.parametrize("line", [
    "mensaje 1: mi pedido no llegó todavía", "a b c d e f", "1a 2b 3c 4d 5e 6f", "é ü ç ñ ã õ reclamo",
    "Reclamo !!! ??? ... --- :)", "no-es-un-reclamo es consulta", "ﬁn ﬁn ﬁn ﬁn ﬁn", "uno\u00a0dos\u00a0tres cuatro cinco seis",
    "abcdef", "Es un reclamo por favor", "reclamo1reclamo2reclamo3 x y z w", "ÉS UN RECLAMO, POR FAVOR, GRACIAS",
])
def test_the_prose_shortcut_only_skips_lines_that_fold_into_too_many_words(line):
    """The inbox skips folding a line that has more lettered tokens than an answer has
    words (replies._PROSE): that must never change the answer."""
    from posventa.core import replies

    if replies._PROSE.match(line):
        assert len(replies._WORD.findall(fold(line))) > replies.MAX_ANSWER_WORDS


def test_a_five_word_answer_is_read_and_a_six_word_one_is_prose():
    assert case_type_from_reply("es un reclamo por favor") == T.COMPLAINT
    assert case_type_from_reply("es un reclamo por favor gracias") is None
