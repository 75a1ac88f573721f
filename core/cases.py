"""What agents do to cases, whichever door they come through (API, console, Telegram desk).

Every method is one transaction; replies are recorded and queued in the outbox in that
transaction and sent by the workers after commit.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.budget import FOLLOW_PROCESS, BudgetPolicy, money
from posventa.core.budget import total as budget_total
from posventa.core.case_counts import activity_counts
from posventa.core.domain import (
    STALE_AUTHORS,
    Activity,
    AttachmentRef,
    Author,
    BudgetMode,
    CaseType,
    ChannelName,
    Direction,
    KbAction,
)
from posventa.core.contacts.identities import EMAIL, PHONE, create_contact, identity_owners
from posventa.core.contacts.normalize import email_address, phone_number
from posventa.core.errors import NotFound, StaleReply, ValidationError, explain
from posventa.core.notices import CustomerNotices
from posventa.core.outgoing import CUSTOMER_CHANNELS, Outgoing, ComposedMessage, Recipient, email_thread_for_case
from posventa.core.outbox import delivery_states
from posventa.core.persistence import Database
from posventa.core.persistence.schema import (
    attachments,
    budget_lines,
    case_events,
    case_suggestions,
    cases,
    categories,
    contact_identities,
    contacts,
    messages,
    organizations,
    products,
    rule_instances,
    sales,
    survey_rules,
)
from posventa.core.ports import Clock
from posventa.core.search import hits as search_hits
from posventa.core.search import TERM_STATS_MAX_AGE_S, ExactTerms, TermStats, parse_query, read_exact_terms, read_term_stats
from posventa.core.search import snippets as search_snippets
from posventa.core.sla import activity_changed, agent_replied, breach_of, breaches_of, opened, urgency
from posventa.core.sla_store import CaseClockStore
from posventa.core.workflow import CLASSIFIED_TYPES, check_transition

MAX_TEXT = 100_000
#: Files one reply may carry (each within the upload rule, core/uploads.py).
MAX_REPLY_FILES = 10

log = logging.getLogger(__name__)

#: Called inside the transaction that closes a case (its number, the time); what it
#: returns is queued in the outbox with the close (a detractor survey's follow-up question).
CaseClosedHook = Callable[[AsyncConnection, int, datetime], Awaitable[Sequence[ComposedMessage]]]
#: ``hook(number, assignee, previous)``, after an agent gave a case to someone else.
CaseAssignedHook = Callable[[int, str, str | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CaseFilter:
    activity: str | None = None
    open_only: bool = False
    case_type: str | None = None
    category_id: int | None = None
    channel: str | None = None
    assigned_agent: str | None = None
    text: str | None = None
    #: Only cases with a running SLA target past its due time.
    overdue: bool = False
    #: Only cases whose nearest running target is due before this instant.
    due_before: datetime | None = None
    #: "updated" (newest activity first) or "due" (nearest due time first, then the rest).
    sort: str = "updated"
    #: A contact's or an organization's cases (the contact and organization pages).
    contact_id: int | None = None
    organization_id: int | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class NewCase:
    """A case an agent opens by hand (a customer phoned)."""

    title: str
    description: str
    #: Mandatory, as in the seeds: an agent who opens a case knows what the customer wants.
    case_type: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    organization: str | None = None
    #: An existing contact or organization instead of the typed ones.
    contact_id: int | None = None
    organization_id: int | None = None
    category_id: int | None = None
    subcategory_id: int | None = None
    language: str = "es"
    #: When the customer got in touch (a phone call yesterday): the case's date, which
    #: reports and due times count from. None: now. Never in the future.
    case_date: datetime | None = None


#: Older case dates are typing mistakes, not phone calls (year 2 instead of 2026).
EARLIEST_CASE_DATE = datetime(2000, 1, 1, tzinfo=UTC)


def _case_date(value: datetime | None, now: datetime) -> datetime:
    if value is None:
        return now
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(explain("date_without_zone", "date must be a date and time with its time zone"),
                              field="date")
    if value > now:
        raise ValidationError(explain("date_in_future", "date must not be in the future"), field="date")
    if value < EARLIEST_CASE_DATE:
        raise ValidationError(explain("date_too_early", "date must be after 2000-01-01"), field="date")
    return value


def _enum(cls, value: Any, field: str):
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(v.value for v in cls)
        raise ValidationError(explain("field_choice", "%(field)s must be one of: %(allowed)s", field=field,
                                      allowed=allowed), field=field) from None


def _case_type(value: Any, field: str = "type") -> str:
    """A type a case may carry: request, complaint or incident (never back to unclassified)."""
    allowed = ", ".join(t.value for t in CLASSIFIED_TYPES)
    if value is None or value == "":
        raise ValidationError(explain("field_required_choice", "%(field)s is required: one of %(allowed)s", field=field,
                                      allowed=allowed), field=field)
    if value not in {t.value for t in CLASSIFIED_TYPES}:
        raise ValidationError(explain("field_choice", "%(field)s must be one of: %(allowed)s", field=field,
                                      allowed=allowed), field=field)
    return str(value)


def _text(value: Any, field: str, *, required: bool = True, max_len: int = MAX_TEXT) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(explain("field_required", "%(field)s is required", field=field), field=field)
        return None
    if not isinstance(value, str):
        raise ValidationError(explain("field_not_text", "%(field)s must be a string", field=field), field=field)
    if len(value) > max_len:
        raise ValidationError(explain("field_too_long", "%(field)s is longer than %(max)s characters", field=field,
                                      max=max_len), field=field)
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL (the insert failed: a 500); SQLite would store
        # it and then cut LIKE patterns at it. Never meaningful in what an agent types.
        raise ValidationError(explain("field_nul", "%(field)s contains a NUL character", field=field), field=field)
    return value


class CaseService:
    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, on_commit: Callable[[], None] = lambda: None,
                 desk_enabled: bool = False, sla: CaseClockStore | None = None,
                 budget: BudgetPolicy = BudgetPolicy(), notices: CustomerNotices | None = None,
                 phone_region: str = "AR"):
        self._db = db
        #: The process's budget mode and currency ([cases]); a case overrides the mode only explicitly.
        self._budget = budget
        #: The SLA clock: agents' replies, activity changes and reclassification move it.
        self._sla = sla
        #: Phones typed on a manual case without a country code are of this country.
        self._phone_region = phone_region
        #: What the customer is told when a case is answered or closed (``[cases]``).
        self._notices = notices if notices is not None else CustomerNotices()
        self._outgoing = outgoing
        self._clock = clock
        #: Copy replies made elsewhere (API, console) into the case's agents' desk topic.
        self._desk_enabled = desk_enabled
        #: Called after a commit that queued deliveries (wakes the outbox workers).
        self._on_commit = on_commit
        self._closed_hooks: list[CaseClosedHook] = []
        self._assigned_hooks: list[CaseAssignedHook] = []
        #: PostgreSQL's statistics on the searched texts (core.search.TermStats) and when
        #: they were read (time.monotonic()): they move with ANALYZE, not per query.
        self._term_stats: tuple[float, TermStats] | None = None

    def add_assigned_hook(self, hook: CaseAssignedHook) -> None:
        """Run ``hook`` after an agent (the console, the API, the desk) gives a case to another
        agent, once committed; automatic assignment tells its own listeners."""
        self._assigned_hooks.append(hook)

    def add_closed_hook(self, hook: CaseClosedHook) -> None:
        """Run ``hook`` whenever an agent closes a case (surveys follow up their detractors)."""
        self._closed_hooks.append(hook)

    @property
    def budget_policy(self) -> BudgetPolicy:
        """The process's budget mode and currency ([cases])."""
        return self._budget

    # --- reading -----------------------------------------------------------------------

    async def list_cases(self, f: CaseFilter = CaseFilter()) -> list[dict[str, Any]]:
        """The cases ``f`` selects: newest activity first, or, with ``f.text``, the best
        full-text matches first, each with a ``match`` saying where and a snippet."""
        q = select(*_SUMMARY_COLS).select_from(_SUMMARY_FROM)
        conds = []
        if f.assigned_agent is not None and "\x00" in f.assigned_agent:
            # PostgreSQL refuses a NUL in a parameter (a 500); no stored name holds one.
            raise ValidationError(explain("field_nul", "%(field)s contains a NUL character", field="assigned_agent"),
                                  field="assigned_agent")
        if f.activity:
            conds.append(cases.c.activity == _enum(Activity, f.activity, "activity").value)
        if f.open_only:
            conds.append(cases.c.activity != Activity.CLOSED.value)
        if f.case_type:
            conds.append(cases.c.case_type == _enum(CaseType, f.case_type, "type").value)
        if f.category_id is not None:
            conds.append(or_(cases.c.category_id == f.category_id, cases.c.subcategory_id == f.category_id))
        if f.channel:
            conds.append(cases.c.channel == _enum(ChannelName, f.channel, "channel").value)
        if f.assigned_agent:
            conds.append(cases.c.assigned_agent == f.assigned_agent)
        if f.contact_id is not None:
            conds.append(cases.c.contact_id == f.contact_id)
        if f.organization_id is not None:
            conds.append(cases.c.organization_id == f.organization_id)
        search = parse_query(f.text) if f.text else None
        if f.sort not in ("updated", "due"):
            raise ValidationError(explain("field_choice", "%(field)s must be one of: %(allowed)s", field="sort",
                                          allowed="updated, due"), field="sort")
        if f.text and search is None:
            return []  # no letter or digit in it: nothing can match
        now = self._clock.now()
        if f.overdue:
            conds.append(cases.c.due_at <= now)
        if f.due_before is not None:
            conds.append(cases.c.due_at < f.due_before)
        limit = max(1, min(int(f.limit), 500))
        offset = max(0, int(f.offset))
        if search is not None or f.sort == "updated":
            order = [cases.c.updated_at.desc(), cases.c.id.desc()]
            async with self._db.engine.connect() as conn:
                if search is not None:
                    dialect = self._db.engine.dialect.name
                    stats: TermStats | ExactTerms = (await read_exact_terms(conn, search) if dialect == "sqlite"
                                                     else await self._search_stats(conn))
                    found = search_hits(search, dialect, stats)
                    # The page is chosen among the hits (a common word: thousands of cases)
                    # on the few columns it is ordered by; the summaries are read for it alone.
                    page = (select(cases.c.id, found.c.score, found.c.source, found.c.source_id)
                            .select_from(cases.join(found, found.c.case_id == cases.c.id))
                            .where(*conds)
                            .order_by(found.c.score.desc(), *order).limit(limit).offset(offset).subquery("page"))
                    q = (select(*_SUMMARY_COLS, page.c.source, page.c.source_id)
                         .select_from(_SUMMARY_FROM.join(page, page.c.id == cases.c.id))
                         .order_by(page.c.score.desc(), *order))
                else:
                    if conds:
                        q = q.where(and_(*conds))
                    q = q.order_by(*order).limit(limit).offset(offset)
                rows = (await conn.execute(q)).all()
                if search is None:
                    return [self._summary(r, now) for r in rows]
                matches = await search_snippets(conn, search, ((r.id, r.source, r.source_id) for r in rows),
                                                exact=stats if isinstance(stats, ExactTerms) else None)
            return [self._summary(r, now) | {"match": matches[r.id].as_dict() if r.id in matches else None}
                    for r in rows]
        async with self._db.engine.connect() as conn:
            # Nearest due first, read along the due_at index; then the cases with no running
            # target, newest first. Two queries rather than ORDER BY due_at NULLS LAST,
            # which SQLite cannot serve from the index.
            with_due = q.where(and_(*conds, cases.c.due_at.is_not(None)))
            rows = list(await conn.execute(with_due.order_by(cases.c.due_at, cases.c.id).limit(limit).offset(offset)))
            if len(rows) < limit and not (f.overdue or f.due_before is not None):
                rest_offset = 0
                if not rows and offset:  # the page starts past the due cases: how many were they?
                    n_due = (await conn.execute(select(func.count()).select_from(
                        with_due.with_only_columns(cases.c.id).subquery()))).scalar_one()
                    rest_offset = max(0, offset - n_due)
                rest = q.where(and_(*conds, cases.c.due_at.is_(None)))
                rows += list(await conn.execute(rest.order_by(cases.c.updated_at.desc(), cases.c.id.desc())
                                                .limit(limit - len(rows)).offset(rest_offset)))
            return [self._summary(r, now) for r in rows]

    async def _search_stats(self, conn: AsyncConnection) -> TermStats:
        """The term statistics the full-text search plans by, read again once they are
        ``TERM_STATS_MAX_AGE_S`` old."""
        cached = self._term_stats
        if cached is None or time.monotonic() - cached[0] > TERM_STATS_MAX_AGE_S:
            cached = self._term_stats = (time.monotonic(), await read_term_stats(conn))
        return cached[1]

    async def activity_counts(self) -> dict[str, int]:
        """Cases per activity, every activity named (core/case_counts.py keeps them)."""
        async with self._db.engine.connect() as conn:
            return await activity_counts(conn)

    async def get_case(self, number: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(*_SUMMARY_COLS, *_DETAIL_COLS).select_from(_SUMMARY_FROM)
                                      .where(cases.c.id == number))).first()
            if row is None:
                raise NotFound(explain("case_not_found", "case %(number)s not found", number=number))
            case = self._summary(row, self._clock.now())
            case.update({
                "description": row.description,
                "contact": {"id": row.contact_id, "name": row.contact_name, "email": row.contact_email,
                            "phone": row.contact_phone},
                "kb": {"problem": row.kb_problem, "answer": row.kb_answer, "hotfix": row.kb_hotfix,
                       "application": row.kb_application, "action": row.kb_action, "url": row.kb_url},
                # The mode the Budget tab follows: the case's own when an agent set one, else the process's.
                "budget_mode": self._budget.mode_of(row.budget_mode).value,
                "budget_mode_source": "process" if self._budget.follows_process(row.budget_mode) else "case",
                "budget_currency": self._budget.currency_for(row.language),
                "self_served": bool(row.self_served),
            })
            msg_rows = (await conn.execute(select(messages).where(messages.c.case_id == number)
                                           .order_by(messages.c.id))).all()
            att_rows = (await conn.execute(select(attachments).join(messages, messages.c.id == attachments.c.message_id)
                                           .where(messages.c.case_id == number))).all()
            by_message: dict[int, list[dict[str, Any]]] = {}
            for a in att_rows:
                by_message.setdefault(a.message_id, []).append(
                    {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                     "sha256": a.sha256, "inline": a.inline})
            deliveries = await delivery_states(conn, number)
            case["messages"] = [
                {"id": m.id, "channel": m.channel, "direction": m.direction, "author": m.author,
                 "author_name": m.author_name, "text": m.text, "created_at": _iso(m.created_at),
                 "edited_at": _iso(m.edited_at), "extra": m.extra, "attachments": by_message.get(m.id, []),
                 "delivery": deliveries.get(m.id)}
                for m in msg_rows
            ]
            case["history"] = [case_history.read(e) for e in await conn.execute(
                select(case_events).where(case_events.c.case_id == number).order_by(case_events.c.id))]
            case["suggestions"] = [
                {"article_id": s.article_id, "title": s.title, "url": s.url, "score": s.score, "feedback": s.feedback}
                for s in await conn.execute(select(case_suggestions).where(case_suggestions.c.case_id == number)
                                            .order_by(case_suggestions.c.rank))
            ]
            case["survey"] = await _survey_link(conn, row.survey_instance_id)
            # The link both ways: "follow-up of #n" is in the summary; these follow it up.
            case["follow_ups"] = list((await conn.execute(
                select(cases.c.id).where(cases.c.follow_up_of == number).order_by(cases.c.id))).scalars())
            lines = (await conn.execute(select(budget_lines).where(budget_lines.c.case_id == number)
                                        .order_by(budget_lines.c.position))).all()
            case["budget_lines"] = [
                {"product": b.product, "quantity": _num(b.quantity), "unit_amount": _num(b.unit_amount)}
                for b in lines
            ]
            amount = budget_total((b.quantity, b.unit_amount) for b in lines)
            case["budget_total"] = float(amount)
            case["budget_total_text"] = money(amount, case["budget_currency"], row.language)
            return case

    def _summary(self, row: Any, now: datetime) -> dict[str, Any]:
        summary = _summary(row, now)
        summary["sla_status"] = urgency(self._sla.setup, row, now) if self._sla is not None else None
        return summary

    # --- creating --------------------------------------------------------------------------

    async def create_case(self, new: NewCase, *, actor: str) -> dict[str, Any]:
        title = _text(new.title, "title", max_len=300)
        description = _text(new.description, "description")
        case_type = _case_type(new.case_type)
        # Straight from a JSON body: anything may be a number, a list or carry a NUL.
        contact_name = _text(new.contact_name, "contact.name", required=False, max_len=200)
        contact_phone = _text(new.contact_phone, "contact.phone", required=False, max_len=50)
        contact_email = _text(new.contact_email, "contact.email", required=False, max_len=320)
        if new.contact_id is None and not (contact_email or contact_name or contact_phone):
            raise ValidationError(explain("case_contact_missing", "a contact (an existing contact_id, or a name, "
                                          "email or phone) is required"), field="contact")
        keys: list[tuple[str, str]] = []
        if contact_email:
            keys.append((EMAIL, email_address(contact_email, "contact.email")))
        if contact_phone:
            keys.append((PHONE, phone_number(contact_phone, "contact.phone", region=self._phone_region)))
        now = self._clock.now()
        # The case's date is when the customer got in touch; the history records when it was typed in.
        dated = _case_date(new.case_date, now)
        async with self._db.transaction() as conn:
            await self._check_categories(conn, new.category_id, new.subcategory_id)
            org_id = await self._organization_for(conn, new, now=now)
            if new.contact_id is not None:
                contact = (await conn.execute(select(contacts).where(contacts.c.id == new.contact_id))).first()
                if contact is None or contact.merged_into_id is not None or contact.erased_at is not None:
                    raise ValidationError(explain("case_contact_gone", "contact %(id)s does not exist (or was merged or "
                                                  "erased)", id=new.contact_id), field="contact_id")
                contact_id = contact.id
                contact_name = contact_name or contact.name
                org_id = org_id if org_id is not None else contact.organization_id
            else:
                # The person the agent names may already be known by that address or phone.
                owners = await identity_owners(conn, keys)
                contact_id = next((owners[k] for k in keys if k in owners), None)  # type: ignore[assignment]
                if contact_id is None:
                    contact_id = await create_contact(
                        conn, now=now, name=contact_name, language=new.language,
                        phone=next((a for k, a in keys if k == PHONE), None), organization_id=org_id,
                        # Typed by an agent, not proved by a channel: verified once the customer writes.
                        identities=[(k, False) for k in keys])
                elif org_id is None:
                    org_id = (await conn.execute(select(contacts.c.organization_id).where(
                        contacts.c.id == contact_id))).scalar()
            number = (await conn.execute(insert(cases).values(
                created_at=dated, updated_at=now, organization_id=org_id, contact_id=contact_id,
                category_id=new.category_id, subcategory_id=new.subcategory_id, case_type=case_type, title=title,
                description=description, channel=ChannelName.API.value, language=new.language,
                activity=Activity.PRELIMINARY_ANALYSIS.value, budget_mode=FOLLOW_PROCESS,
                kb_problem=description, reply_token=secrets.token_urlsafe(18), self_served=False,
            ).returning(cases.c.id))).scalar_one()
            if self._sla is not None and self._sla.setup.enabled:
                policy = await self._sla.policy_for(conn, number)
                await self._sla.write(conn, number, opened(policy, dated))
            await conn.execute(insert(case_events).values(
                case_id=number, at=now, actor=actor, kind="opened", to_value=ChannelName.API.value,
                **(case_history.says(case_history.DATED, at=dated.isoformat()) if dated != now else {})))
            await conn.execute(insert(messages).values(
                case_id=number, contact_id=contact_id, channel=ChannelName.API.value, direction=Direction.IN.value,
                author=Author.CUSTOMER.value, author_name=contact_name, text=description, created_at=dated,
                external_id=f"api-{number}"))
        return await self.get_case(number)

    async def _organization_for(self, conn: AsyncConnection, new: NewCase, *, now: datetime) -> int | None:
        """The manual case's organization: an existing one by id, else one by name
        (created when nobody has that name yet), else none."""
        if new.organization_id is not None:
            row = (await conn.execute(select(organizations.c.id, organizations.c.merged_into_id).where(
                organizations.c.id == new.organization_id))).first()
            if row is None or row.merged_into_id is not None:
                raise ValidationError(explain("case_organization_gone", "organization %(id)s does not exist (or was "
                                              "merged)", id=new.organization_id), field="organization_id")
            return row.id
        if not new.organization:
            return None
        org_name = _text(new.organization, "organization", max_len=200).strip()  # type: ignore[union-attr]
        org_id = (await conn.execute(select(organizations.c.id).where(
            organizations.c.name == org_name, organizations.c.merged_into_id.is_(None))
            .order_by(organizations.c.id).limit(1))).scalar()
        if org_id is None:
            org_id = (await conn.execute(insert(organizations).values(name=org_name, created_at=now)
                                         .returning(organizations.c.id))).scalar_one()
        return org_id

    # --- agents' actions ---------------------------------------------------------------

    async def reply(self, number: int, body: str | None, *, agent: str, mirror_to_desk: bool = True,
                    seen_message_id: int | None = None, files: Sequence[AttachmentRef] = ()) -> dict[str, Any]:
        """Send ``body`` to the customer on the channel they last wrote from.

        With the agents' desk on, the reply is also copied into the case's topic so the
        whole team sees it, unless it was written there (``mirror_to_desk=False``).
        ``seen_message_id``: the newest message the agent had read; a customer message or
        agent reply after it refuses the reply (``StaleReply``) so the agent reads it first.
        ``files``: files already taken into the store by the upload rule
        (``MessageFiles.take``), at most ``MAX_REPLY_FILES``; they are recorded on the
        reply and go out with it. With files the text may be empty: it is then the files'
        names ("📎 name"), as a customer's upload reads."""
        files = tuple(files)
        if len(files) > MAX_REPLY_FILES:
            raise ValidationError(explain("reply_too_many_files", "a reply carries at most %(max)s files",
                                          max=MAX_REPLY_FILES), field="files")
        if files and (body is None or (isinstance(body, str) and not body.strip())):
            body = "\n".join(f"📎 {f.filename}" for f in files)
        body = _text(body, "text")  # type: ignore[assignment]
        now = self._clock.now()
        async with self._db.transaction() as conn:
            case = await self._case(conn, number, lock=seen_message_id is not None)
            if seen_message_id is not None:
                await _check_not_stale(conn, number, seen_message_id)
            recipient = await _customer_recipient(conn, case)
            if recipient is None:
                raise ValidationError(explain("customer_unreachable", "this customer has no reachable channel (no email, "
                                              "chat or Telegram)"), field="channel")
            in_reply_to, references = (None, ())
            if recipient.channel == ChannelName.EMAIL:
                in_reply_to, references = await email_thread_for_case(conn, number)
            items = [ComposedMessage(
                recipient=recipient, text=body, kind="reply", case_id=number, case_title=case.title,
                author=Author.AGENT, author_name=agent, language=case.language, automatic=False,
                in_reply_to=in_reply_to, references=references, reply_token=case.reply_token, files=files,
            )]
            if self._desk_enabled and mirror_to_desk:
                items.append(ComposedMessage(
                    recipient=Recipient(ChannelName.DESK, str(number)), text=f"↩ {agent} ({recipient.channel.value}): {body}",
                    kind="desk", case_id=number, case_title=case.title, author=Author.AGENT, author_name=agent,
                    language=case.language, automatic=False, files=files))
            outbox_id = (await self._outgoing.add(conn, items, now=now))[0]
            values: dict[str, Any] = {"updated_at": now}
            if self._sla is not None:
                clock = await self._sla.clock(conn, number, lock=True)
                values.update(agent_replied(clock, self._sla.setup.policy(clock.policy), now))
            await conn.execute(update(cases).where(cases.c.id == number).values(**values))
            await conn.execute(insert(case_events).values(case_id=number, at=now, actor=f"agent:{agent}",
                                                          kind="reply", to_value=recipient.channel.value))
        self._on_commit()
        return {"case": number, "channel": recipient.channel.value, "outbox_id": outbox_id}

    async def add_note(self, number: int, body: str, *, agent: str) -> int:
        body = _text(body, "text")  # type: ignore[assignment]
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await self._case(conn, number)
            mid = (await conn.execute(insert(messages).values(
                case_id=number, channel=ChannelName.API.value, direction=Direction.OUT.value, author=Author.NOTE.value,
                author_name=agent, text=body, created_at=now, external_id=f"note-{secrets.token_hex(10)}",
            ).returning(messages.c.id))).scalar_one()
            await conn.execute(insert(case_events).values(case_id=number, at=now, actor=f"agent:{agent}", kind="note"))
        return mid

    async def change_activity(self, number: int, activity: str, *, agent: str, sector: str | None = None) -> dict[str, Any]:
        target = _enum(Activity, activity, "activity")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            case = await self._case(conn, number)
            check_transition(case.activity, target, case_type=case.case_type, sector=sector)
            values: dict[str, Any] = {"activity": target.value, "updated_at": now}
            if target == Activity.DERIVED:
                values["sector"] = _text(sector, "sector", max_len=120)
            if target == Activity.CLOSED:
                values["closed_at"] = now
            if self._sla is not None:
                clock = await self._sla.clock(conn, number)
                values.update(activity_changed(clock, self._sla.setup.policy(clock.policy), target.value, now))
            await conn.execute(update(cases).where(cases.c.id == number).values(**values))
            await conn.execute(insert(case_events).values(case_id=number, at=now, actor=f"agent:{agent}",
                                                          kind="activity", from_value=case.activity,
                                                          to_value=target.value,
                                                          **(case_history.says(case_history.SECTOR, sector=sector)
                                                             if sector else {})))
            queued: list[ComposedMessage] = []
            if target == Activity.CLOSED:
                for hook in self._closed_hooks:
                    queued.extend(await hook(conn, number, now))
            await self._outgoing.add(conn, queued, now=now)
            # A closed hook that already wrote to the customer (a detractor case's re-survey)
            # is their word on the close: no second message beside it.
            told = not queued and await self._tell_customer(conn, case, target, now=now)
        if queued or told:
            self._on_commit()
        return await self.get_case(number)

    async def _tell_customer(self, conn: AsyncConnection, case: Any, target: Activity, *, now: datetime) -> bool:
        """Queue the notice of ``target`` (core.notices) on the customer's channel, if
        that event is on and the customer can be reached. True when one was queued."""
        body = self._notices.text_for(target, language=case.language, number=case.id, title=case.title)
        if body is None:
            return False
        recipient = await _customer_recipient(conn, case)
        if recipient is None:
            return False
        in_reply_to, references = (None, ())
        if recipient.channel == ChannelName.EMAIL:
            in_reply_to, references = await email_thread_for_case(conn, case.id)
        await self._outgoing.add(conn, [ComposedMessage(
            recipient=recipient, text=body, kind="notice", case_id=case.id, case_title=case.title,
            language=case.language, automatic=True, in_reply_to=in_reply_to, references=references,
            reply_token=case.reply_token)], now=now)
        await conn.execute(insert(case_events).values(case_id=case.id, at=now, actor="system", kind="customer_told",
                                                      to_value=recipient.channel.value,
                                                      **case_history.says(case_history.CUSTOMER_TOLD,
                                                                          activity=target.value)))
        return True

    async def set_type(self, number: int, case_type: str, *, agent: str) -> dict[str, Any]:
        value = _case_type(case_type)
        return await self._set(number, agent, "type", {"case_type": value}, "case_type", value)

    async def assign(self, number: int, assignee: str | None, *, agent: str) -> dict[str, Any]:
        value = _text(assignee, "assigned_agent", required=False, max_len=120)
        previous = (await self.get_case(number))["assigned_agent"]
        result = await self._set(number, agent, "assign", {"assigned_agent": value}, "assigned_agent", value)
        if value and value != previous and value != agent:
            # Told once committed; a notice that cannot be queued never undoes the assignment.
            for hook in self._assigned_hooks:
                try:
                    await hook(number, value, previous)
                except Exception:
                    log.exception("case %s: could not tell %s of the assignment", number, value)
        return result

    async def set_sector(self, number: int, sector: str | None, *, agent: str) -> dict[str, Any]:
        value = _text(sector, "sector", required=False, max_len=120)
        return await self._set(number, agent, "sector", {"sector": value}, "sector", value)

    async def set_category(self, number: int, category_id: int | None, subcategory_id: int | None, *,
                           agent: str) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            await self._check_categories(conn, category_id, subcategory_id)
        return await self._set(number, agent, "category",
                               {"category_id": category_id, "subcategory_id": subcategory_id},
                               "category_id", f"{category_id}/{subcategory_id}")

    async def update_kb_fields(self, number: int, *, agent: str, problem: str | None = None,
                               answer: str | None = None, hotfix: str | None = None,
                               application: str | None = None) -> dict[str, Any]:
        values = {k: _text(v, k, required=False) for k, v in
                  (("kb_problem", problem), ("kb_answer", answer), ("kb_hotfix", hotfix),
                   ("kb_application", application)) if v is not None}
        if not values:
            return await self.get_case(number)
        return await self._set(number, agent, "kb_fields", values, None, ",".join(sorted(values)))

    async def kb_action(self, number: int, action: str, *, agent: str, url: str | None = None) -> dict[str, Any]:
        """The three KB actions. PUBLISH queues a Discourse topic through the outbox (kb
        channel); LINK records an existing post; NONE records the decision."""
        act = _enum(KbAction, action, "action")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            case = await self._case(conn, number)
            values: dict[str, Any] = {"kb_action": act.value, "updated_at": now}
            if act == KbAction.LINK:
                link = _text(url, "url", max_len=1000)
                if not link.startswith(("http://", "https://")):  # type: ignore[union-attr]
                    raise ValidationError(explain("kb_url_invalid", "url must be an http(s) link to the KB post"),
                                          field="url")
                values["kb_url"] = link
            if act == KbAction.PUBLISH:
                if not (case.kb_answer or "").strip():
                    raise ValidationError(explain("kb_answer_missing", "write the answer in the KB tab before publishing"),
                                          field="kb.answer")
                await self._outgoing.add(conn, [ComposedMessage(
                    recipient=Recipient(ChannelName.KB, f"case-{number}"), text=case.kb_answer, kind="kb_publish",
                    case_id=number, case_title=case.title, author=Author.AGENT, author_name=agent, automatic=False,
                    language=case.language,
                )], now=now)
            await conn.execute(update(cases).where(cases.c.id == number).values(**values))
            await conn.execute(insert(case_events).values(case_id=number, at=now, actor=f"agent:{agent}",
                                                          kind="kb_action", from_value=case.kb_action,
                                                          to_value=act.value, detail=values.get("kb_url")))
        self._on_commit()
        return await self.get_case(number)

    async def record_publication(self, number: int, url: str) -> None:
        """Called by the KB channel once Discourse accepted the topic."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await conn.execute(update(cases).where(cases.c.id == number).values(kb_url=url[:1000], updated_at=now))
            await conn.execute(insert(case_events).values(case_id=number, at=now, actor="system", kind="kb_published",
                                                          to_value=url[:300]))

    async def set_budget(self, number: int, mode: str | None, lines: Sequence[dict[str, Any]], *,
                         agent: str) -> dict[str, Any]:
        """Replace the case's budget lines. ``mode`` None follows the process's mode
        ([cases] budget_mode); a mode given is this case's own, explicitly."""
        own_mode = None if mode is None else _enum(BudgetMode, mode, "budget_mode")
        budget_mode = own_mode or self._budget.mode
        rows = []
        for i, line in enumerate(lines):
            product = _text(line.get("product"), f"lines[{i}].product", max_len=200).strip()  # type: ignore[union-attr]
            qty = amount = None
            if budget_mode == BudgetMode.PRODUCTS_WITH_AMOUNTS:
                qty = _decimal(line.get("quantity"), f"lines[{i}].quantity", positive=True)
                amount = _decimal(line.get("unit_amount"), f"lines[{i}].unit_amount", positive=True)
            rows.append({"case_id": number, "position": i, "product": product, "quantity": qty, "unit_amount": amount})
        if budget_mode == BudgetMode.NOT_USED and rows:
            raise ValidationError(explain("budget_mode_unused", "budget lines need a budget mode other than not_used"),
                                  field="budget_mode")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await self._case(conn, number)
            # Lines name products of the catalog by code (posventa import catalog).
            known = {r.code for r in await conn.execute(select(products.c.code).where(
                products.c.code.in_({r["product"] for r in rows})))} if rows else set()
            for i, row in enumerate(rows):
                if row["product"] not in known:
                    raise ValidationError(explain("budget_product_unknown", "%(field)s: %(product)r is not a product code of "
                                                  "the catalog", field=f"lines[{i}].product",
                                                  product=row["product"][:80]), field=f"lines[{i}].product")
            await conn.execute(delete(budget_lines).where(budget_lines.c.case_id == number))
            if rows:
                await conn.execute(insert(budget_lines), rows)
            await conn.execute(update(cases).where(cases.c.id == number).values(
                budget_mode=FOLLOW_PROCESS if own_mode is None else own_mode.value, updated_at=now))
            await conn.execute(insert(case_events).values(
                case_id=number, at=now, actor=f"agent:{agent}", kind="budget", to_value=budget_mode.value,
                **(case_history.says(case_history.PROCESS_BUDGET_MODE) if own_mode is None else {})))
        return await self.get_case(number)

    # --- categories (admin-managed master, two levels) --------------------------------------------

    async def list_categories(self) -> list[dict[str, Any]]:
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(select(categories).order_by(categories.c.parent_id.is_not(None),
                                                                   categories.c.name))).all()
        tree: dict[int, dict[str, Any]] = {}
        for r in rows:
            if r.parent_id is None:
                tree[r.id] = {"id": r.id, "name": r.name, "active": r.active, "subcategories": []}
        for r in rows:
            if r.parent_id is not None and r.parent_id in tree:
                tree[r.parent_id]["subcategories"].append({"id": r.id, "name": r.name, "active": r.active})
        return list(tree.values())

    async def create_category(self, name: str, *, parent_id: int | None = None) -> dict[str, Any]:
        name = _text(name, "name", max_len=120).strip()  # type: ignore[union-attr]
        async with self._db.transaction() as conn:
            if parent_id is not None:
                parent = (await conn.execute(select(categories.c.parent_id).where(categories.c.id == parent_id))).first()
                if parent is None:
                    raise NotFound(explain("category_not_found", "category %(id)s not found", id=parent_id))
                if parent.parent_id is not None:
                    raise ValidationError(explain("category_too_deep", "categories have two levels: a subcategory cannot "
                                                  "have children"), field="parent_id")
            same = categories.c.parent_id.is_(None) if parent_id is None else categories.c.parent_id == parent_id
            if (await conn.execute(select(categories.c.id).where(same, categories.c.name == name))).first():
                raise ValidationError(explain("category_name_taken", "category %(name)r already exists there", name=name),
                                      field="name")
            cid = (await conn.execute(insert(categories).values(name=name, parent_id=parent_id, active=True)
                                      .returning(categories.c.id))).scalar_one()
        return {"id": cid, "name": name, "parent_id": parent_id, "active": True}

    async def update_category(self, category_id: int, *, name: str | None = None, active: bool | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _text(name, "name", max_len=120).strip()  # type: ignore[union-attr]
        if active is not None:
            if not isinstance(active, bool):
                raise ValidationError(explain("active_not_boolean", "active must be true or false"), field="active")
            values["active"] = active
        async with self._db.transaction() as conn:
            row = (await conn.execute(select(categories).where(categories.c.id == category_id))).first()
            if row is None:
                raise NotFound(explain("category_not_found", "category %(id)s not found", id=category_id))
            if "name" in values:
                # The same check as create_category: the unique key would otherwise end the
                # transaction with an IntegrityError (a 500) on a subcategory's sibling.
                same = (categories.c.parent_id.is_(None) if row.parent_id is None
                        else categories.c.parent_id == row.parent_id)
                if (await conn.execute(select(categories.c.id).where(
                        same, categories.c.name == values["name"], categories.c.id != category_id))).first():
                    raise ValidationError(explain("category_name_taken", "category %(name)r already exists there",
                                                  name=values["name"]), field="name")
            if values:
                await conn.execute(update(categories).where(categories.c.id == category_id).values(**values))
        return {"id": category_id, "name": values.get("name", row.name), "parent_id": row.parent_id,
                "active": values.get("active", row.active)}

    # --- helpers -------------------------------------------------------------------------

    async def _case(self, conn: AsyncConnection, number: int, *, lock: bool = False):
        # lock: two agents replying at once are checked one after the other (PostgreSQL;
        # SQLite writes one transaction at a time anyway).
        query = select(cases).where(cases.c.id == number)
        row = (await conn.execute(query.with_for_update() if lock and not self._db.is_sqlite else query)).first()
        if row is None:
            raise NotFound(explain("case_not_found", "case %(number)s not found", number=number))
        return row

    async def _set(self, number: int, agent: str, kind: str, values: dict[str, Any], column: str | None,
                   to_value: Any) -> dict[str, Any]:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            case = await self._case(conn, number)
            before = getattr(case, column) if column else None
            await conn.execute(update(cases).where(cases.c.id == number).values(**values, updated_at=now))
            await conn.execute(insert(case_events).values(
                case_id=number, at=now, actor=f"agent:{agent}", kind=kind,
                from_value=None if before is None else str(before)[:300],
                to_value=None if to_value is None else str(to_value)[:300]))
            if self._sla is not None and kind in ("type", "category"):
                await self._sla.rematch(conn, number)
        return await self.get_case(number)

    async def _check_categories(self, conn: AsyncConnection, category_id: int | None, subcategory_id: int | None) -> None:
        if category_id is None and subcategory_id is None:
            return
        if category_id is None:
            raise ValidationError(explain("subcategory_alone", "a subcategory needs its category"), field="category_id")
        rows = {r.id: r for r in await conn.execute(select(categories).where(
            categories.c.id.in_([c for c in (category_id, subcategory_id) if c is not None])))}
        cat = rows.get(category_id)
        if cat is None or cat.parent_id is not None:
            raise ValidationError(explain("category_not_top", "category %(id)s is not a top-level category",
                                      id=category_id), field="category_id")
        if subcategory_id is not None:
            sub = rows.get(subcategory_id)
            if sub is None or sub.parent_id != category_id:
                raise ValidationError(explain("subcategory_elsewhere", "subcategory %(id)s does not belong to category "
                                              "%(category)s", id=subcategory_id, category=category_id),
                                      field="subcategory_id")


async def _customer_recipient(conn: AsyncConnection, case: Any) -> Recipient | None:
    """The channel the customer last wrote from on this case, else any reachable identity."""
    row = (await conn.execute(
        select(contact_identities.c.id, contact_identities.c.channel, contact_identities.c.address)
        .join(messages, messages.c.identity_id == contact_identities.c.id)
        .where(messages.c.case_id == case.id, messages.c.direction == Direction.IN.value,
               contact_identities.c.unreachable.is_(False))
        .order_by(messages.c.id.desc()).limit(1)
    )).first()
    if row is None:
        row = (await conn.execute(
            select(contact_identities.c.id, contact_identities.c.channel, contact_identities.c.address)
            .where(contact_identities.c.contact_id == case.contact_id, contact_identities.c.unreachable.is_(False),
                   contact_identities.c.channel.in_([c.value for c in CUSTOMER_CHANNELS]))
            .order_by(contact_identities.c.id.desc()).limit(1)
        )).first()
    if row is None:
        return None
    return Recipient(ChannelName(row.channel), row.address, row.id, case.contact_id)


async def _survey_link(conn: AsyncConnection, instance_id: int | None) -> dict[str, Any] | None:
    """A detractor case's survey: the instance, its rule and the sale it asked about."""
    if instance_id is None:
        return None
    r = (await conn.execute(
        select(rule_instances.c.id, rule_instances.c.status, rule_instances.c.rule_id, rule_instances.c.sale_id,
               survey_rules.c.name.label("rule_name"), sales.c.external_id, sales.c.seller)
        .join(sales, sales.c.id == rule_instances.c.sale_id)
        .join(survey_rules, survey_rules.c.id == rule_instances.c.rule_id)
        .where(rule_instances.c.id == instance_id))).first()
    if r is None:
        return None
    return {"instance_id": r.id, "status": r.status, "rule": {"id": r.rule_id, "name": r.rule_name},
            "sale": {"id": r.sale_id, "external_id": r.external_id, "seller": r.seller}}


def _decimal(value: Any, field: str, *, positive: bool = False) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError(explain("number_invalid", "%(field)s must be a number", field=field), field=field)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(explain("number_invalid", "%(field)s must be a number", field=field), field=field) from None
    if not d.is_finite() or abs(d) >= Decimal("1e11"):
        raise ValidationError(explain("number_out_of_range", "%(field)s is out of range", field=field), field=field)
    if positive and d < 0:
        raise ValidationError(explain("number_negative", "%(field)s must not be negative", field=field), field=field)
    return d


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_cat = categories.alias("cat")
_sub = categories.alias("sub")
_SUMMARY_FROM = (
    cases.join(contacts, contacts.c.id == cases.c.contact_id)
    .outerjoin(organizations, organizations.c.id == cases.c.organization_id)
    .outerjoin(_cat, _cat.c.id == cases.c.category_id)
    .outerjoin(_sub, _sub.c.id == cases.c.subcategory_id)
)
_SUMMARY_COLS = (
    cases.c.id, cases.c.created_at, cases.c.updated_at, cases.c.title, cases.c.case_type, cases.c.activity,
    cases.c.channel, cases.c.sector, cases.c.assigned_agent, cases.c.language, cases.c.category_id,
    cases.c.subcategory_id, cases.c.contact_id, cases.c.closed_at, cases.c.origin, cases.c.survey_instance_id,
    cases.c.sla_policy, cases.c.first_response_due_at, cases.c.first_response_at, cases.c.next_response_due_at,
    cases.c.resolution_due_at, cases.c.sla_paused_at, cases.c.sla_breached_target, cases.c.sla_breached_at,
    cases.c.sla_breaches,
    cases.c.due_at, cases.c.due_target,
    cases.c.organization_id, cases.c.follow_up_of,
    contacts.c.name.label("contact_name"), contacts.c.email.label("contact_email"),
    contacts.c.phone.label("contact_phone"), organizations.c.name.label("organization_name"),
    _cat.c.name.label("category_name"), _sub.c.name.label("subcategory_name"),
)
_DETAIL_COLS = (
    cases.c.description, cases.c.kb_problem, cases.c.kb_answer, cases.c.kb_hotfix, cases.c.kb_application,
    cases.c.kb_action, cases.c.kb_url, cases.c.budget_mode, cases.c.self_served,
)


def _summary(r: Any, now: datetime) -> dict[str, Any]:
    return {
        "number": r.id,
        "created_at": _iso(r.created_at),
        "updated_at": _iso(r.updated_at),
        "title": r.title,
        "type": r.case_type,
        "activity": r.activity,
        "channel": r.channel,
        "sector": r.sector,
        "assigned_agent": r.assigned_agent,
        "language": r.language,
        "category": {"id": r.category_id, "name": r.category_name} if r.category_id else None,
        "subcategory": {"id": r.subcategory_id, "name": r.subcategory_name} if r.subcategory_id else None,
        "contact_name": r.contact_name,
        # Who wrote, for a list: the name, else the address (many mails and chats carry no name).
        "customer": r.contact_name or r.contact_email or r.contact_phone,
        "contact_id": r.contact_id,
        "organization": r.organization_name,
        "organization_id": r.organization_id,
        "follow_up_of": r.follow_up_of,
        "closed_at": _iso(r.closed_at),
        "origin": r.origin,
        "survey_instance_id": r.survey_instance_id,
        "sla_policy": r.sla_policy,
        "first_response_due_at": _iso(r.first_response_due_at),
        "first_response_at": _iso(r.first_response_at),
        "next_response_due_at": _iso(r.next_response_due_at),
        "resolution_due_at": _iso(r.resolution_due_at),
        "sla_paused": r.sla_paused_at is not None,
        "due_at": _iso(r.due_at),
        "due_target": r.due_target,
        "sla_breached": breach_of(r, now),
        "sla_breaches": breaches_of(r, now),
    }


async def _check_not_stale(conn: AsyncConnection, number: int, seen_message_id: int) -> None:
    newer = tuple((await conn.execute(
        select(messages.c.id).where(messages.c.case_id == number, messages.c.id > seen_message_id,
                                    messages.c.author.in_(STALE_AUTHORS))
        .order_by(messages.c.id).limit(50))).scalars())
    if newer:
        latest = (await conn.execute(select(func.max(messages.c.id)).where(messages.c.case_id == number))).scalar_one()
        raise StaleReply(newer, latest)
