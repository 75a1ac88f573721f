"""What core says about a contact, in the reader's language: a history entry's sentence
(core.contacts.history: a code and its values) and an erased contact's name (stored in
English, "erased contact #12"; a Spanish reader sees "contacto borrado #12").

Both are core's ``explain`` texts: the catalogues hold them under their code (msgctxt),
scripts/i18n extracts them from core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from posventa.core.contacts.history import SENTENCES
from posventa.core.contacts.privacy import erased_label, is_erased_name
from posventa.intake.console.i18n import ConsoleLocales, ConsoleText
from posventa.intake.console.labels import label

#: Values of a history sentence that are stored codes, each shown by its label (the
#: identity's channel; the fields an edit changed, as the API names them).
LABELLED_VALUES = frozenset({"channel", "fields"})


def history_text(locales: ConsoleLocales, entry: Mapping[str, Any]) -> str:
    """A history entry's sentence in the reader's language (``entry`` as
    ``ContactService.get`` reads it); an entry without a code, its stored text as it is."""
    code = entry.get("code")
    if code not in SENTENCES:
        return entry.get("detail") or ""
    values = {}
    for key, value in (entry.get("values") or {}).items():
        if key in LABELLED_VALUES:
            value = [locales.gettext(label(item)) for item in (value if isinstance(value, list) else [value])]
        values[key] = ", ".join(map(str, value)) if isinstance(value, list) else value
    return locales.pgettext(code, SENTENCES[code].template) % values


def person(locales: ConsoleLocales, name: Any, contact_id: Any = None) -> Any:
    """A contact's name as the console shows it: an erased contact's in the reader's
    language (only the exact name erasure gave that very contact), any other as it is."""
    if not is_erased_name(name, contact_id):
        return name
    text = erased_label(contact_id)
    return locales.translate(ConsoleText(text.template, text.params, context=text.code))
