"""Reading a customer's short answer to a question the bot asked: pure functions, no I/O.

Buttons (Telegram, web chat) answer with a value. Email has no buttons: it numbers the
choices, and the customer answers with the number ("2", "2)", "opción 2") or in words
("Reclamo", "es una reclamação", "complaint"). Agents type the same words on the Telegram
desk (``/type reclamo``). All of them are read here, so every channel agrees.

Only the first non-empty line of the (already de-quoted) reply is read: what follows is
the customer's prose, and a word there is not an answer.
"""

from __future__ import annotations

import re
import unicodedata

from posventa.core.domain import LANGUAGES, CaseType
from posventa.core.texts import case_type_name
from posventa.core.workflow import CLASSIFIED_TYPES

#: Longer first lines are prose ("tengo un reclamo por la factura y una consulta..."),
#: not an answer to "request, complaint or incident?".
MAX_ANSWER_WORDS = 5
_MAX_LINE_CHARS = 200

_CHOICE_REPLY = re.compile(r"\s*(?:opci[oó]n|op[cç][aã]o|option)?\s*#?(\d{1,3})\s*[).:-]?(?:\s.*)?", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
#: More than ``MAX_ANSWER_WORDS`` whitespace-separated tokens with an ASCII letter. Each is
#: at least one ``_WORD`` once folded (folding keeps ASCII letters and whitespace), so a
#: line that matches is prose, known before folding. ``\S*+`` is possessive: a token is
#: never split to find the next letter in it.
_PROSE = re.compile(r"(?:[^A-Za-z]*[A-Za-z]\S*+){%d}" % (MAX_ANSWER_WORDS + 1))

#: Words (accents folded) that name a type, besides the names we show (core.texts).
_SYNONYMS: dict[CaseType, frozenset[str]] = {
    CaseType.REQUEST: frozenset({
        "request", "solicitud", "solicitacao", "consulta", "requerimiento", "duvida", "inquiry", "enquiry"}),
    CaseType.COMPLAINT: frozenset({
        "complaint", "reclamo", "reclamacion", "reclamacao", "queja", "queixa", "complain", "reclamar"}),
    CaseType.INCIDENT: frozenset({
        "incident", "incidente", "incidencia", "falla", "fallo", "averia", "defeito", "falha", "fault", "outage"}),
}


class _CombiningMarks(dict[int, None | int]):
    """``str.translate`` table that deletes combining marks and keeps every other
    character, learnt as characters come (at most ``_LEARNT`` of them kept)."""

    def __missing__(self, code: int) -> int | None:
        kept = None if unicodedata.combining(chr(code)) else code
        if len(self) < _LEARNT:
            self[code] = kept
        return kept


_LEARNT = 4096
_WITHOUT_COMBINING = _CombiningMarks()


def fold(text: str) -> str:
    """Lower-case without accents: "Reclamação" → "reclamacao".

    Every message to an unclassified case is read for a typed case type (the inbox's
    hot path): ASCII needs no pass at all, and the marks go through ``str.translate``
    rather than a generator over the characters (3-10 times faster, same result)."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return decomposed if decomposed.isascii() else decomposed.translate(_WITHOUT_COMBINING)


def _words_of(case_type: CaseType) -> frozenset[str]:
    names = {fold(w) for lang in LANGUAGES for w in case_type_name(case_type, lang).split()}
    return _SYNONYMS[case_type] | names | {case_type.value}


_TYPE_OF_WORD: dict[str, CaseType] = {w: t for t in CLASSIFIED_TYPES for w in _words_of(t)}


def _first_line(text: str) -> str | None:
    # Split no further than the 20 lines read: a long mail is not cut whole, twice per message.
    for line in text.split("\n", 20)[:20]:
        if line.strip():
            return line[:_MAX_LINE_CHARS]
    return None


def choice_number_from_text(text: str, *, count: int) -> int | None:
    """The 1-based choice a customer picked by replying ``2`` (or ``2)``, ``opción 2``) to a
    numbered list of ``count`` choices, read from the first non-empty line; else None."""
    line = _first_line(text)
    return None if line is None else _choice_number(line, count)


def _choice_number(line: str, count: int) -> int | None:
    first = line.lstrip()[:1]
    if first and not first.isdecimal() and first not in "#oO":
        return None  # _CHOICE_REPLY starts with a digit, "#" or "opción/opção/option": prose is decided here
    match = _CHOICE_REPLY.fullmatch(line)
    number = int(match.group(1)) if match else 0
    return number if 1 <= number <= count else None


def case_type_from_word(word: str) -> CaseType | None:
    """``request``, ``reclamo``, ``Solicitação``… → the type; None for anything else."""
    return _TYPE_OF_WORD.get(fold(word))


def case_type_from_reply(text: str) -> CaseType | None:
    """The type a customer answered to "request, complaint or incident?": the number of
    the email's numbered list (in ``CLASSIFIED_TYPES`` order), or a short first line that
    names exactly one type ("Reclamo", "es un incidente", "complaint."). None when unsure."""
    line = _first_line(text)
    if line is None:
        return None
    number = _choice_number(line, len(CLASSIFIED_TYPES))
    if number is not None:
        return CLASSIFIED_TYPES[number - 1]
    if line.lstrip().startswith("/"):
        return None  # "/type incident" is a command (an agent's), not a customer's answer
    if _PROSE.match(line):
        # Most messages to an unclassified case are prose: folding them (Unicode
        # decomposition, a translate) was a tenth of the inbox's CPU per message.
        return None
    words = _WORD.findall(fold(line))
    if not words or len(words) > MAX_ANSWER_WORDS:
        return None
    named = {_TYPE_OF_WORD[w] for w in words if w in _TYPE_OF_WORD}
    return named.pop() if len(named) == 1 else None
