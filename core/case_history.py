"""A case's history: what its entries say, as message codes and values, and an entry as
it is read.

A ``case_events`` row is its kind, who (``actor``), ``from_value``/``to_value`` (stored
codes: activities, channels, types; or agents' names) and, where the entry says more, a
message ``code`` and the ``params`` that fill its sentence, never the sentence: each
reader gets it in their own language. The sentences are written here once, in English
(``explain``: scripts/i18n extracts them into the console's catalogues under their code);
the API and the privacy export read them in English (``detail``) beside the code and
values (core.coded_text, the same rules as a contact's history).

Entries without a code: the ones that say no more than their kind and values, one whose
detail is data rather than words (a KB action's URL), and any older stored sentence the
upgrade could not read back (``detail`` is then that stored text, as it was written).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from posventa.core import coded_text
from posventa.core.errors import ErrorText, explain

# Each sentence once, with placeholders for its values; ``says`` fills one for an entry.
# A message that reopened a closed case (core.case_threading).
REOPENED = explain("case_history_reopened", "reopened by the customer")
# The "opened" entry of a case that follows up a case closed too long ago to reopen.
FOLLOW_UP = explain("case_history_follow_up", "follow-up of #%(case)s")
# The customer answered a case that waited for them (core.sla_store).
CUSTOMER_WROTE = explain("case_history_customer_wrote", "the customer wrote")
# The customer closed the case with a KB article (core.case_type_question).
SELF_SERVED = explain("case_history_self_served", "self-served")
# A case opened by an agent or the API with an earlier date (``at``: ISO 8601).
DATED = explain("case_history_dated", "dated %(at)s")
# Derived to a sector.
SECTOR = explain("case_history_sector", "sector: %(sector)s")
# The notice of an activity the customer was sent (``activity``: its code).
CUSTOMER_TOLD = explain("case_history_customer_told", "%(activity)s")
# The budget follows the process's mode rather than one of its own.
PROCESS_BUDGET_MODE = explain("case_history_process_budget_mode", "the process's mode")
# Automatic assignment (core.assignment): by its strategy's code, or away from an agent.
ASSIGNED = explain("case_history_assigned", "automatic (%(strategy)s)")
REASSIGNED = explain("case_history_reassigned", "reassigned: %(previous)s away")
# Privacy erasure and merges (core.contacts).
CONTACT_ERASED = explain("case_history_contact_erased", "contact erased")
CONTACT_MERGED = explain("case_history_contact_merged", "contact #%(source)s merged into contact #%(target)s")
ORGANIZATION_MERGED = explain("case_history_organization_merged", "organization #%(source)s merged into #%(target)s")
# A detractor survey (core.surveys.detractors): the answer (the question as the case's
# description words it), the case it opened, whom it was given to.
DETRACTOR_ANSWER = explain("case_history_detractor_answer", "%(question)s → %(score)s (weight %(weight)s)")
DETRACTOR_OPENED = explain("case_history_detractor_opened", "detractor answer in survey %(survey)s (sale %(sale)s)")
DETRACTOR_ASSIGNED = explain("case_history_detractor_assigned", "among the rule's operators (%(operators)s)")
# A delivery that failed for good (core.outbox): ``error`` is the channel's own words.
DELIVERY_FAILED = explain("case_history_delivery_failed", "Delivery by %(channel)s to %(recipient)s failed: %(error)s")

#: Every sentence by its code.
SENTENCES: Mapping[str, ErrorText] = {text.code: text for text in (
    REOPENED, FOLLOW_UP, CUSTOMER_WROTE, SELF_SERVED, DATED, SECTOR, CUSTOMER_TOLD, PROCESS_BUDGET_MODE, ASSIGNED,
    REASSIGNED, CONTACT_ERASED, CONTACT_MERGED, ORGANIZATION_MERGED, DETRACTOR_ANSWER, DETRACTOR_OPENED,
    DETRACTOR_ASSIGNED, DELIVERY_FAILED)}


#: The columns of an entry that says no more than its kind and values.
NOTHING_MORE: Mapping[str, None] = MappingProxyType({"code": None, "params": None, "detail": None})


def says(text: ErrorText, **values: Any) -> dict[str, Any]:
    """The ``code``/``params``/``detail`` columns of an entry saying ``text`` with ``values``:
    ``insert(case_events).values(..., **says(REOPENED))``."""
    if text.code not in SENTENCES:
        raise KeyError(f"{text.code!r} is not a case history sentence")
    return coded_text.columns(explain(text.code, text.template, **values))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def read(row: Any) -> dict[str, Any]:
    """A stored entry as the API, the console and the export read it: when, who, its
    kind, ``from`` and ``to``, ``code`` and ``values`` (null and {} without a code) and
    ``detail``, the English sentence (or the stored text of an entry without a code)."""
    return {"at": _iso(row.at), "actor": row.actor, "kind": row.kind, "from": row.from_value, "to": row.to_value,
            **coded_text.read(SENTENCES, row.code, row.params, row.detail)}
