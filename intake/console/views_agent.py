"""The agents' pages: the inbox, a case, its actions, attachments and the live stream.

Every action is a plain form POST answered with Post/Redirect/Get; a refused action
renders the case again with the message next to the field that caused it. Everything
an agent does goes through ``CaseService``, the same door the API and the Telegram
desk use, so the rules (workflow, validation, outbox) live in one place.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from posventa.core.budget import money
from posventa.core.cases import CaseFilter, NewCase
from posventa.core.domain import Activity, BudgetMode, CaseType, ChannelName, KbAction
from posventa.core.errors import DomainError, NotFound, StaleReply, ValidationError
from posventa.core.attachments import safe_filename
from posventa.core.uploads import PREVIEW_TYPES, UPLOAD_KINDS, UploadRefused, refusal_text
from posventa.core.workflow import ALLOWED, CLASSIFIED_TYPES, check_transition
from posventa.intake.console.app import SESSION_KEY, PREFIX, Console, see_other
from posventa.intake.console.forms import Form, domain_errors, message_of
from posventa.intake.console.i18n import N_, _l, refusal
from posventa.intake.console.labels import label
from posventa.intake.console.views_contacts import NOTICES as CONTACT_NOTICES
from posventa.intake.console.views_contacts import MAX_ORGANIZATIONS_SHOWN, duplicate_offers
from posventa.intake.console.presence import page_report, stream_report
from posventa.intake.http import file_headers

log = logging.getLogger(__name__)

PAGE_SIZE = 50
#: Browser notifications in the reader's language (``core.notifications``' events; a
#: notice without its fields, or of an event not listed here, keeps the notifier's text).
NOTICE_TEXTS = {
    "assigned": N_("Case #%(number)s was assigned to you: %(title)s"),
    "customer_wrote": N_("The customer wrote on your case #%(number)s: %(title)s"),
    "sla_warning": N_("⏰ Case #%(number)s (%(title)s): %(target)s is due at %(due)s."),
    "sla_breached": N_("🔴 Case #%(number)s (%(title)s): %(target)s breached (%(due)s)."),
}
#: Canned responses rendered into a case page: the most used ones (the picker's search
#: finds among these).
MAX_MACROS_SHOWN = 100
MAX_BUDGET_LINES = 100
#: Contacts the new-case form lists for a search (a longer list means: type more).
MAX_CONTACT_MATCHES = 20
TABS = ("conversation", "kb", "budget", "history")
#: Images a browser may show inline; anything else is a download, so an uploaded HTML
#: or SVG file can never run script in the console's origin.
INLINE_TYPES = PREVIEW_TYPES
FILTER_CHANNELS = (ChannelName.EMAIL, ChannelName.TELEGRAM, ChannelName.WEBCHAT, ChannelName.API)

NOTICES = {
    "reply": N_("Reply queued; it goes out on the customer's channel."),
    "note": N_("Internal note added."),
    "type": N_("Type changed."),
    "category": N_("Category changed."),
    "sector": N_("Sector changed."),
    "assign": N_("Assignment changed."),
    "activity": N_("Activity changed."),
    "kb": N_("Knowledge-base fields saved."),
    "kb_action": N_("Knowledge-base decision recorded."),
    "kb_publish": N_("Publication queued to the knowledge base."),
    "budget": N_("Budget saved."),
    "created": N_("Case created."),
    # A duplicate merged into the case's customer from the case page (views_contacts).
    "merged": CONTACT_NOTICES["merged"],
}


@dataclass(frozen=True, slots=True)
class InboxQuery:
    """The inbox filters as read from the URL, each value checked against its domain."""

    activity: str = ""
    case_type: str = ""
    category: int | None = None
    channel: str = ""
    mine: bool = False
    text: str = ""
    #: "due": nearest SLA due time first (the default); "updated": newest activity first.
    sort: str = "due"
    page: int = 1

    @classmethod
    def parse(cls, query: Any) -> InboxQuery:
        def pick(name: str, allowed: set[str]) -> str:
            value = query.get(name, "")
            return value if value in allowed else ""

        try:
            category = int(query.get("category", "")) if query.get("category") else None
        except ValueError:
            category = None
        try:
            page = max(1, min(int(query.get("page", "1")), 10_000))
        except ValueError:
            page = 1
        return cls(activity=pick("activity", {a.value for a in Activity}),
                   case_type=pick("type", {t.value for t in CaseType}),
                   category=category,
                   channel=pick("channel", {c.value for c in FILTER_CHANNELS}),
                   mine=query.get("mine") in ("1", "on"),
                   text=query.get("q", "").strip()[:200],
                   sort="updated" if query.get("sort") == "updated" else "due",
                   page=page)

    def params(self, **override: Any) -> str:
        values = {"activity": self.activity, "type": self.case_type,
                  "category": "" if self.category is None else self.category, "channel": self.channel,
                  "mine": "1" if self.mine else "", "q": self.text,
                  "sort": "" if self.sort == "due" else self.sort, "page": self.page if self.page > 1 else ""}
        values.update(override)
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def register(router: web.UrlDispatcher, console: Console) -> None:
    cases = console.cases

    def user(request: web.Request):
        return request[SESSION_KEY].user

    # --- inbox ---------------------------------------------------------------------------

    async def inbox(request: web.Request) -> web.StreamResponse:
        f = InboxQuery.parse(request.query)
        rows = await cases.list_cases(CaseFilter(
            activity=f.activity or None, open_only=not f.activity, case_type=f.case_type or None,
            category_id=f.category, channel=f.channel or None,
            assigned_agent=user(request).username if f.mine else None, text=f.text or None, sort=f.sort,
            limit=PAGE_SIZE + 1, offset=(f.page - 1) * PAGE_SIZE))
        context = {
            "f": f, "rows": rows[:PAGE_SIZE], "has_next": len(rows) > PAGE_SIZE,
            "erased_contacts": await console.read_models.erased_contacts(r["contact_id"] for r in rows),
            "counts": await cases.activity_counts(), "categories": await cases.list_categories(),
            "activities": list(Activity), "types": list(CaseType), "channels": FILTER_CHANNELS,
        }
        template = "_inbox_results.html" if request.query.get("partial") == "1" else "inbox.html"
        return console.render(template, request, context)

    async def events(request: web.Request) -> web.StreamResponse:
        # A case page's stream (?case=&tab=) is that tab's presence on the case.
        me = user(request)
        viewer = stream_report(request.query.get("case"), request.query.get("tab"), username=me.username,
                               name=me.label)
        return await console.live.stream(request, viewer=viewer, notice_text=notice_text)

    def notice_text(event: dict[str, Any]) -> str:
        """A browser notification for this stream's reader (the request's language and
        time zone hold for the stream's whole life)."""
        template = NOTICE_TEXTS.get(event["notify"])
        if template is None or not event.get("title"):
            return str(event["text"])
        locales = console.locales
        return locales.gettext(template) % {
            "number": event["case"], "title": event["title"],
            "target": locales.gettext(label(event["due_target"])) if event.get("due_target") else "",
            "due": locales.datetime(event.get("due_at") or None)}

    # --- a case --------------------------------------------------------------------------

    def number_of(request: web.Request) -> int:
        try:
            return int(request.match_info["number"])
        except ValueError:
            raise NotFound(_l("no such case")) from None

    async def render_case(request: web.Request, number: int, *, tab: str = "conversation",
                          errors: dict[str, str] | None = None, values: dict[str, Any] | None = None,
                          status: int = 200, stale: StaleReply | None = None) -> web.Response:
        case = await cases.get_case(number)
        notice = NOTICES.get(request.query.get("done", ""))
        notice = console.locales.gettext(notice) if notice else None
        via = request.query.get("via", "")
        if notice and via in {c.value for c in ChannelName}:
            notice = f"{notice} ({via})"
        lines = [{**ln, "subtotal": None if ln["quantity"] is None or ln["unit_amount"] is None else
                  money(Decimal(str(ln["quantity"])) * Decimal(str(ln["unit_amount"])), case["budget_currency"],
                        case["language"])} for ln in case["budget_lines"] or []]
        context = {
            "case": case, "tab": tab if tab in TABS else "conversation", "errors": errors or {},
            "erased_contacts": await console.read_models.erased_contacts([case["contact_id"]]),
            "values": values or {}, "notice": notice,
            "categories": await cases.list_categories(),
            "agents": [u for u in await console.users.list() if u.active],
            "sectors": await console.read_models.known_sectors(),
            "next_activities": sorted(ALLOWED[Activity(case["activity"])], key=list(Activity).index),
            "types": CLASSIFIED_TYPES, "budget_modes": list(BudgetMode),
            "process_budget_mode": cases.budget_policy.mode.value,
            "product_codes": await console.read_models.product_codes() if tab == "budget" else [],
            "budget_rows": lines + [{"product": "", "quantity": None, "unit_amount": None, "subtotal": None}] * 3,
            "kb_actions": list(KbAction),
            "macro_options": await macro_options(request, number),
            "duplicates": await duplicate_offers(console, case["contact"]["id"]),
            # The reply form says what its agent had read; a newer message asks for a confirmation.
            "last_message_id": max((m["id"] for m in case["messages"]), default=0),
            "stale": stale, "viewers": viewers_of(request, number),
            "reply_files": reply_files(),
        }
        return console.render("case.html", request, context, status=status)

    def reply_files() -> dict[str, Any] | None:
        """The reply box's attach control: what the upload rule takes (None: no files)."""
        if not console.files.policy.enabled:
            return None
        policy = console.files.policy
        accept = {"image": "image/*", "pdf": "application/pdf", "text": "text/plain,.txt"}
        return {"max_bytes": policy.max_bytes,
                "accept": ",".join(accept[k] for k in UPLOAD_KINDS if k in policy.kinds)}

    async def macro_options(request: web.Request, number: int) -> list[dict[str, Any]]:
        """The canned responses this agent may use, rendered for this case (most used first)."""
        options = []
        username = user(request).username
        for macro in (await console.macros.list(visible_to=username))[:MAX_MACROS_SHOWN]:
            try:
                text, language = await console.macros.render(macro, number, agent=username)
            except DomainError as exc:
                text, language = "", console.locales.translate(message_of(exc))  # shown as unusable, with the reason
            options.append({"id": macro["id"], "name": macro["name"], "text": text, "language": language})
        return options

    async def case_page(request: web.Request) -> web.StreamResponse:
        return await render_case(request, number_of(request), tab=request.query.get("tab", "conversation"))

    async def thread(request: web.Request) -> web.StreamResponse:
        case = await cases.get_case(number_of(request))
        return console.render("_thread.html", request, {
            "case": case, "erased_contacts": await console.read_models.erased_contacts([case["contact_id"]])})

    def viewers_of(request: web.Request, number: int) -> list[Any]:
        return console.live.viewers.on_case(number, excluding=user(request).username)

    async def presence(request: web.Request) -> web.StreamResponse:
        """Who else is on this case (the page refetches it on a ``presence`` event)."""
        return console.render("_presence.html", request, {"viewers": viewers_of(request, number_of(request))})

    async def report_presence(request: web.Request) -> web.StreamResponse:
        """The page's own word: typing, stopped typing, or closed (a beacon)."""
        number = number_of(request)
        form = await Form.read(request)
        me = user(request)
        report = page_report(number, form.data.get("tab"), form.data.get("state"), username=me.username,
                             name=me.label)
        if report is None:
            raise refusal(web.HTTPUnprocessableEntity,
                          _l("tab: 8 to 40 letters, digits, - or _; state: typing, idle or left"))
        console.live.viewers.report(report)
        return web.Response(status=204)

    def done(number: int, code: str, *, tab: str = "conversation", **extra: str) -> web.Response:
        query = urlencode({"tab": tab, "done": code, **extra})
        anchor = "#thread-end" if tab == "conversation" else f"#tab-{tab}"
        return see_other(f"{PREFIX}/cases/{number}?{query}{anchor}")

    async def take_file(chunks, filename: str | None):
        """An agent's file for a reply, taken by the upload rule; a refusal says why in the
        agent's language."""
        try:
            return await console.files.take(chunks, filename=filename, field="files")
        except UploadRefused as refused:
            log.info("console: a reply's file refused: %s", refused)
            reason = refusal_text(refused, console.files.policy, console.locales.current.language)
            raise ValidationError(_l("%(name)s: %(reason)s", name=safe_filename(filename, default="file"),
                                     reason=reason), field="files") from None

    def action(tab: str, default_field: str, handler, rename: dict[str, str] | None = None, *,
               files: bool = False):
        """Wrap a form action: run it, redirect on success, re-render with errors.

        ``rename`` maps core's field names to this form's (core calls a note "text");
        ``files``: the form's file parts are taken as the reply's files."""
        async def run(request: web.Request) -> web.StreamResponse:
            number = number_of(request)
            form = await Form.read(request, take=take_file if files else None)
            try:
                if form.errors:
                    raise _FormInvalid
                return await handler(request, number, form)
            except _FormInvalid:
                errors = form.errors
            except StaleReply as exc:
                # Nothing sent: the page shows what arrived and keeps the text; sending
                # again from it (its ``seen`` is now the newest message) is the confirmation.
                values = {k: v for k, v in form.data.items() if isinstance(v, str) and k not in ("_csrf", "seen")}
                return await render_case(request, number, tab=tab, values=values, status=409, stale=exc)
            except NotFound:
                raise
            except DomainError as exc:
                errors = domain_errors(exc, default_field)
            errors = {(rename or {}).get(k, k): v for k, v in errors.items()}
            values = {k: v for k, v in form.data.items() if isinstance(v, str) and k != "_csrf"}
            return await render_case(request, number, tab=tab, errors=errors, values=values, status=422)
        return run

    async def do_reply(request: web.Request, number: int, form: Form) -> web.Response:
        macro = form.integer("macro", minimum=1, maximum=2**62)
        seen = form.integer("seen", minimum=0, maximum=2**62)
        if form.errors:
            raise _FormInvalid
        agent = user(request).username
        mark_answered = False
        if form.checked("mark_answered"):
            case = await cases.get_case(number)
            mark_answered = Activity.ANSWER_SENT in ALLOWED[Activity(case["activity"])]
            if mark_answered:
                # Refused before anything is sent: the agent sets the type and sends once.
                check_transition(case["activity"], Activity.ANSWER_SENT, case_type=case["type"])
        if macro is not None:
            # The text is the macro as rendered on the page, or the agent's edit of it.
            result = await console.macros.use(macro, number, agent=agent, owner=agent, text=form.text("text"),
                                              seen_message_id=seen, files=form.files)
        else:
            result = await cases.reply(number, form.text("text"), agent=agent, seen_message_id=seen,
                                       files=form.files)
        if mark_answered and (await cases.get_case(number))["activity"] != Activity.ANSWER_SENT.value:
            await cases.change_activity(number, Activity.ANSWER_SENT.value, agent=agent)
        return done(number, "reply", via=result["channel"])

    async def do_note(request: web.Request, number: int, form: Form) -> web.Response:
        await cases.add_note(number, form.text("note"), agent=user(request).username)
        return done(number, "note")

    async def do_type(request: web.Request, number: int, form: Form) -> web.Response:
        await cases.set_type(number, form.text("type", max_len=40), agent=user(request).username)
        return done(number, "type")

    async def do_category(request: web.Request, number: int, form: Form) -> web.Response:
        category = form.integer("category_id", minimum=1, maximum=2**62)
        subcategory = form.integer("subcategory_id", minimum=1, maximum=2**62)
        if form.errors:
            raise _FormInvalid
        await cases.set_category(number, category, subcategory, agent=user(request).username)
        return done(number, "category")

    async def do_sector(request: web.Request, number: int, form: Form) -> web.Response:
        await cases.set_sector(number, form.optional("sector", max_len=200), agent=user(request).username)
        return done(number, "sector")

    async def do_assign(request: web.Request, number: int, form: Form) -> web.Response:
        me = user(request).username
        assignee = me if form.text("to", max_len=10) == "me" else form.optional("assigned_agent", max_len=200)
        await cases.assign(number, assignee, agent=me)
        return done(number, "assign")

    async def do_activity(request: web.Request, number: int, form: Form) -> web.Response:
        await cases.change_activity(number, form.text("activity", max_len=40), agent=user(request).username,
                                    sector=form.optional("sector", max_len=200))
        return done(number, "activity", tab="history")

    async def do_kb(request: web.Request, number: int, form: Form) -> web.Response:
        problem = form.text("problem")
        if form.text("copy_description", max_len=10):
            # The seeds' "Copiar descripción" without JavaScript: the problem starts as
            # the customer's own description.
            problem = (await cases.get_case(number))["description"]
        await cases.update_kb_fields(number, agent=user(request).username, problem=problem,
                                     answer=form.text("answer"), hotfix=form.text("hotfix"),
                                     application=form.text("application"))
        return done(number, "kb", tab="kb")

    async def do_kb_action(request: web.Request, number: int, form: Form) -> web.Response:
        kb_action = form.text("action", max_len=20)
        await cases.kb_action(number, kb_action, agent=user(request).username,
                              url=form.optional("url", max_len=2000))
        return done(number, "kb_publish" if kb_action == KbAction.PUBLISH.value else "kb_action", tab="kb")

    async def do_budget(request: web.Request, number: int, form: Form) -> web.Response:
        # Empty: the case follows the process's mode; a mode chosen is the case's own.
        mode = form.text("budget_mode", max_len=40) or None
        lines, rows = [], []
        for i in range(MAX_BUDGET_LINES):
            product = form.text(f"product_{i}", max_len=300).strip()
            if not product:
                continue  # blank rows are the form's spare rows, not lines
            rows.append(i)
            lines.append({"product": product, "quantity": form.text(f"quantity_{i}", max_len=30).strip() or None,
                          "unit_amount": form.text(f"unit_amount_{i}", max_len=30).strip() or None})
        try:
            await cases.set_budget(number, mode, lines, agent=user(request).username)
        except ValidationError as exc:
            # Core counts only the lines it got; point the message at the form's row.
            match = re.fullmatch(r"lines\[(\d+)\]\.(\w+)", exc.field or "")
            if match and int(match.group(1)) < len(rows):
                raise ValidationError(message_of(exc), field=f"lines[{rows[int(match.group(1))]}].{match.group(2)}") from None
            raise
        return done(number, "budget", tab="budget")

    # --- a new case (a customer phoned) --------------------------------------------------------

    def local_now() -> str:
        """Now in the agent's time zone, as the date field writes it (ISO, explicit: a
        browser's date input would show its own locale's order, whatever the console's)."""
        return console.clock.now().astimezone(console.locales.current.timezone).strftime("%Y-%m-%d %H:%M")

    def case_date(form: Form) -> datetime | None:
        """The date field ("2026-12-04 10:30", or with a "T"): a time in the agent's time zone."""
        raw = form.optional("case_date", max_len=40)
        if raw is None:
            return None
        try:
            return datetime.fromisoformat(raw.strip()).replace(tzinfo=console.locales.current.timezone)
        except ValueError:
            form.errors["date"] = _l("Enter the date and time the customer got in touch.")
            return None

    async def new_case_context(values: dict[str, Any], *, matches: list[dict[str, Any]] | None = None
                               ) -> dict[str, Any]:
        """The form's choices: the organizations, the contact already chosen (from a
        contact's page, or picked among the matches of a search), those matches."""
        chosen = None
        raw = values.get("contact_id", "")
        if console.contacts is not None and isinstance(raw, str) and raw.isdigit() and len(raw) < 19 \
                and matches is None:
            try:
                chosen = await console.contacts.get(int(raw))
            except NotFound:
                chosen = None
            if chosen is not None and (chosen["merged_into_id"] or chosen["erased_at"]):
                chosen = None
        return {"types": CLASSIFIED_TYPES, "categories": await cases.list_categories(), "now": local_now(),
                "organizations": await console.organizations.search(limit=MAX_ORGANIZATIONS_SHOWN)
                if console.organizations else [], "chosen": chosen, "matches": matches}

    async def new_case_form(request: web.Request) -> web.StreamResponse:
        # From a contact's page: the case is for that contact.
        contact_id = request.query.get("contact_id", "")
        values = {"contact_id": contact_id} if contact_id.isdigit() and len(contact_id) < 19 else {}
        return console.render("case_new.html", request, {"errors": {}, "values": values,
                                                         **await new_case_context(values)})

    async def find_contact(request: web.Request, form: Form, values: dict[str, Any]) -> web.StreamResponse:
        """The form's "Find" button: the contacts matching what was typed, to pick one;
        nothing is created and what was typed stays."""
        q = form.optional("contact_q", max_len=200)
        errors: dict[str, str] = {}
        matches: list[dict[str, Any]] = []
        if q is None:
            errors["contact_q"] = console.locales.gettext("Type a name, an email address or a phone to find.")
        elif console.contacts is not None:
            try:
                matches = await console.contacts.search(q, limit=MAX_CONTACT_MATCHES)
            except DomainError as exc:
                errors = domain_errors(exc, "contact_q")
                errors = {"contact_q" if k == "q" else k: v for k, v in errors.items()}
        return console.render("case_new.html", request, {"errors": errors, "values": values,
                                                         **await new_case_context(values, matches=matches)},
                              status=422 if errors else 200)

    async def new_case(request: web.Request) -> web.StreamResponse:
        form = await Form.read(request)
        values = {k: v for k, v in form.data.items() if isinstance(v, str) and k != "_csrf"}
        if form.checked("find"):
            return await find_contact(request, form, values)
        new = NewCase(title=form.text("title", max_len=300), description=form.text("description"),
                      case_type=form.text("type", max_len=40) or None,
                      contact_name=form.optional("contact_name", max_len=200),
                      contact_email=form.optional("contact_email", max_len=320),
                      contact_phone=form.optional("contact_phone", max_len=50),
                      organization=form.optional("organization", max_len=200),
                      contact_id=form.integer("contact_id", minimum=1, maximum=2**62),
                      organization_id=form.integer("organization_id", minimum=1, maximum=2**62),
                      category_id=form.integer("category_id", minimum=1, maximum=2**62),
                      language=form.text("language", max_len=5) if form.text("language", max_len=5) in
                      ("es", "pt", "en") else "es",
                      case_date=case_date(form))
        errors = dict(form.errors)
        if not errors:
            try:
                case = await cases.create_case(new, actor=f"agent:{user(request).username}")
                return see_other(f"{PREFIX}/cases/{case['number']}?done=created")
            except DomainError as exc:
                errors = domain_errors(exc, "title")
        return console.render("case_new.html", request, {"errors": errors, "values": values,
                                                         **await new_case_context(values)}, status=422)

    # --- attachments -----------------------------------------------------------------------

    async def attachment(request: web.Request) -> web.StreamResponse:
        try:
            att = await console.files.get(int(request.match_info["id"]))
        except ValueError:
            att = None
        if att is None:
            raise NotFound(_l("no such attachment"))
        try:
            path = console.attachments.path_for(att.sha256)
        except ValueError:
            raise NotFound(_l("no such attachment")) from None
        if not path.is_file():
            raise NotFound(_l("the attachment file is missing from the store"))
        inline = att.content_type in INLINE_TYPES and request.query.get("download") != "1"
        return web.FileResponse(path, headers={**file_headers(att.filename, att.content_type, inline=inline),
                                               "Cache-Control": "private, max-age=3600"})

    router.add_get("/inbox", inbox)
    router.add_get("/events", events)
    router.add_get("/cases/new", new_case_form)
    router.add_post("/cases/new", new_case)
    router.add_get("/cases/{number:\\d+}", case_page)
    router.add_get("/cases/{number:\\d+}/thread", thread)
    router.add_get("/cases/{number:\\d+}/presence", presence)
    router.add_post("/cases/{number:\\d+}/presence", report_presence)
    for path, tab, field, handler, rename in (
        ("reply", "conversation", "text", do_reply, None),
        ("note", "conversation", "note", do_note, {"text": "note"}),
        ("type", "conversation", "type", do_type, None),
        ("category", "conversation", "category_id", do_category, None),
        ("sector", "conversation", "sector", do_sector, None),
        ("assign", "conversation", "assigned_agent", do_assign, None),
        ("activity", "history", "activity", do_activity, None),
        ("kb", "kb", "answer", do_kb, {"kb_problem": "problem", "kb_answer": "answer", "kb_hotfix": "hotfix",
                                         "kb_application": "application"}),
        ("kb/action", "kb", "action", do_kb_action, {"kb.answer": "answer"}),
        ("budget", "budget", "budget_mode", do_budget, None),
    ):
        router.add_post(f"/cases/{{number:\\d+}}/{path}", action(tab, field, handler, rename,
                                                                  files=handler is do_reply))
    router.add_get("/attachments/{id:\\d+}", attachment)


class _FormInvalid(Exception):
    """The form itself was malformed (errors already in ``Form.errors``)."""
