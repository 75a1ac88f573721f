"""/api/v1/cases and /api/v1/categories: what an agent's tools (or the ERP) call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from posventa.core.case_history import SENTENCES as CASE_SENTENCES
from posventa.core.cases import MAX_REPLY_FILES, MAX_TEXT, CaseFilter, CaseService, NewCase
from posventa.core.domain import Activity, BudgetMode, CaseType, ChannelName, KbAction
from posventa.core.errors import NotFound, ValidationError
from posventa.core.macros import MAX_NAME as MAX_MACRO_NAME
from posventa.core.macros import MacroService
from posventa.core.message_files import MessageFiles
from posventa.core.uploads import UPLOAD_KINDS
from posventa.core.search import MAX_QUERY_CHARS
from posventa.intake.api.openapi import DB_INT_MAX, ID, ApiRegistry, FileParts, body, enum, files, integer, query, \
    query_param, text
from posventa.intake.http import file_headers, path_id
from posventa.core.workflow import CLASSIFIED_TYPES

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_REF = {"type": ["object", "null"], "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}

CASE_SUMMARY = {
    "type": "object",
    "required": ["number", "title", "type", "activity", "channel", "created_at", "updated_at"],
    "properties": {
        "number": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "closed_at": _NULLABLE_STR,
        "title": {"type": "string"},
        "type": {"type": "string", "enum": [t.value for t in CaseType]},
        "activity": {"type": "string", "enum": [a.value for a in Activity]},
        "channel": {"type": "string"},
        "sector": _NULLABLE_STR,
        "assigned_agent": _NULLABLE_STR,
        "language": {"type": "string"},
        "category": _REF,
        "subcategory": _REF,
        "contact_name": _NULLABLE_STR,
        "customer": {"type": ["string", "null"],
                     "description": "the contact's name, else their email address or phone"},
        "organization": _NULLABLE_STR,
        "origin": {"type": ["string", "null"], "enum": ["survey", None],
                   "description": "survey: opened by a detractor survey answer; null: by a message or an agent"},
        "survey_instance_id": {"type": ["integer", "null"], "description": "the detractor survey it follows up"},
        # Only in a search (q=...): where the case matched.
        "match": {"type": ["object", "null"], "required": ["source", "snippet", "highlights"], "properties": {
            "source": {"type": "string", "enum": ["number", "case", "message", "note", "contact", "address"]},
            "snippet": {"type": "string"},
            "highlights": {"type": "array", "description": "[start, end) offsets of the matched words in snippet",
                           "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}},
        }},
        # The SLA clock (business time of the policy's calendar).
        "sla_policy": _NULLABLE_STR,
        "first_response_due_at": _NULLABLE_TIME,
        "first_response_at": _NULLABLE_TIME,
        "next_response_due_at": _NULLABLE_TIME,
        "resolution_due_at": _NULLABLE_TIME,
        "sla_paused": {"type": "boolean", "description": "true while the case waits for the customer"},
        "due_at": {**_NULLABLE_TIME, "description": "the nearest running target's due time"},
        "due_target": {"type": ["string", "null"], "enum": ["first_response", "next_response", "resolution", None]},
        "sla_status": {"type": ["string", "null"], "enum": ["ok", "warning", "breached", None],
                       "description": "warning: under 25% of the running target's business time is left"},
        "sla_breached": {"type": ["object", "null"], "required": ["target", "at"],
                         "description": "the first target missed, and when it was due",
                         "properties": {"target": {"type": "string",
                                                   "enum": ["first_response", "next_response", "resolution"]},
                                        "at": {"type": "string", "format": "date-time"}}},
        "sla_breaches": {"type": "array", "description": "every target missed (each next response counts), "
                                                         "and when it was due, by due time",
                         "items": {"type": "object", "required": ["target", "at"], "properties": {
                             "target": {"type": "string", "enum": ["first_response", "next_response", "resolution"]},
                             "at": {"type": "string", "format": "date-time"}}}},
        "contact_id": {"type": "integer"},
        "organization_id": {"type": ["integer", "null"]},
        "follow_up_of": {"type": ["integer", "null"], "description": "the closed case this one follows up"},
    },
}
MESSAGE = {
    "type": "object",
    "required": ["id", "channel", "direction", "author", "text", "created_at", "attachments"],
    "properties": {
        "id": {"type": "integer"},
        "channel": {"type": "string"},
        "direction": {"type": "string", "enum": ["in", "out"]},
        "author": {"type": "string", "enum": ["customer", "agent", "bot", "note"]},
        "author_name": _NULLABLE_STR,
        "text": {"type": "string"},
        "created_at": {"type": "string"},
        "edited_at": _NULLABLE_STR,
        "extra": {"type": ["object", "null"]},
        "attachments": {"type": "array", "items": {"$ref": "#/components/schemas/Attachment"}},
        "delivery": {"$ref": "#/components/schemas/Delivery"},
    },
}
#: A file of a message (an email attachment, a Telegram photo, a web chat upload). The type
#: was read from the content where posventa took the file (web chat: core/uploads.py).
ATTACHMENT = {
    "type": "object",
    "required": ["id", "filename", "content_type", "size", "sha256", "inline"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer"},
        "filename": {"type": "string"},
        "content_type": {"type": "string", "description": "e.g. image/jpeg, application/pdf, text/plain; charset=utf-8"},
        "size": {"type": "integer", "minimum": 0, "description": "bytes"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "maxLength": 64,
                   "description": "the content's hash: the same file sent twice has the same one"},
        "inline": {"type": "boolean", "description": "an image shown inside an email's body rather than attached"},
    },
}
#: An outgoing message's delivery; null for what is not delivered (customer messages, notes).
DELIVERY = {
    "type": ["object", "null"],
    "required": ["state", "attempts", "max_attempts", "next_attempt_at", "sent_at", "error"],
    "properties": {
        "state": {"type": "string", "enum": ["queued", "sending", "retrying", "sent", "failed"],
                  "description": "queued: waiting for its first attempt; sending: a worker has it now; "
                                 "retrying: an attempt failed, the next is at next_attempt_at; sent; "
                                 "failed: given up (error says why)"},
        "attempts": {"type": "integer", "minimum": 0},
        "max_attempts": {"type": "integer", "minimum": 1},
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time",
                            "description": "when queued or retrying: the next attempt"},
        "sent_at": {"type": ["string", "null"], "format": "date-time"},
        "error": {"type": ["string", "null"], "description": "the last failure, e.g. the relay and config section"},
    },
}
CASE_DETAIL = {
    "allOf": [
        {"$ref": "#/components/schemas/CaseSummary"},
        {
            "type": "object",
            "required": ["description", "contact", "kb", "messages", "history", "suggestions", "budget_mode"],
            "properties": {
                "description": {"type": "string"},
                "contact": {"type": "object"},
                "kb": {"type": "object", "properties": {k: _NULLABLE_STR for k in
                                                        ("problem", "answer", "hotfix", "application", "action", "url")}},
                "budget_mode": {"type": "string", "enum": [b.value for b in BudgetMode],
                                "description": "the mode the budget follows: the case's own or the process's"},
                "budget_mode_source": {"type": "string", "enum": ["case", "process"]},
                "budget_currency": {"type": "string", "description": "ISO 4217"},
                "budget_total": {"type": "number"},
                "budget_total_text": {"type": "string", "description": "the total written with its currency"},
                "budget_lines": {"type": "array"},
                "self_served": {"type": "boolean"},
                "survey": {"type": ["object", "null"], "required": ["instance_id", "status", "rule", "sale"],
                           "properties": {
                               "instance_id": {"type": "integer"}, "status": {"type": "string"},
                               "rule": {"type": "object", "properties": {"id": {"type": "integer"},
                                                                         "name": {"type": "string"}}},
                               "sale": {"type": "object", "properties": {
                                   "id": {"type": "integer"}, "external_id": {"type": "string"},
                                   "seller": {"type": "string"}}}},
                           "description": "the detractor survey (and its sale) this case follows up"},
                "follow_ups": {"type": "array", "items": {"type": "integer"},
                               "description": "cases opened as follow-ups of this one"},
                "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                "history": {"type": "array", "items": {"$ref": "#/components/schemas/CaseHistoryEntry"}},
                "suggestions": {"type": "array", "items": {"type": "object",
                                                           "required": ["title", "url", "score"]}},
            },
        },
    ]
}
HISTORY_ENTRY = {
    "type": "object",
    "required": ["at", "actor", "kind", "from", "to", "code", "values", "detail"],
    "description": "One entry of a case's history: when, who (`customer`, `system`, `agent:<name>`, ...), its "
                   "`kind` and the values it moved `from` and `to` (codes such as an activity, a channel or a type; "
                   "or an agent's name, a category id). What the entry says beyond that is `code` and the `values` "
                   "that fill the code's sentence (a client shows it in its own words, keyed on the code); "
                   "`detail` is that sentence in English, whatever the request's language (the API speaks "
                   "English, as its error messages do). An entry that says no more has `code` null, `values` {} "
                   "and `detail` null; a KB action's entry has its URL in `detail` (code null), and an entry "
                   "written before codes whose sentence could not be read back has `code` null and its stored "
                   "English text in `detail`.",
    "properties": {
        "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"}, "kind": {"type": "string"},
        "from": _NULLABLE_STR, "to": _NULLABLE_STR,
        "code": {"type": ["string", "null"], "enum": [*CASE_SENTENCES, None],
                 "description": "; ".join(f"{code}: {text.template}" for code, text in CASE_SENTENCES.items())},
        "values": {"type": "object", "description": "the code's placeholders by name: numbers, text, an ISO 8601 "
                                                    "moment (`at`), stored codes (`activity`, `channel`, "
                                                    "`strategy`) and `operators`, a list of agents' names"},
        "detail": _NULLABLE_STR,
    },
}
CATEGORY = {
    "type": "object",
    "required": ["id", "name", "active"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "active": {"type": "boolean"},
                   "parent_id": {"type": ["integer", "null"]},
                   "subcategories": {"type": "array", "items": {"type": "object"}}},
}


#: Who did it, for the case history; "api" when not given.
AGENT = text(120)
_NULLABLE_ID = {**ID, "type": ["integer", "null"]}
#: Optional text core treats as absent when blank (``_text(required=False)``).
_OPTIONAL = text(120, blank=True, nullable=True)
#: A budget amount: core reads it with Decimal and refuses |x| >= 1e11.
# A quantity or amount is never negative (core/cases.py refuses it too, naming the line's field).
_AMOUNT = {"anyOf": [{"type": "number", "minimum": 0, "exclusiveMaximum": 1e11},
                     {"type": "string", "maxLength": 21, "pattern": r"^[0-9]{1,10}(\.[0-9]{1,10})?$"},
                     {"type": "string", "maxLength": 0}, {"type": "null"}]}
_NEW_CASE_REFUSAL = {422: "neither contact nor contact_id given (`field` is contact); category_id or subcategory_id "
                           "do not fit; contact_id or organization_id name no live record; or the contact's email "
                           "or phone is not valid"}
_CATEGORY_REFUSAL = {422: "category_id is not a top-level category, or subcategory_id is not one of its subcategories"}


def _agent(data: dict[str, Any]) -> str:
    return data["agent"].strip() if "agent" in data else "api"


def time_param(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 instant with its offset (a naive time is ambiguous: refused)."""
    if not value:
        return None
    wrong = ValidationError(f"{name} must be an ISO 8601 date-time like 2026-12-07T10:30:00Z", field=name)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise wrong from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{name} needs a time zone offset (Z or +hh:mm)", field=name)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved past the calendar's end
        raise wrong from None


