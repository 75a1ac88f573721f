"""Markdown the agents write (the KB Problem and Answer), rendered for the console.

markdown-it-py renders CommonMark with raw HTML off; nh3 (ammonia) then keeps only the
tags and attributes a KB entry needs. So no ``<script>``, no ``on*`` handler, no
``javascript:``/``data:`` link survives, whatever the text says, and images may only come
from our own origin (a relative URL) or https. The one renderer serves the saved view and
the editor's preview, so what the agent previews is what the page shows.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

#: Longer texts are cut before rendering: the KB fields hold at most 100,000 characters.
MAX_MARKDOWN_CHARS = 100_000

_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre", "blockquote",
         "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}, "th": {"align"},
               "td": {"align"}}
_SCHEMES = {"http", "https", "mailto"}


def _renderer() -> MarkdownIt:
    # "html": False: raw HTML in the text is shown as text, never passed through.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


class MarkdownRenderer:
    def __init__(self) -> None:
        self._md = _renderer()

    def render(self, text: str | None) -> str:
        """Safe HTML for ``text`` (empty for None)."""
        if not text:
            return ""
        html = self._md.render(text[:MAX_MARKDOWN_CHARS])
        return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_SCHEMES,
                         link_rel="noopener noreferrer nofollow", strip_comments=True)
