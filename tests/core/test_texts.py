"""The one lookup of customer-facing texts (core.texts.Texts) and the yes/no words."""

from __future__ import annotations

import pytest

from posventa.bots.telegram.texts import t
from posventa.core.domain import LANGUAGES
from posventa.core.surveys.texts import say
from posventa.core.texts import YES_NO_WORDS, Texts, localized, text


def test_a_text_in_the_customers_language_else_spanish_with_its_parameters():
    texts = Texts({"hello": {"es": "Hola {name}", "pt": "Olá {name}", "en": ""}})
    assert texts("hello", "pt", name="Ana") == "Olá Ana"
    assert texts("hello", "de", name="Ana") == "Hola Ana"  # a language we do not speak
    assert texts("hello", "en", name="Ana") == "Hola Ana"  # an empty translation is a missing one
    with pytest.raises(KeyError):
        texts("bye", "es")


def test_every_table_answers_through_the_same_lookup():
    assert all(isinstance(table, Texts) for table in (text, say, t))
    assert localized({"es": "sí", "en": "yes"}, "pt") == "sí"


@pytest.mark.parametrize("language", LANGUAGES)
def test_yes_and_no_are_the_same_words_for_the_bot_and_the_surveys(language):
    for word in ("yes", "no"):
        assert text(word, language) == say(word, language) == YES_NO_WORDS[word][language]
