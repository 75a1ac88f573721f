"""Human labels for the stored codes the console shows (activity, type, channel...).

Codes stay in English in the database and the API; people read these. One table, so a
translation later changes one file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LABELS: Mapping[str, str] = {
    # SLA targets and states (the inbox's due column)
    "first_response": "First response",
    "next_response": "Next response",
    "resolution": "Resolution",
    "breached": "Breached",
    "paused": "Paused: waiting for the customer",
    # activities (the seeds' workflow)
    "preliminary_analysis": "Preliminary analysis",
    "derived": "Derived to a sector",
    "answer_sent": "Answer sent",
    "closed": "Closed",
    # case types
    "unclassified": "Unclassified",
    "request": "Request",
    "complaint": "Complaint",
    "incident": "Incident",
    # channels
    "email": "Email",
    "telegram": "Telegram",
    "webchat": "Web chat",
    "api": "Console / phone",
    "desk": "Agents' desk",
    "kb": "Knowledge base",
    # authors
    "customer": "Customer",
    "agent": "Agent",
    "bot": "Bot",
    "note": "Internal note",
    # budget modes
    "not_used": "Not used",
    "products_only": "Products only",
    "products_with_amounts": "Products, quantities and amounts",
    # KB actions
    "publish": "Published as a new solution",
    "link": "Solved with another case",
    "none": "Not published",
    # roles
    "admin": "Admin",
    "manager": "Manager",
    # survey instance statuses
    "pending": "Pending",
    "open": "Open",
    "executed": "Executed",
    "expired": "Expired",
    "paused": "Paused",
    # case events
    "opened": "Opened",
    "activity": "Activity",
    "type": "Type",
    "category": "Category",
    "sector": "Sector",
    "assign": "Assignment",
    "kb_action": "KB action",
    "kb_fields": "KB fields",
    "kb_published": "Published to the KB",
    "reply": "Reply",
    "budget": "Budget",
    "reopened": "Reopened",
    "delivery_failed": "Delivery failed",
    # where a search matched (core/search.py)
    "number": "Case number",
    "case": "Title or description",
    "message": "Message",
    "contact": "Customer",
    "address": "Customer's address",
}


def label(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return LABELS.get(text, text.replace("_", " "))
