"""Which case a customer's message joins, once a case is closed.

The rules, in one place for every channel:

- a case is *open* while it is not closed; a chat message with no thread hint joins
  the contact's newest open case (``open_case_condition``);
- a message to a case closed less than ``reopen_days`` ago **reopens** it: back to
  preliminary analysis, with a "reopened by the customer" history entry, the assigned
  agent kept;
- a message to a case closed longer ago opens a **new case linked to it** (a follow-up);
- an answer to a button the bot asked (a choice) never reopens anything: it is an answer
  to the bot, not a new request. Survey answers never reach these rules (the survey
  runner consumes them first).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement

from core.domain import Activity
from core.persistence.schema import cases

DEFAULT_REOPEN_DAYS = 7
REOPENED_DETAIL = "reopened by the customer"


class AfterClose(enum.Enum):
    #: The message joins the closed case as it is (a button answer).
    JOIN = "join"
    REOPEN = "reopen"
    FOLLOW_UP = "follow_up"


def open_case_condition() -> ColumnElement[bool]:
    """The cases a message without a thread hint may join."""
    return cases.c.activity != Activity.CLOSED.value


def is_closed(activity: str) -> bool:
    return activity == Activity.CLOSED.value


def reopen_cutoff(now: datetime, reopen_days: int) -> datetime:
    """Cases closed at or after this instant are reopened by a customer's message."""
    return now - timedelta(days=reopen_days)


def after_close(closed_at: datetime | None, *, now: datetime, reopen_days: int, is_choice: bool) -> AfterClose:
    """What a customer's message to a closed case does."""
    if is_choice:
        return AfterClose.JOIN
    if closed_at is not None and closed_at >= reopen_cutoff(now, reopen_days):
        return AfterClose.REOPEN
    return AfterClose.FOLLOW_UP
