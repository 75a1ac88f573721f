"""Human labels for the stored codes the console shows (activity, type, channel...).

Codes stay in English in the database and the API; people read these. One table; the values are
marked N_ and translated where they are shown (the console's ``label`` filter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from posventa.intake.console.i18n import N_

LABELS: Mapping[str, str] = {
    # SLA targets and states (the inbox's due column)
    "first_response": N_("First response"),
    "next_response": N_("Next response"),
    "resolution": N_("Resolution"),
    "breached": N_("Breached"),
    "sla_paused": N_("Paused: waiting for the customer"),
    # activities (the seeds' workflow)
    "preliminary_analysis": N_("Preliminary analysis"),
    "derived": N_("Derived to a sector"),
    "answer_sent": N_("Answer sent"),
    "closed": N_("Closed"),
    # case types
    "unclassified": N_("Unclassified"),
    "request": N_("Request"),
    "complaint": N_("Complaint"),
    "incident": N_("Incident"),
    # channels
    "email": N_("Email"),
    "telegram": N_("Telegram"),
    "webchat": N_("Web chat"),
    "api": N_("Console / phone"),
    "desk": N_("Agents' desk"),
    "kb": N_("Knowledge base"),
    # authors
    "customer": N_("Customer"),
    "agent": N_("Agent"),
    "bot": N_("Bot"),
    "note": N_("Internal note"),
    # budget modes
    "not_used": N_("Not used"),
    "products_only": N_("Products only"),
    "products_with_amounts": N_("Products, quantities and amounts"),
    # KB actions
    "publish": N_("Published as a new solution"),
    "link": N_("Solved with another case"),
    "none": N_("Not published"),
    # roles
    "admin": N_("Admin"),
    "manager": N_("Manager"),
    # survey instance statuses
    "pending": N_("Pending"),
    "open": N_("Open"),
    "executed": N_("Executed"),
    "expired": N_("Expired"),
    "paused": N_("Paused"),
    # case events
    "opened": N_("Opened"),
    "activity": N_("Activity"),
    "type": N_("Type"),
    "category": N_("Category"),
    "sector": N_("Sector"),
    "assign": N_("Assignment"),
    "kb_action": N_("KB action"),
    "kb_fields": N_("KB fields"),
    "kb_published": N_("Published to the KB"),
    "reply": N_("Reply"),
    "budget": N_("Budget"),
    "reopened": N_("Reopened"),
    "delivery_failed": N_("Delivery failed"),
    "customer_told": N_("Customer told"),
    "detractor_answer": N_("Detractor answer"),
    # automatic assignment strategies (core.assignment), as its history entries name them
    "round_robin": N_("round robin"),
    "least_open": N_("fewest open cases"),
    # where a search matched (core/search.py)
    "number": N_("Case number"),
    "case": N_("Title or description"),
    "message": N_("Message"),
    "contact": N_("Customer"),
    "address": N_("Customer's address"),
    # contact identities and history (core/contacts)
    "phone": N_("Phone"),
    "created": N_("Created"),
    "updated": N_("Updated"),
    "identity_added": N_("Identity added"),
    "identity_removed": N_("Identity removed"),
    "merged": N_("Merged"),
    "merged_into": N_("Merged into another contact"),
    "erased": N_("Erased"),
    # a contact's fields, as an edit's history entry names them (core.contacts.history)
    "name": N_("Name"),
    "language": N_("Language"),
    "notes": N_("Notes"),
    "attributes": N_("Attributes"),
    "organization_id": N_("Organization"),
    "contact_merged": N_("Contact merged"),
    "organization_merged": N_("Organization merged"),
}


def label(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return LABELS.get(text, text.replace("_", " "))
