"""What an email's decoded text needs beyond rendering: the reply without its history, and
the sender's language. Both work on decoded text, never on MIME:

* :func:`strip_quoted` — cuts the quoted history that mail clients append to replies;
* :func:`guess_language` — a cheap es/pt/en stop-word vote.

HTML parts become text first through core's one renderer, ``core.plain_text.html_to_text``
(``<blockquote>`` as ``> `` lines, so an HTML reply's history is cut here like a plain
one's); ``clean_text`` and ``one_line`` live there too.

Everything is bounded: inputs are truncated before any work proportional to them.
"""

from __future__ import annotations

import re

from mailparser_reply.constants import MAIL_LANGUAGES, QUOTED_MATCH_INCLUDE
from mailparser_reply.parser import EmailMessage

__all__ = ["guess_language", "latest_reply", "strip_quoted"]

#: Quote stripping only looks for markers in this many lines; the cut is what matters.
_MAX_SCAN_LINES = 20_000

# ------------------------------------------------------------------------- quotes
#
# Splitting a reply from the history it quotes is mail-parser-reply's job: it knows the
# headers (Outlook's "From:/Sent:" block, "-----Original Message-----"), signatures ("-- ",
# "Sent from my iPhone", "Best regards,") and disclaimers of many clients. It has no
# Portuguese, and its Spanish "El ... escribió:" needs two spaces before the verb, so
# ``_LANGUAGE_PATTERNS`` gives it ours for es/pt/en; what it does with them is its own.
# What is left here: forwards (never cut) and ">" lines (dropped once history starts).

