"""Plain text out of untrusted markup and text: what an agent, a customer or the KB index reads.

One renderer for every HTML that reaches posventa: an email's HTML part
(``intake/email``) and a Discourse post's cooked HTML (``kb/discourse.py``).

* :func:`html_to_text` — a ``html.parser`` based renderer (no tree, no network, no
  scripts): scripts, styles and ``<head>`` are dropped; links become ``text (url)``;
  lists become ``- `` or ``1. `` lines; table cells are separated by a space; ``<pre>``
  keeps its lines; ``<blockquote>`` lines get a ``> `` prefix (so that an HTML reply goes
  through the same quote stripping as a plain one); entities are decoded and runs of
  white space folded. Input and output are bounded, so the cost is too.
* :func:`clean_text` — newlines normalised, control characters and lone surrogates gone;
* :func:`one_line` — a single header-safe line (no CR or LF survives it).
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

__all__ = ["MAX_HTML_INPUT_CHARS", "clean_text", "html_to_text", "one_line"]

#: HTML bigger than this is cut before parsing: real newsletters are a few hundred KB.
MAX_HTML_INPUT_CHARS = 2_000_000
#: html.parser costs ~10µs a tag; past this many start tags the rest is stripped crudely
#: (a real newsletter has a few thousand).
_MAX_TAGS = 50_000
#: Nested blockquotes deeper than this share one prefix (a reply chain never goes deeper).
_MAX_QUOTE_PREFIX = 5

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


_SKIP_CONTENT = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "object", "iframe"})
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "pre", "hr"})
_BLOCK = frozenset(
    {
        "div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "address", "form",
        "fieldset", "figure", "figcaption", "center", "main", "nav", "aside", "caption", "tbody",
        "thead", "tfoot", "blockquote", "details", "summary",
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


def html_to_text(html: str, *, max_chars: int = 200_000, max_input_chars: int = MAX_HTML_INPUT_CHARS) -> str:
    """Render untrusted HTML as plain text.

    Scripts, styles, frames and ``<head>`` are dropped; links become ``text (url)``;
    block elements become line breaks; ``<blockquote>`` lines get a ``> `` prefix. Input
    is cut at ``max_input_chars`` and output at ``max_chars``, so cost is bounded.
    """
    html = html[:max_input_chars]
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