def register(api: ApiRegistry, *, cases: CaseService, macros: MacroService, message_files: MessageFiles) -> None:
    api.schemas.update({"CaseSummary": CASE_SUMMARY, "Message": MESSAGE, "Delivery": DELIVERY, "Attachment": ATTACHMENT,
                        "CaseDetail": CASE_DETAIL, "CaseHistoryEntry": HISTORY_ENTRY, "Category": CATEGORY})
    summary_list = {"type": "object", "required": ["cases", "counts"],
                    "properties": {"cases": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}},
                                   "counts": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    detail = {"$ref": "#/components/schemas/CaseDetail"}

    async def list_cases(request: web.Request) -> web.Response:
        q = query(request)
        f = CaseFilter(
            activity=q.get("activity"), open_only=q.get("open") in ("1", "true"), case_type=q.get("type"),
            category_id=q.get("category"), channel=q.get("channel"), assigned_agent=q.get("assigned"),
            text=q.get("q"), limit=q.get("limit", 50), offset=q.get("offset", 0),
            overdue=q.get("overdue") in ("1", "true"), due_before=time_param(q.get("due_before"), "due_before"),
            sort=q.get("sort", "updated"),
        )
        return web.json_response({"cases": await cases.list_cases(f), "counts": await cases.activity_counts()})

    api.add("GET", "/cases", list_cases, summary="List cases, newest activity first (best match first with q)", tag="cases",
            response=summary_list, params=[
                query_param("activity", enum(a.value for a in Activity)),
                query_param("open", enum(["1", "0", "true", "false"]), "only cases not closed"),
                query_param("type", enum(t.value for t in CaseType)),
                query_param("category", ID, "category or subcategory id"),
                query_param("channel", enum(c.value for c in ChannelName)),
                query_param("assigned", text(120), "assigned agent"),
                query_param("q", text(MAX_QUERY_CHARS),
                            "full-text search: case number, title, description, messages, notes, contact name "
                            "and addresses; accent- and case-insensitive, by word prefix; best matches first"),
                query_param("overdue", enum(["1", "0", "true", "false"]),
                            "only cases with a running SLA target past its due time"),
                query_param("due_before", {"type": "string", "format": "date-time", "maxLength": 64},
                            "only cases whose nearest running target is due before this instant (ISO 8601 with offset)"),
                query_param("sort", enum(["updated", "due"]),
                            "updated: newest activity first (default; best match first with q); due: nearest due "
                            "time first, then the cases with no running target"),
                query_param("limit", integer(1, 500)),
                query_param("offset", integer(0, DB_INT_MAX)),
            ])

    async def create_case(request: web.Request) -> web.Response:
        data = body(request)
        contact = data.get("contact") or {}
        new = NewCase(
            title=data["title"], description=data["description"],
            case_type=data["type"],
            contact_name=contact.get("name"), contact_email=contact.get("email"), contact_phone=contact.get("phone"),
            organization=data.get("organization"), category_id=data.get("category_id"),
            subcategory_id=data.get("subcategory_id"), language=data.get("language", "es"),
            case_date=time_param(data.get("date"), "date"),
            contact_id=data.get("contact_id"), organization_id=data.get("organization_id"),
        )
        return web.json_response(await cases.create_case(new, actor=f"agent:{_agent(data)}"), status=201)

    # Blank contact fields count as absent (core), so "some contact" is: one of them not blank.
    contact_fields = {"name": text(200, blank=True, nullable=True), "phone": text(50, blank=True, nullable=True),
                      "email": {"type": ["string", "null"], "maxLength": 320,
                                "pattern": r"^(\s*|[^\s<>\x00]*@[^\s<>\x00]*)$"}}
    api.add("POST", "/cases", create_case, summary="Open a case by hand (a customer phoned)", tag="cases",
            status=201, response=detail, errors=_NEW_CASE_REFUSAL, request={
                "type": "object", "required": ["title", "description", "type"],
                "properties": {
                    "title": text(300), "description": text(MAX_TEXT),
                    "type": {**enum(t.value for t in CLASSIFIED_TYPES), "description": "mandatory, as in the seeds"},
                    "contact": {"type": "object", "properties": contact_fields,
                                "description": "at least one of name, email, phone (a new contact, or the one "
                                               "who has that email or phone)",
                                "anyOf": [{"required": [k], "properties": {k: {"type": "string", "pattern": r"\S"}}}
                                          for k in contact_fields]},
                    "contact_id": {**ID, "description": "an existing contact, instead of contact"},
                    "organization_id": {**ID, "description": "an existing organization, instead of organization"},
                    "organization": {**text(200), "description": "a name: the organization with it, or a new one"},
                    "category_id": _NULLABLE_ID, "subcategory_id": _NULLABLE_ID,
                    "language": enum(["es", "pt", "en"]), "agent": AGENT,
                    "date": {"type": "string", "format": "date-time", "maxLength": 40,
                             "description": "when the customer got in touch (RFC 3339 with offset); not in the "
                                            "future; default now. Reports count the case from it (created_at)."},
                }})

    async def get_case(request: web.Request) -> web.Response:
        return web.json_response(await cases.get_case(path_id(request, "number")))

    api.add("GET", "/cases/{number}", get_case, summary="One case with its messages and history", tag="cases",
            response=detail)

    async def reply(request: web.Request) -> web.Response:
        data = body(request)
        number, agent = path_id(request, "number"), _agent(data)
        seen = data.get("seen_message_id")
        attached = files(request)
        if "macro" in data:
            result = await macros.use(data["macro"], number, agent=agent, owner=agent, text=data.get("text"),
                                      seen_message_id=seen, files=attached)
        else:
            result = await cases.reply(number, data.get("text"), agent=agent, seen_message_id=seen, files=attached)
        return web.json_response(result, status=202)

    async def take(chunks, filename: str | None, field: str):
        return await message_files.take(chunks, filename=filename, field=field)

    policy = message_files.policy
    kinds = {"image": "images", "pdf": "PDF", "text": "plain text (UTF-8)"}
    accepted = ", ".join(kinds[k] for k in UPLOAD_KINDS if k in policy.kinds) or "none"
    reply_fields = {"text": text(MAX_TEXT), "agent": AGENT, "macro": {"anyOf": [ID, text(MAX_MACRO_NAME)]},
                    "seen_message_id": {"type": "integer", "minimum": 0, "maximum": DB_INT_MAX,
                                        "description": "the newest message the agent read"}}
    api.add("POST", "/cases/{number}/reply", reply, tag="cases", status=202,
            summary="Reply to the customer on their channel (queued in the outbox), with files if any",
            errors={422: "the customer has no reachable channel (field `channel`); the macro's text for this "
                         "case fails to render (field `bodies.<language>`); a file is empty (error "
                         "`empty_file`, field `files`)",
                    409: "a macro's activity action is a move the workflow refuses (the reply is already queued); "
                         "or, with `seen_message_id`, a customer message or agent reply newer than it arrived "
                         "(error `stale_reply`, nothing sent: `newer` lists their ids, `latest_message_id` is "
                         "the value that confirms)",
                    413: f"a file is larger than [webchat] max_upload_bytes ({policy.max_bytes} bytes here; "
                         "error `too_large`, field `files`)",
                    415: "a file's content is not of a type [webchat] upload_types accepts, whatever its name "
                         "says (error `file_type`, field `files`)"},
            description="With `macro` (an id or a name: the agent's own first, then the team's), the canned "
                        "response rendered in the customer's language is the text, unless `text` is given too "
                        "(the agent's edit of it); either way the macro's use is counted and its actions run "
                        "after the reply. An unknown macro is a 404. With `seen_message_id` (the newest message "
                        "the agent read, 0 for none), a newer customer message or agent reply refuses the reply "
                        "with 409 `stale_reply` so the agent reads it first; sending again with the "
                        "`latest_message_id` it names confirms.\n\n"
                        "**Files**: send the same fields as a `multipart/form-data` form, with each file as a "
                        f"part named `files` (at most {MAX_REPLY_FILES}). Each is checked as it arrives by the "
                        "rule web chat uploads follow: at most [webchat] max_upload_bytes, and a type read from "
                        f"the content, never from the name (accepted here: {accepted}); a file that fails "
                        "refuses the whole reply (413, 415 or 422 naming `files` and the file) and nothing is "
                        "sent. With files, `text` may be left out: the reply then reads \"📎 <name>\" per "
                        "file. The files are recorded on the reply (the case's `messages[].attachments`, "
                        "downloadable at `/attachments/{id}`) and go out with it on the customer's channel: as "
                        "email attachments, as Telegram photos or documents, or as web chat download links "
                        "only the visitor's session can open.",
            request={"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["macro"]}],
                     "properties": reply_fields},
            files=FileParts(field="files", max_files=MAX_REPLY_FILES, take=take,
                            description=f"files to send with the reply: {accepted}, each at most "
                                        f"{policy.max_bytes} bytes",
                            schema={"type": "object",
                                    "anyOf": [{"required": ["text"]}, {"required": ["macro"]},
                                              {"required": ["files"]}],
                                    "properties": reply_fields}),
            response={"type": "object", "required": ["case", "channel", "outbox_id"],
                      "properties": {"case": {"type": "integer"}, "channel": {"type": "string"},
                                     "outbox_id": {"type": "integer"}, "macro": {"type": "integer"},
                                     "text": {"type": "string"}}})

    async def attachment(request: web.Request) -> web.StreamResponse:
        file = await message_files.get(path_id(request, "id"))
        if file is None:
            raise NotFound("no such attachment")
        path = message_files.path(file)
        if not path.is_file():
            raise NotFound("the file is no longer in the store (erased with its contact's data)")
        return web.FileResponse(path, headers={**file_headers(file.filename, file.content_type),
                                               "Cache-Control": "private, no-store"})

    binary = {"type": "string", "format": "binary"}
    api.add("GET", "/attachments/{id}", attachment, tag="cases", summary="Download a message's file",
            description="Any file of a case's messages (a customer's or an agent's; ids are in "
                        "`messages[].attachments`), as a download (`Content-Disposition: attachment` with its "
                        "name). Images, PDF and plain text are served with their type; anything else (what an "
                        "email may carry) as application/octet-stream. 404 when the id is unknown or the file "
                        "was erased with its contact's data.",
            content_type="application/octet-stream", response=binary,
            alternatives={"image/*": binary, "application/pdf": binary, "text/plain": binary})

    async def note(request: web.Request) -> web.Response:
        data = body(request)
        mid = await cases.add_note(path_id(request, "number"), data["text"], agent=_agent(data))
        return web.json_response({"message_id": mid}, status=201)

    api.add("POST", "/cases/{number}/notes", note, tag="cases", status=201,
            summary="Add an internal note (never sent to the customer)",
            request={"type": "object", "required": ["text"],
                     "properties": {"text": text(MAX_TEXT), "agent": AGENT}},
            response={"type": "object", "required": ["message_id"], "properties": {"message_id": {"type": "integer"}}})

    async def patch_case(request: web.Request) -> web.Response:
        number = path_id(request, "number")
        data = body(request)
        agent = _agent(data)
        result = None
        if "type" in data:
            result = await cases.set_type(number, data["type"], agent=agent)
        if "category_id" in data or "subcategory_id" in data:
            result = await cases.set_category(number, data.get("category_id"), data.get("subcategory_id"),
                                              agent=agent)
        if "sector" in data:
            result = await cases.set_sector(number, data["sector"], agent=agent)
        if "assigned_agent" in data:
            result = await cases.assign(number, data["assigned_agent"], agent=agent)
        if "kb" in data:
            kb = data["kb"]
            result = await cases.update_kb_fields(number, agent=agent, problem=kb.get("problem"),
                                                  answer=kb.get("answer"), hotfix=kb.get("hotfix"),
                                                  application=kb.get("application"))
        return web.json_response(result or await cases.get_case(number))

    kb_text = text(MAX_TEXT, blank=True, nullable=True)
    api.add("PATCH", "/cases/{number}", patch_case, tag="cases", response=detail, errors=_CATEGORY_REFUSAL,
            summary="Change type, category/subcategory, sector, assignment or the KB fields",
            request={"type": "object", "properties": {
                "type": enum(t.value for t in CLASSIFIED_TYPES),
                "category_id": _NULLABLE_ID, "subcategory_id": _NULLABLE_ID,
                "sector": _OPTIONAL, "assigned_agent": _OPTIONAL,
                "kb": {"type": "object", "properties": {k: kb_text for k in ("problem", "answer", "hotfix",
                                                                             "application")}},
                "agent": AGENT}, "additionalProperties": False})

    async def activity(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await cases.change_activity(path_id(request, "number"), data["activity"],
                                                             agent=_agent(data), sector=data.get("sector")))

    api.add("POST", "/cases/{number}/activity", activity, tag="cases", response=detail,
            summary="Move the case in the workflow (409 when the move is not allowed)",
            description="preliminary_analysis → derived (needs sector) → answer_sent → closed. "
                        "answer_sent and closed need the case's type: an unclassified case gets 409 "
                        "with error type_required and field type.",
            errors={409: "the workflow does not allow the move (or derived without a sector), or the case has "
                         "no type yet (error type_required, field type)"},
            request={"type": "object", "required": ["activity"], "properties": {
                "activity": enum(a.value for a in Activity), "sector": text(120), "agent": AGENT}})

    async def kb_action(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await cases.kb_action(path_id(request, "number"), data["action"],
                                                       agent=_agent(data), url=data.get("url")))

    api.add("POST", "/cases/{number}/kb-action", kb_action, tag="cases", response=detail,
            summary="Publish the solution to the KB, link an existing post, or do not publish",
            errors={422: "publish before the KB answer is written (field `kb.answer`)"},
            request={"type": "object", "required": ["action"], "properties": {
                "action": enum(k.value for k in KbAction),
                "url": {**text(1000), "pattern": "^https?://", "description": "the KB post; required with action link"},
                "agent": AGENT},
                "if": {"properties": {"action": {"const": KbAction.LINK.value}}},
                "then": {"required": ["url"]}})

    async def budget(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await cases.set_budget(path_id(request, "number"), data.get("mode"),
                                                        data.get("lines") or [], agent=_agent(data)))

    api.add("PUT", "/cases/{number}/budget", budget, tag="cases", response=detail,
            summary="Set the budget lines, and this case's own budget mode if it differs from the process's",
            description="The process's mode ([cases] budget_mode) applies unless `mode` is given: a mode is "
                        "this case's own, explicitly; `null` or no `mode` follows the process again. Each line "
                        "names a product code of the catalog; quantities and amounts are not negative.",
            errors={422: "a line's product is not a product code of the catalog, or lines were given while the "
                         "mode is not_used"},
            request={"type": "object", "properties": {
                "mode": {"type": ["string", "null"], "enum": [*(b.value for b in BudgetMode), None]},
                "lines": {"type": ["array", "null"], "maxItems": 1000, "items": {
                    "type": "object", "required": ["product"], "properties": {
                        "product": {**text(200), "description": "a product code of the catalog"},
                        "quantity": _AMOUNT, "unit_amount": _AMOUNT}}},
                "agent": AGENT},
                "if": {"required": ["mode"], "properties": {"mode": {"const": BudgetMode.NOT_USED.value}}},
                "then": {"properties": {"lines": {"type": ["array", "null"], "maxItems": 0}},
                         "description": "not_used has no lines"}})

    async def list_categories(_request: web.Request) -> web.Response:
        return web.json_response({"categories": await cases.list_categories()})

    api.add("GET", "/categories", list_categories, tag="categories", summary="The two-level category master",
            response={"type": "object", "required": ["categories"],
                      "properties": {"categories": {"type": "array", "items": {"$ref": "#/components/schemas/Category"}}}})

    async def create_category(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await cases.create_category(data["name"], parent_id=data.get("parent_id")),
                                 status=201)

    api.add("POST", "/categories", create_category, tag="categories", status=201,
            summary="Add a category, or a subcategory with parent_id",
            errors={404: "parent_id does not exist",
                    422: "parent_id is itself a subcategory, or the name already exists there"},
            request={"type": "object", "required": ["name"],
                     "properties": {"name": text(120), "parent_id": _NULLABLE_ID}},
            response={"$ref": "#/components/schemas/Category"})

    async def update_category(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await cases.update_category(path_id(request, "id"), name=data.get("name"),
                                                             active=data.get("active")))

    api.add("PATCH", "/categories/{id}", update_category, tag="categories", summary="Rename or (de)activate",
            errors={422: "the new name already exists there"},
            request={"type": "object", "properties": {"name": text(120), "active": {"type": "boolean"}}},
            response={"$ref": "#/components/schemas/Category"})