# "On Mon, 3 Jun 2024 at 10:00, Ana <ana@x.com> wrote:" (Gmail, Apple Mail, Thunderbird)
# and their Spanish/Portuguese forms: a line that also ends a ">" block below it.
_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"on\b.{0,300}\bwrote\s*:"
    r"|el\b.{0,300}\bescribi[oó]\s*:"
    r"|em\b.{0,300}\bescreveu\s*:"
    r"|.{0,300}\b(?:wrote|escribi[oó]|escreveu)\s*:"
    r")\s*$",
    re.IGNORECASE,
)
# Forwards carry the content the customer wants us to read: never cut below them.
_FORWARD_MARKER = re.compile(
    r"^[ \t]*(?:-{2,}\s*(?:forwarded message|mensaje reenviado|mensagem encaminhada|mensagem reencaminhada)\s*-{2,}"
    r"|begin forwarded message\s*:|inicio del mensaje reenviado\s*:|in[ií]cio da mensagem (?:encaminhada|reencaminhada)\s*:)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_Q = QUOTED_MATCH_INCLUDE


def _wrote_header(opener: str, verb: str) -> str:
    # One capturing group per pattern: the library collects every group it finds as a header.
    # The attribution starts with a date (a digit on its first line, so "El técnico me
    # escribió:" in prose is no header); Gmail wraps a long one over two lines.
    return rf"^({_Q}{opener}\s[^\n]{{0,300}}?\d[^\n]{{0,300}}?(?:\n[^\n]{{1,300}}?)?\s?{verb}\s?:)$"


def _separator(*names: str) -> str:
    # "-----Original Message-----", Thunderbird's "-------- Mensaje original --------", the "____" rule.
    return rf"^({_Q}(?:-{{2,}}\s*(?:{'|'.join(names)})\s*-{{2,}}|_{{10,}}))$"


def _from_block(*labels: str) -> str:
    # Outlook's header block: two or more "Label: value" lines in a row.
    return (rf"((?:(?:^|\n|\n{_Q})[* ]*(?:{'|'.join(labels)}):[ *]*(?:\s{{,2}}).*){{2,}}(?:\n.*){{,1}})")


# The library would also cut at sign-offs ("Gracias,", "Best regards,") and everything
# after them: "Gracias, mañana lo pruebo" on a second line, or the customer's company
# under their name, would be lost. Only "-- " blocks and "Sent from my iPhone" lines go.
_NO_SIGN_OFFS = r"(?!x)x"
_LANGUAGE_PATTERNS: dict[str, dict[str, object]] = {
    "en": {
        "wrote_header": "|".join((_wrote_header("On", "wrote"), _separator("original message"))),
        "signatures": _NO_SIGN_OFFS,
    },
    "es": {
        "wrote_header": "|".join((_wrote_header("El", "escribi[oó]"), _separator("mensaje original"))),
        # Outlook in Spanish writes "Enviado el:", which the library's list lacks.
        "from_header": _from_block("De", "Enviado(?: el)?", "Para", "Asunto", "Fecha", "CC", "Organización"),
        "signatures": _NO_SIGN_OFFS,
        "sent_from": r"Enviado desde mi|Obtener Outlook para",
    },
    "pt": {
        "wrote_header": "|".join((_wrote_header("Em", "escreveu"), _separator("mensagem original"))),
        "from_header": _from_block("De", "Enviado(?: em)?", "Enviada em", "Para", "Assunto", "Data", "Cc"),
        "disclaimers": ["Aviso:", "Confidencialidade:", "Aviso de confidencialidade:"],
        "signatures": _NO_SIGN_OFFS,
        "sent_from": r"Enviado do meu|Enviado de meu|Obter o Outlook para",
    },
}
_REPLY_LANGUAGES = ["es", "pt", "en"]


class _Reply(EmailMessage):
    """mail-parser-reply's message with our es/pt/en patterns in front of its own."""

    def _get_language_regex(self, language: str, regex_key: str) -> str:
        ours = _LANGUAGE_PATTERNS.get(language, {}).get(regex_key)
        if ours is None:
            return super()._get_language_regex(language, regex_key) if language in MAIL_LANGUAGES else ""
        return "|".join(ours) if isinstance(ours, list) else str(ours)


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution_length(lines: list[str], i: int) -> int:
    """1 or 2 when an attribution starts at ``lines[i]`` (Gmail wraps long ones), else 0."""
    line = lines[i]
    if len(line) > 400:
        return 0
    if _ATTRIBUTION.match(line):
        return 1
    if i + 1 < len(lines) and re.match(r"^\s*(?:on|el|em)\b", line, re.IGNORECASE):
        joined = line.rstrip() + " " + lines[i + 1].strip()
        if len(joined) <= 400 and _ATTRIBUTION.match(joined):
            return 2
    return 0


def _split_reply(text: str) -> tuple[str, bool]:
    """mail-parser-reply's latest reply (without its header, signature and disclaimers),
    and whether it came after a header (bottom-posted below the quoted history)."""
    lines = text.split("\n")
    head, tail = "\n".join(lines[:_MAX_SCAN_LINES]), "\n".join(lines[_MAX_SCAN_LINES:])
    message = _Reply(text=head, languages=list(_REPLY_LANGUAGES), keep_hyphen_lists=True).read()
    first = message.replies[0]
    if len(message.replies) == 1 and not first.headers and not first.signatures and not first.disclaimers:
        return text, False  # nothing recognised: the library's normalising must not touch it
    return first.body + ("\n" + tail if tail and len(message.replies) == 1 else ""), bool(first.headers)


def latest_reply(text: str) -> str:
    """What the sender wrote in this message: mail-parser-reply's latest reply, without the
    quoted history, the signature and the disclaimers. Only the first ``_MAX_SCAN_LINES``
    lines are searched (the library's regexes cost time per line)."""
    return _split_reply(text)[0]


def _drop_quotes(text: str, *, history_above: bool = False) -> str:
    """Drop ">" history: after an attribution, every ">" line (an answer written between
    them is kept); without one, only a trailing ">" block."""
    lines = text.split("\n")
    kept: list[str] = []
    drop_quotes = history_above
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        span = _attribution_length(lines, i)
        if span:
            j = i + span
            while j < n and not lines[j].strip():
                j += 1
            if j < n and _is_quote(lines[j]):
                drop_quotes = True
                i = j
                continue
            break  # unprefixed history (Apple Mail or HTML rendered without blockquote)
        if drop_quotes and _is_quote(line):
            i += 1
            continue
        kept.append(line)
        i += 1
    else:
        # No attribution seen: a trailing ">" block (and blanks around it) is history.
        end = len(kept)
        while end and (not kept[end - 1].strip() or _is_quote(kept[end - 1])):
            end -= 1
        if any(_is_quote(line) for line in kept[end:]):
            kept = kept[:end]
    return "\n".join(kept).strip()


def strip_quoted(text: str) -> str:
    """Cut the quoted history that replies carry, keeping what the sender wrote.

    * Gmail, Outlook, Apple Mail and Thunderbird headers in es/pt/en, signatures and
      disclaimers: :func:`latest_reply` (mail-parser-reply).
    * ``>`` lines: dropped after an attribution (an inline answer between them is kept);
      without one, only a trailing ``>`` block.
    * Below a forward marker nothing is cut: the forwarded mail is the content.

    When nothing would remain, the text is returned unchanged: an agent should never
    get an empty message because our heuristics misfired (the full text is kept anyway).
    """
    forward = _FORWARD_MARKER.search(text)
    head, forwarded = (text[: forward.start()], text[forward.start():]) if forward else (text, "")
    result = ""
    if head.strip():
        reply, below_header = _split_reply(head)
        result = _drop_quotes(reply, history_above=below_header)
    if forwarded:
        above = head if result == head.strip() else result + "\n\n"
        result = (above + forwarded).strip()
    return result if result else text.strip()


# ----------------------------------------------------------------------- language

_WORDS = re.compile(r"[a-zà-ÿ]+")
_STOP = {
    "es": frozenset(
        "el la los las del un una unos unas con por pero muy sin sobre también hasta hay donde "
        "desde nos ya yo usted ustedes gracias hola buenos buenas tengo necesito mi mis su sus "
        "cuando porque qué esto esta este ese esa eso estoy están hace tiene puedo quiero "
        "ayuda saludos pedido factura llegó todavía aún sí".split()
    ),
    "pt": frozenset(
        "o os um uma uns umas com pelo pela mas muito sem sobre também até há onde desde "
        "nós já eu você vocês obrigado obrigada olá bom boa tenho preciso meu minha seu sua "
        "quando porque isso isto este esta esse essa estou estão faz tem posso quero "
        "ajuda atenciosamente pedido nota chegou ainda não é do da dos das no na nos nas ao".split()
    ),
    "en": frozenset(
        "the a an and or but with without for from of to in on at is are was were be been "
        "have has had i you we they my your our their this that these those not no yes "
        "please thanks thank hello hi regards order invoice still yet can could would should "
        "will it its do does did".split()
    ),
}
# Words two languages share ("pedido", "sobre", "no" ...) vote for nobody.
_SHARED = {w for lang in _STOP for w in _STOP[lang] if sum(w in other for other in _STOP.values()) > 1}
_VOTES = {lang: words - _SHARED for lang, words in _STOP.items()}
_MARKS = {"es": "ñ¿¡", "pt": "ãõç"}


def guess_language(text: str, *, sample_chars: int = 4000) -> str | None:
    """``es``/``pt``/``en`` by a stop-word vote over the first ``sample_chars``; None if unsure."""
    sample = text[:sample_chars].lower()
    score = {lang: 0 for lang in _VOTES}
    for word in _WORDS.findall(sample):
        for lang, words in _VOTES.items():
            if word in words:
                score[lang] += 1
    for lang, marks in _MARKS.items():
        score[lang] += sum(sample.count(mark) for mark in marks)
    ranked = sorted(score.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top >= 2 and top > second:
        return best
    return None
