"""Text as Telegram shows it: HTML parse mode, everything from outside escaped.

Customer and agent text is data, never markup: ``html.escape`` on every piece we did not
write ourselves, so "<script>" or a stray "&" shows as typed and cannot break a send.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from posventa.bots.telegram import callbacks
from posventa.bots.telegram.texts import activity_name, contact_name, t
from posventa.core.domain import Choice, Suggestion
from posventa.core.texts import case_type_name

TOPIC_NAME_MAX = 128
BUTTON_TEXT_MAX = 64


def esc(value: object) -> str:
    return html.escape(str(value), quote=False)


def topic_name(number: int, title: str | None) -> str:
    """``#<number> · <title>``, within Telegram's 128 characters."""
    name = f"#{number} · {' '.join((title or '').split())}".strip(" ·")
    return name if len(name) <= TOPIC_NAME_MAX else name[: TOPIC_NAME_MAX - 1] + "…"


def keyboard(choices: Sequence[Choice], question: str | None,
             suggestions: Sequence[Suggestion] = ()) -> InlineKeyboardMarkup | None:
    """Suggestions as link buttons (one per row), then the choices side by side."""
    rows: list[list[InlineKeyboardButton]] = []
    for s in suggestions:
        if s.url.startswith(("https://", "http://")) and len(s.url) <= 2000:
            rows.append([InlineKeyboardButton(_label(s.title), url=s.url)])
    if choices and question:
        rows.append([InlineKeyboardButton(_label(c.label), callback_data=callbacks.encode(question, c.value, i))
                     for i, c in enumerate(choices)])
    return InlineKeyboardMarkup(rows) if rows else None


def _label(text: str) -> str:
    text = " ".join(text.split()) or "·"
    return text if len(text) <= BUTTON_TEXT_MAX else text[: BUTTON_TEXT_MAX - 1] + "…"


def customer_message(text: str, *, name: str | None, channel: str, attachments: int = 0) -> str:
    """A customer's message as mirrored into the case's topic."""
    head = f"👤 <b>{esc(name or '?')}</b> · {esc(channel)}"
    if attachments:
        head += f" · 📎{attachments}"
    body = esc(text.strip()) if text.strip() else "<i>(sin texto)</i>"
    return f"{head}\n{body}"


def header_card(case: Mapping[str, Any], language: str) -> str:
    """The first message of a case's topic: who, where from, and where the case stands."""
    none = t("card_none", language)
    contact = case.get("contact") or {}
    name = contact_name(contact.get("name"), contact.get("id"), language) or case.get("contact_name")
    who = [p for p in (name, contact.get("email"), contact.get("phone"),
                       case.get("organization")) if p]
    category = none
    if case.get("category"):
        category = case["category"]["name"]
        if case.get("subcategory"):
            category += f" › {case['subcategory']['name']}"
    try:
        type_name = case_type_name(case.get("type") or "unclassified", language)
    except ValueError:
        type_name = str(case.get("type"))
    activity = activity_name(case.get("activity") or "", language)
    if case.get("sector"):
        activity += f" ({case['sector']})"
    lines = [
        f"📋 <b>{esc(t('card_case', language))} #{case['number']}</b> · {esc(case.get('title') or '')}",
        f"<b>{esc(t('card_customer', language))}:</b> {esc(' · '.join(who) or none)}",
        f"<b>{esc(t('card_channel', language))}:</b> {esc(case.get('channel') or none)}",
        f"<b>{esc(t('card_type', language))}:</b> {esc(type_name)}",
        f"<b>{esc(t('card_category', language))}:</b> {esc(category)}",
        f"<b>{esc(t('card_activity', language))}:</b> {esc(activity)}",
        f"<b>{esc(t('card_assigned', language))}:</b> {esc(case.get('assigned_agent') or none)}",
    ]
    survey = case.get("survey")
    if survey:  # a detractor survey's case: which survey, which sale (the seller's commission)
        lines.append(f"<b>{esc(t('card_survey', language))}:</b> #{survey['instance_id']} "
                     f"«{esc(survey['rule']['name'])}» · {esc(t('card_sale', language))} "
                     f"{esc(survey['sale']['external_id'])} ({esc(survey['sale']['seller'])})")
    suggestions = case.get("suggestions") or []
    if suggestions:
        lines.append(f"<b>{esc(t('card_suggestions', language))}:</b>")
        for s in suggestions[:5]:
            score = f" ({float(s.get('score') or 0):.0f})"
            url = str(s.get("url") or "")
            if url.startswith(("https://", "http://")):
                lines.append(f"• <a href=\"{html.escape(url, quote=True)}\">{esc(str(s.get('title') or url)[:200])}</a>{score}")
            else:
                lines.append(f"• {esc(s.get('title') or '')}{score}")
    else:
        lines.append(f"<b>{esc(t('card_suggestions', language))}:</b> {none}")
    # Every piece is bounded (titles 300, names 200, five suggestions), so the visible text
    # stays under Telegram's 4096 characters; cutting the HTML here could break a tag.
    return "\n".join(lines)
