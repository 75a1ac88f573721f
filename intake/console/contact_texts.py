"""What core says in a history, in the reader's language: a contact's or a case's history
entry (core.contacts.history, core.case_history: a code and its values), an erased
contact's name (stored in English, "erased contact #12"; a Spanish reader sees "contacto
borrado #12") and what erasure left in its cases' texts and undelivered replies.

All are core's ``explain`` texts: the catalogues hold them under their code (msgctxt),
scripts/i18n extracts them from core. Both histories are read here, by one rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from posventa.core import case_history, coded_text
from posventa.core.contacts import history as contact_history
from posventa.core.contacts.privacy import erased_label, erasure_words, is_erased_name
from posventa.core.errors import ErrorText
from posventa.intake.console.i18n import ConsoleLocales, ConsoleText
from posventa.intake.console.labels import label

#: Every history sentence by its code (each code is one table's: the i18n test checks).
SENTENCES: Mapping[str, ErrorText] = {**contact_history.SENTENCES, **case_history.SENTENCES}
#: Values of a history sentence that are stored codes, each shown by its label (the
#: identity's or delivery's channel; the fields an edit changed, as the API names them;
#: the activity a notice told; the assignment strategy).
LABELLED_VALUES = frozenset({"channel", "fields", "activity", "strategy"})
#: Values that are a moment (ISO 8601), shown in the reader's time zone and format.
MOMENT_VALUES = frozenset({"at"})
#: Kinds of case history entry whose ``from``/``to`` are stored codes (an activity, a
#: channel, a type, a KB action, a budget mode), shown by their labels; the others' are
#: names, numbers or text (an agent, a category, a sector), shown as they are.
CODED_FROM_TO = frozenset({"opened", "activity", "reopened", "reply", "customer_told", "type", "kb_action",
                           "budget"})


def history_text(locales: ConsoleLocales, entry: Mapping[str, Any]) -> str:
    """A history entry's sentence in the reader's language (``entry`` as ``ContactService.get``
    or ``CaseService.get_case`` reads it); an entry without a code, its stored text as it is."""
    code = entry.get("code")
    if code not in SENTENCES:
        return entry.get("detail") or ""
    values: dict[str, Any] = {}
    for key, value in (entry.get("values") or {}).items():
        if key in LABELLED_VALUES:
            value = [locales.gettext(label(item)) for item in (value if isinstance(value, list) else [value])]
        elif key in MOMENT_VALUES and isinstance(value, str):
            value = locales.datetime(value)
        values[key] = value
    return locales.pgettext(code, SENTENCES[code].template) % coded_text.fill(values)


def history_value(locales: ConsoleLocales, value: Any, kind: str) -> str:
    """A case history entry's ``from`` or ``to`` value in the reader's language."""
    if value is None:
        return ""
    return locales.gettext(label(value)) if kind in CODED_FROM_TO else str(value)


def person(locales: ConsoleLocales, name: Any, contact_id: Any = None) -> Any:
    """A contact's name as the console shows it: an erased contact's in the reader's
    language (only the exact name erasure gave that very contact), any other as it is."""
    if not is_erased_name(name, contact_id):
        return name
    text = erased_label(contact_id)
    return locales.translate(ConsoleText(text.template, text.params, context=text.code))


def erased_text(locales: ConsoleLocales, text: Any, erased: bool) -> Any:
    """A case's title or description, a message's text or a delivery's error as the console
    shows it: erasure's stored placeholder in the reader's language when the case's contact
    was ``erased`` (ReadModels.erased_contacts), any other text as it is."""
    words = erasure_words(text, erased=erased)
    if words is None:
        return text
    return locales.translate(ConsoleText(words.template, words.params, context=words.code))
