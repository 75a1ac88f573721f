"""Reading a customer's free-text survey answer: pure functions, no I/O.

Customers answer however they like: a button, "4", "4/5", "cinco estrellas", "dez",
"ten", "sí", "👍". We accept an answer only when it is unambiguous: one number on the
scale (or one yes/no), otherwise we ask again. Separately we notice when the customer
wants a person ("agente", "atendente", "agent") or is clearly complaining, because
then a survey question is the wrong thing to send next.

Cost is bounded: only the first ``MAX_CHARS`` characters are read.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from posventa.core.surveys.scales import YES_NO, Scale

MAX_CHARS = 500

_NUMBER_WORDS: dict[str, int] = {
    # es
    "cero": 0, "uno": 1, "una": 1, "un": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6,
    "siete": 7, "ocho": 8, "nueve": 9, "diez": 10,
    # pt (accents are stripped before lookup: "três" → "tres")
    "zero": 0, "um": 1, "uma": 1, "dois": 2, "duas": 2, "quatro": 4, "sete": 7, "oito": 8, "nove": 9, "dez": 10,
    # en
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
#: Words that are also articles ("le doy UN diez", "dou UMA nota dez"): they count only
#: when no other number is present ("una estrella").
_WEAK = frozenset({"un", "una", "um", "uma"})
#: Portuguese "dos" means "of the" ("gostei dos produtos"), never two.
_NOT_NUMBERS_IN = {"pt": frozenset({"dos"})}

_YES = frozenset({"si", "yes", "sim", "s", "y", "claro", "ok", "okay", "dale", "afirmativo", "correcto", "correto",
                  "yeah", "yep", "yup", "certo", "exacto", "exato", "obvio", "sure"})
_NO = frozenset({"no", "nao", "n", "nope", "nah", "nunca", "never", "negativo", "jamas", "jamais"})
_YES_PHRASES = ("por supuesto", "of course", "com certeza", "claro que si", "claro que sim")

_AGENT_WORDS = frozenset({"agente", "agentes", "atendente", "atendentes", "agent", "agents", "humano", "human",
                          "operador", "operadora", "operator"})
_AGENT_PHRASES = ("hablar con alguien", "hablar con una persona", "falar com alguem", "falar com uma pessoa",
                  "talk to someone", "talk to a person", "speak to someone", "speak to a person", "real person",
                  "persona real", "pessoa real")

_COMPLAINT_WORDS = frozenset({
    # es
    "reclamo", "reclamar", "reclamacion", "queja", "quejarme", "denuncia", "denunciar", "estafa", "fraude",
    "devolucion", "reembolso", "devuelvan", "pesimo", "pesima", "horrible", "roto", "rota", "rompio",
    # pt
    "reclamacao", "queixa", "estorno", "devolucao", "pessimo", "pessima", "horrivel", "absurdo", "golpe", "procon",
    "quebrado", "quebrada", "quebrou",
    # en
    "complaint", "complain", "broken", "refund", "scam", "fraud", "terrible", "awful", "worst", "ripoff",
    "unacceptable",
})
_COMPLAINT_PHRASES = (
    "no funciona", "no anda", "no sirve", "dejo de funcionar", "una verguenza", "defensa del consumidor",
    "nao funciona", "parou de funcionar", "nao serve", "uma vergonha",
    "not working", "doesn't work", "doesnt work", "does not work", "stopped working", "rip off",
)

#: "le doy un diez", "I'd give it a ten": longer texts are prose, not a spelled-out score.
MAX_WORDS_FOR_NUMBER_WORDS = 6
_TOKEN = re.compile(r"\d+(?:[.,]\d+)?|[a-z']+")
_OUT_OF = re.compile(r"([a-z]+|\d+)\s*(?:/|\bde\b|\bof\b|\bout of\b|\bem\b|\bsobre\b)\s*([a-z]+|\d+)")
_STARS = frozenset("⭐★🌟")


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message says: a score on the scale (or None), and whether the customer
    wants a person or is complaining."""

    score: str | None
    wants_agent: bool = False
    complaint: bool = False

    @property
    def escalate(self) -> bool:
        return self.wants_agent or self.complaint


