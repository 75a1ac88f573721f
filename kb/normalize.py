"""Text normalisation for the KB matcher: one explicit pipeline for English, Spanish and Portuguese.

rapidfuzz 3 no longer lower-cases or strips anything by default, so every comparison in
kb/ goes through these functions; nothing relies on a library's implicit processing.

The pipeline is ``fold`` (case, accents, punctuation) → split → drop stop words →
``stem``.  Stemming is deliberately light and language-agnostic: a query carries no
reliable language tag, and the matcher also compares words by character n-grams
(``char_grams``), which catches the morphology a light stemmer misses
("arrive"/"arrival", "coordenador"/"coordenação") and typos ("exhcange").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from posventa.kb._stopwords import STOP_WORDS

__all__ = ["char_grams", "fold", "passages", "stem", "terms", "words"]

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
# Letters that NFKD does not decompose into base + combining mark.
_EXTRA_FOLDS = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ı": "i"})

# Longest first; a suffix is removed only if a stem of at least 3 letters with a vowel remains.
_SUFFIXES = (
    "amente", "emente", "mente",          # es/pt adverbs
    "aciones", "acion", "acoes", "acao",  # es/pt -ción/-ção (accents already folded)
    "ations", "ation", "ings", "ing", "edly", "ed", "ies", "ly",
)
_VOWELS = frozenset("aeiou")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def fold(text: str) -> str:
    """Lower-case, strip accents and turn every run of non-alphanumerics into one space.

    ``fold("¿Cuándo llegará mi TARJETA?") == "cuando llegara mi tarjeta"``.  ç ã é ñ
    become c a e n, so customers who type without accents match articles written with them.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_EXTRA_FOLDS))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_ALNUM.sub(" ", bare).strip()


def words(text: str) -> list[str]:
    """Folded words of ``text`` without stop words (not stemmed)."""
    return [w for w in fold(text).split() if w not in STOP_WORDS]


def stem(word: str) -> str:
    """A light, language-agnostic suffix stripper for folded words.

    It conflates plurals, gerunds, past forms, adverbs and the -ción/-ção family, and
    drops a final gender/theme vowel ("tarjeta"/"tarjetas" → "tarjet", "topping" → "top").
    It never shortens a word below three letters and leaves numbers alone.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix):
            root = word[: -len(suffix)]
            if len(root) >= 3 and not _VOWELS.isdisjoint(root):
                word = root
                if suffix in ("ing", "ings", "ed", "edly") and root[-1] == root[-2] and root[-1] not in "aeioulsz":
                    word = root[:-1]  # "topping" → "topp" → "top"
            break
    if word.endswith("es") and len(word) > 4:
        word = word[:-2]
    elif word.endswith("s") and len(word) > 3 and not word.endswith("ss"):
        word = word[:-1]
    if len(word) > 3 and word[-1] in "aeo":
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The index terms of ``text``: folded, stop words removed, stemmed, in order."""
    return [stem(w) for w in words(text)]


def char_grams(term: str) -> frozenset[str]:
    """Character 3-, 4- and 5-grams of a term padded with spaces (so prefixes and suffixes count)."""
    padded = f" {term} "
    size = len(padded)
    return frozenset(padded[i : i + n] for n in (3, 4, 5) for i in range(max(1, size - n + 1)))


def passages(text: str) -> Iterator[str]:
    """Split an article body into passages: its lines, and the sentences of long lines.

    A passage is the unit a customer question usually paraphrases: one phrasing in a list
    of "common questions", one sentence of an explanation.
    """
    for line in text.splitlines():
        line = line.strip().lstrip("-*•").strip()
        if not line:
            continue
        for sentence in _SENTENCE_END.split(line):
            if sentence.strip():
                yield sentence
