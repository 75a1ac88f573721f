"""Reading free-text answers: what counts as a score, what is ambiguous, and when a
customer wants a person or is complaining."""

from __future__ import annotations

import pytest

from posventa.core.surveys.answers import is_complaint, read, read_choice, read_score, wants_agent
from posventa.core.surveys.scales import Scale

ONE_FIVE = Scale.parse("1-5")
ZERO_TEN = Scale.parse("0-10")
YES_NO = Scale.parse("yes/no")


@pytest.mark.parametrize("text,score", [
    ("4", "4"), (" 5 ", "5"), ("4/5", "4"), ("4 / 5", "4"), ("4 de 5", "4"), ("4 out of 5", "4"),
    ("cinco estrellas", "5"), ("Cinco estrelas", "5"), ("five stars", "5"), ("tres", "3"), ("três", "3"),
    ("dois", "2"), ("one", "1"), ("una estrella", "1"), ("⭐⭐⭐⭐", "4"), ("le pongo un 4", "4"),
    ("Nota: 3!", "3"), ("un cuatro", "4"), ("5 5", "5"),
])
def test_scores_on_one_to_five(text, score):
    assert read_score(text, ONE_FIVE) == score


@pytest.mark.parametrize("text", [
    "", "hola", "6", "0", "3.5", "4,5", "entre 3 y 4", "8/10", "diez", "4 de 10", "3 o 4", "muy bueno",
])
def test_not_an_answer_on_one_to_five(text):
    assert read_score(text, ONE_FIVE) is None


@pytest.mark.parametrize("text,score", [
    ("diez", "10"), ("dez", "10"), ("ten", "10"), ("10/10", "10"), ("0", "0"), ("cero", "0"), ("zero", "0"),
    ("le doy un diez", "10"), ("dou uma nota dez", "10"), ("8 de 10", "8"), ("nueve", "9"), ("nove", "9"),
])
def test_scores_on_zero_to_ten(text, score):
    assert read_score(text, ZERO_TEN) == score


def test_portuguese_dos_is_not_two():
    assert read_score("gostei dos produtos", ONE_FIVE, language="pt") is None
    assert read_score("dos", ONE_FIVE, language="es") == "2"


@pytest.mark.parametrize("text,score", [
    ("sí", "yes"), ("Si", "yes"), ("SIM", "yes"), ("yes", "yes"), ("claro", "yes"), ("por supuesto", "yes"),
    ("👍", "yes"), ("no", "no"), ("não", "no"), ("nao", "no"), ("nope", "no"), ("👎", "no"),
])
def test_yes_no(text, score):
    assert read_score(text, YES_NO) == score


@pytest.mark.parametrize("text", ["no sé, sí", "tal vez", "4", ""])
def test_yes_no_ambiguous(text):
    assert read_score(text, YES_NO) is None


def test_buttons_must_match_exactly():
    assert read_choice("4", ONE_FIVE) == "4"
    assert read_choice("YES", YES_NO) == "yes"
    assert read_choice("9", ONE_FIVE) is None and read_choice("4; drop table", ONE_FIVE) is None


@pytest.mark.parametrize("text", ["Quiero hablar con un AGENTE", "atendente por favor", "agent", "I want a human",
                                  "quero falar com alguém"])
def test_wants_agent(text):
    assert wants_agent(text)


@pytest.mark.parametrize("text", ["Quiero hacer un reclamo", "esto no funciona", "Isso não funciona!",
                                  "quero o estorno", "it's broken, I want a refund", "Es una estafa",
                                  "Reclamação: o produto chegou quebrado"])
def test_clear_complaints(text):
    assert is_complaint(text)


@pytest.mark.parametrize("text", ["1", "malo", "no me gustó mucho", "regular", "5, todo bien", "not bad"])
def test_a_low_score_is_not_a_complaint(text):
    assert not is_complaint(text) and not wants_agent(text)


def test_read_combines_score_and_escalation():
    r = read("1 - quiero un reembolso", ONE_FIVE)
    assert r.score == "1" and r.complaint and r.escalate
    assert not read("4", ONE_FIVE).escalate


def test_cost_is_bounded():
    assert read_score("x" * 1_000_000 + " 4", ONE_FIVE) is None  # only the first 500 characters are read
    assert read_score("4 " + "y" * 1_000_000, ONE_FIVE) == "4"


@pytest.mark.parametrize("text", ["quiero hablar con un agente", "tengo dos preguntas sobre la factura de marzo",
                                  "quiero una respuesta ya mismo por favor", "I need one more thing from you guys"])
def test_prose_with_number_words_is_not_a_score(text):
    assert read_score(text, ONE_FIVE) is None


def test_short_spelled_scores_still_count():
    assert read_score("I'd give it a five", ONE_FIVE) == "5"
    assert read_score("uma estrela", ONE_FIVE) == "1"
