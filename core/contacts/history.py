"""A contact's history: what each kind of entry says, as data, and an entry as it is read.

An entry is stored as its kind, a message ``code`` and the ``values`` that fill the
code's sentence (``contact_events.code`` / ``params``), never as a sentence: each reader
gets it in their own language. The sentences are written here once, in English
(``explain``: scripts/i18n extracts them into the console's catalogues under their
code, and the console translates them there); the API and the privacy export read them
in English (``detail``), beside the code and values.

A value that is a list (the fields an edit changed) reads as its items joined by ", "
(core.coded_text, the same for a case's history).
Entries without a code: the ones that say nothing more than their kind ("created"),
the ones whose details an erasure removed, and any older stored sentence the upgrade
could not read back (``detail`` is then that stored text, as it was written).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from posventa.core import coded_text
from posventa.core.errors import ErrorText, explain

#: Every kind of entry and what it says, as a code and its English sentence with
#: ``%(name)s`` placeholders for its values (None: the kind says it all).
KINDS: Mapping[str, ErrorText | None] = {
    "created": None,
    # An edit: the API's names of the fields that changed (the console shows their labels).
    "updated": explain("contact_history_updated", "changed: %(fields)s"),
    # An identity an agent added or removed: its channel (a code) and address.
    "identity_added": explain("contact_history_identity_added", "%(channel)s: %(address)s"),
    "identity_removed": explain("contact_history_identity_removed", "%(channel)s: %(address)s"),
    # The kept contact of a merge: whom it absorbed and what moved (core.contacts.merge.ContactMoves).
    "merged": explain("contact_history_merged",
                      "absorbed contact #%(source)s; moved identities: %(identities)s, cases: %(cases)s, messages: "
                      "%(messages)s, sales: %(sales)s, survey instances: %(survey_instances)s, web chat sessions: "
                      "%(webchat_sessions)s, history entries: %(history)s"),
    "merged_into": explain("contact_history_merged_into", "merged into contact #%(target)s"),
    # An erasure: how many cases and messages it emptied, how many files it deleted.
    "erased": explain("contact_history_erased", "cases: %(cases)s, messages: %(messages)s, files: %(files)s"),
}
#: The sentences by code.
SENTENCES: Mapping[str, ErrorText] = {text.code: text for text in KINDS.values() if text is not None}


def entry(kind: str, **values: Any) -> dict[str, Any]:
    """The columns of a new entry of ``kind`` saying ``values``; a kind or value missing
    here is a programming error, caught when the entry is written rather than when read."""
    text = KINDS[kind]
    if text is None:
        if values:
            raise TypeError(f"a {kind!r} entry has no values")
        return {"kind": kind, "code": None, "params": None, "detail": None}
    sentence(text.code, values)
    return {"kind": kind, "code": text.code, "params": values, "detail": None}


def sentence(code: str, values: Mapping[str, Any]) -> str:
    """``code``'s English sentence filled with ``values``."""
    return coded_text.english(SENTENCES[code], values)


def read(row: Any) -> dict[str, Any]:
    """A stored entry as the API, the console and the export read it: ``code`` and
    ``values`` (null and {} without a code) and ``detail``, the English sentence (or the
    stored text of an entry without a code)."""
    return {"at": row.at.isoformat(), "actor": row.actor, "kind": row.kind,
            **coded_text.read(SENTENCES, row.code, row.params, row.detail)}
