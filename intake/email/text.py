"""Turning untrusted email bodies into the plain text agents read.

Three concerns live here because they all work on decoded text, never on MIME:

* :func:`html_to_text` — a ``html.parser`` based renderer (no tree, no network, no
  scripts) that keeps links as ``text (url)`` and renders ``<blockquote>`` as ``> `` lines,
  so that HTML replies go through the same quote stripping as plain ones;
* :func:`strip_quoted` — cuts the quoted history that mail clients append to replies;
* :func:`guess_language` — a cheap es/pt/en stop-word vote.

Everything is bounded: inputs are truncated before any work proportional to them.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

from mailparser_reply.constants import MAIL_LANGUAGES, QUOTED_MATCH_INCLUDE
from mailparser_reply.parser import EmailMessage

__all__ = ["clean_text", "guess_language", "html_to_text", "latest_reply", "one_line", "strip_quoted"]

#: HTML bigger than this is cut before parsing: real newsletters are a few hundred KB.
MAX_HTML_INPUT_CHARS = 2_000_000
#: html.parser costs ~10µs a tag; past this many start tags the rest is stripped crudely
#: (a real newsletter has a few thousand).
_MAX_TAGS = 50_000
#: Nested blockquotes deeper than this share one prefix (a reply chain never goes deeper).
_MAX_QUOTE_PREFIX = 5
#: Quote stripping only looks for markers in this many lines; the cut is what matters.
_MAX_SCAN_LINES = 20_000

# Lone surrogates come from undecodable bytes (surrogateescape) and from encoded words
# in unknown charsets; they cannot be stored or sent as UTF-8, so they become U+FFFD.
_SURROGATES = re.compile("[\ud800-\udfff]")
# C0/C1 controls except TAB and LF, DEL, and the Unicode line/paragraph separators.
_CONTROL_KEEP_NL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_ALL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean_text(text: str) -> str:
    """Normalise newlines, drop control characters and lone surrogates; keep TAB/LF."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SURROGATES.sub("\ufffd", text)
    return _CONTROL_KEEP_NL.sub("", text)


def one_line(text: str) -> str:
    """A single header-safe line: every control/line-break run becomes one space.

    This is what makes header injection impossible: no CR or LF survives it.
    """
    text = _SURROGATES.sub("\ufffd", text)
    return " ".join(_CONTROL_ALL.sub(" ", text).split())


# --------------------------------------------------------------------------- HTML


_SKIP_CONTENT = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "object"})
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "pre", "hr"})
_BLOCK = frozenset(
    {
        "div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "address", "form",
        "fieldset", "figure", "figcaption", "center", "main", "nav", "aside", "caption", "tbody",
        "thead", "tfoot", "blockquote",
    }
)
_LINK_SCHEMES = ("http://", "https://", "mailto:")