def normalise(text: str) -> str:
    """Lower case, accents stripped, whitespace collapsed; the first MAX_CHARS only."""
    decomposed = unicodedata.normalize("NFKD", text[:MAX_CHARS].lower())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.replace("’", "'").split())


def _number(token: str, language: str | None) -> int | None:
    if token.isdigit():
        return int(token)
    if token in _NOT_NUMBERS_IN.get(language or "", ()):
        return None
    return _NUMBER_WORDS.get(token)


def read_score(text: str, scale: Scale, *, language: str | None = None) -> str | None:
    """The score ``text`` gives on ``scale``, or None when there is none or it is ambiguous."""
    if scale.spec == YES_NO:
        return _read_yes_no(text)
    assert scale.low is not None and scale.high is not None
    raw = text[:MAX_CHARS]
    t = normalise(raw)
    value: int | None = None
    # "4/5", "4 de 5", "8 out of 10": only when the denominator is this scale's top.
    out_of = [(a, b) for a, b in _OUT_OF.findall(t)
              if _number(a, language) is not None and _number(b, language) is not None]
    if out_of:
        if len(out_of) != 1:
            return None
        n, top = _number(out_of[0][0], language), _number(out_of[0][1], language)
        if top != scale.high:
            return None
        value = n
    else:
        tokens = _TOKEN.findall(t)
        if any(re.fullmatch(r"\d+[.,]\d+", tok) for tok in tokens):
            return None  # "4,5" or "3.5": not a point on the scale
        digits = {int(tok) for tok in tokens if tok.isdigit()}
        if digits:
            candidates = digits
        elif len(tokens) <= MAX_WORDS_FOR_NUMBER_WORDS:
            # Number words only in short answers: in "tengo dos preguntas" the "dos" is no score.
            words = [tok for tok in tokens if _number(tok, language) is not None]
            strong = {_number(w, language) for w in words if w not in _WEAK}
            weak = {_number(w, language) for w in words if w in _WEAK and len(tokens) <= 3}
            candidates = strong or weak  # type: ignore[assignment]
        else:
            candidates = set()
        stars = sum(1 for c in raw if c in _STARS)
        if not candidates and stars:
            candidates = {stars}
        if len(candidates) != 1:
            return None
        value = next(iter(candidates))
    if value is None or not scale.low <= value <= scale.high:
        return None
    return str(value)


def _read_yes_no(text: str) -> str | None:
    t = normalise(text)
    words = set(_TOKEN.findall(t))
    yes = bool(words & _YES) or any(p in t for p in _YES_PHRASES) or "👍" in text
    no = bool(words & _NO) or "👎" in text
    if yes == no:
        return None
    return "yes" if yes else "no"


def wants_agent(text: str) -> bool:
    t = normalise(text)
    return bool(set(_TOKEN.findall(t)) & _AGENT_WORDS) or any(p in t for p in _AGENT_PHRASES)


def is_complaint(text: str) -> bool:
    """True only for clear complaints: words like "reclamo", "reclamação", "refund",
    "no funciona". A low score alone is an answer, not a complaint."""
    t = normalise(text)
    return bool(set(_TOKEN.findall(t)) & _COMPLAINT_WORDS) or any(p in t for p in _COMPLAINT_PHRASES)


def read(text: str, scale: Scale, *, language: str | None = None) -> Reading:
    return Reading(read_score(text, scale, language=language), wants_agent(text), is_complaint(text))


def read_choice(value: str, scale: Scale) -> str | None:
    """A pressed button's value: must be exactly one of the scale's scores."""
    v = value.strip().lower()
    return v if v in scale.scores else None