class _TextRenderer(HTMLParser):
    """Renders HTML into lines; each line remembers the blockquote depth it started at."""

    def __init__(self, *, max_chars: int) -> None:
        super().__init__(convert_charrefs=True)
        self._max_chars = max_chars
        self._size = 0
        self.truncated = False
        self._lines: list[str] = []
        self._cur: list[str] = []
        self._cur_depth = 0
        self._quote_depth = 0
        self._skip: list[str] = []
        self._pre = 0
        self._link: tuple[str, int] | None = None  # (href, index into _cur where its text starts)
        self._lists: list[int | None] = []  # None for <ul>, the next number for <ol>
        self._drop_to_gt = False
        self.tags = 0

    # -- output primitives
    def _write(self, text: str) -> None:
        if self.truncated or not text:
            return
        if not self._cur:
            self._cur_depth = self._quote_depth
        if self._size + len(text) > self._max_chars:
            text = text[: max(0, self._max_chars - self._size)]
            self.truncated = True
        self._size += len(text)
        self._cur.append(text)

    def _break(self, blank: bool = False) -> None:
        if self._cur:
            line = "".join(self._cur).rstrip()
            depth = min(self._cur_depth, _MAX_QUOTE_PREFIX)
            self._append_line("> " * depth + line if line else ">" * depth)
            self._cur = []
            self._link = None if self._link is None else (self._link[0], 0)
        if blank and self._lines and self._lines[-1].strip("> ") != "":
            self._append_line(">" * min(self._quote_depth, _MAX_QUOTE_PREFIX))

    def _append_line(self, line: str) -> None:
        # Text was counted by _write(); line breaks and quote prefixes count here, so that
        # "<br>" * 10**6 cannot build a million empty lines.
        if self._size > self._max_chars:
            self.truncated = True
            return
        self._size += 1 + min(len(line), 2 * _MAX_QUOTE_PREFIX)
        self._lines.append(line)

    def text(self) -> str:
        self._break()
        out = "\n".join(line.rstrip() for line in self._lines)
        return re.sub(r"\n{3,}", "\n\n", out).strip("\n")

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if tag == "body":
            self._skip.clear()  # a missing </head> or </title> must not hide the whole body
            return
        if self._skip:
            if tag in _SKIP_CONTENT:
                self._skip.append(tag)
            return
        if tag in _SKIP_CONTENT:
            self._skip.append(tag)
            return
        if tag == "br":
            self._break_or_empty()
        elif tag == "pre":
            self._break(blank=True)
            self._pre += 1
        elif tag == "hr":
            self._break()
            self._write("---")
            self._break()
        elif tag in _PARAGRAPH:
            self._break(blank=True)
            if tag == "ul":
                self._lists.append(None)
            elif tag == "ol":
                self._lists.append(1)
        elif tag == "blockquote":
            self._break()
            self._quote_depth += 1
        elif tag == "li":
            self._break()
            marker = "- "
            if self._lists and self._lists[-1] is not None:
                number = self._lists[-1]
                self._lists[-1] = number + 1
                marker = f"{number}. "
            self._write(marker)
        elif tag in _BLOCK:
            self._break()
        elif tag in ("td", "th"):
            if self._cur:
                self._write(" ")
        elif tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            self._link = (href, len(self._cur)) if href.lower().startswith(_LINK_SCHEMES) else None
        elif tag == "img":
            alt = one_line(dict(attrs).get("alt") or "")
            if alt:
                self._write(f"[{alt}]")

    def feed_bounded(self, chunk: str) -> None:
        if self._drop_to_gt:
            # The rest of a tag that flush_pending() cut (a huge data: URI, or junk).
            end = chunk.find(">")
            if end < 0:
                return
            chunk = chunk[end + 1 :]
            self._drop_to_gt = False
        self.feed(chunk)
        if len(self.rawdata) > _MAX_PENDING:
            self.flush_pending()

    def feed_crude(self, rest: str) -> None:
        """Linear fallback for the rest of a document with absurdly many tags."""
        self.flush_pending()
        if self._drop_to_gt:
            rest = rest[rest.find(">") + 1 :] if ">" in rest else ""
        self.handle_data(unescape(_TAG_OR_OPEN.sub(" ", rest)))

    def flush_pending(self) -> None:
        """Render what html.parser holds back as open markup, with a linear tag strip.

        ``rawdata`` is ParserBase's buffer (used by every subclass in the stdlib); emptying
        it is what ``reset()`` does too.
        """
        pending, self.rawdata = self.rawdata, ""
        if not pending:
            return
        self._drop_to_gt = pending.rfind("<") > pending.rfind(">")
        self.handle_data(unescape(_TAG_OR_OPEN.sub(" ", pending)))

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        # ``<![foo[`` makes _markupbase raise AssertionError; treat it as a bogus comment.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            end = self.rawdata.find(">", i + 3)
            return len(self.rawdata) if end < 0 else end + 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr", "img"):
            self.handle_endtag(tag)

    def _break_or_empty(self) -> None:
        if self._cur:
            self._break()
        else:
            self._append_line(">" * min(self._quote_depth, _MAX_QUOTE_PREFIX))

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            elif tag == "head":
                self._skip.clear()
            return
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._break(blank=True)
        elif tag == "blockquote":
            self._break()
            self._quote_depth = max(0, self._quote_depth - 1)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._break(blank=True)
        elif tag in _PARAGRAPH:
            self._break(blank=True)
        elif tag in _BLOCK:
            self._break()
        elif tag == "a" and self._link is not None:
            href, start = self._link
            self._link = None
            label = "".join(self._cur[start:]).strip()
            shown = href[7:] if href.lower().startswith("mailto:") else href
            if label != shown and label != href:
                self._write(f" ({shown})" if label else shown)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            parts = data.replace("\r\n", "\n").split("\n")
            for i, part in enumerate(parts):
                if i:
                    self._break_or_empty()
                self._write(part)
            return
        text = " ".join(data.split())
        if not text:
            if self._cur and not self._cur[-1].endswith(" "):
                self._write(" ")
            return
        if data[:1].isspace() and self._cur and not self._cur[-1].endswith(" "):
            text = " " + text
        if data[-1:].isspace():
            text += " "
        if not self._cur:
            text = text.lstrip()
        self._write(text)


_TAG = re.compile(r"<[^>]*>")
_TAG_OR_OPEN = re.compile(r"<[^>]*(?:>|$)")
#: html.parser is fed this much at a time. When a construct stays open (a start tag whose
#: quote never closes, ``<!--`` without ``-->``), the parser keeps it pending and rescans
#: it on every feed; once pending text passes _MAX_PENDING it is stripped crudely instead.
#: At close() the parser would rescan the pending tail from *every* ``<`` in it, which is
#: quadratic (``"<a b='>' " * 10**5`` takes minutes), so pending text never reaches close().
_FEED_CHUNK = 16_384
_MAX_PENDING = 65_536


def html_to_text(html: str, *, max_chars: int = 200_000) -> str:
    """Render untrusted HTML as plain text.

    Scripts, styles and ``<head>`` are dropped; links become ``text (url)``; block
    elements become line breaks; ``<blockquote>`` lines get a ``> `` prefix. Input is cut
    at :data:`MAX_HTML_INPUT_CHARS` and output at ``max_chars``, so cost is bounded.
    """
    html = html[:MAX_HTML_INPUT_CHARS]
    renderer = _TextRenderer(max_chars=max_chars)
    try:
        for start in range(0, len(html), _FEED_CHUNK):
            if renderer.tags > _MAX_TAGS:
                renderer.feed_crude(html[start:])
                break
            renderer.feed_bounded(html[start : start + _FEED_CHUNK])
            if renderer.truncated:
                break
        renderer.flush_pending()
        renderer.close()
    except Exception:  # noqa: BLE001 - html.parser still has AssertionError paths on odd markup
        # Never lose the customer's words to a parser quirk: fall back to a crude, linear
        # tag strip of the whole input (script text may leak in; it is shown as text only).
        return clean_text(" ".join(unescape(_TAG.sub(" ", html)).split()))[:max_chars]
    return clean_text(renderer.text())[:max_chars].rstrip()


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
