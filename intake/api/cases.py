"""/api/v1/cases and /api/v1/categories: what an agent's tools (or the ERP) call."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.cases import CaseFilter, CaseService, NewCase
from core.domain import Activity, BudgetMode, CaseType, ChannelName, KbAction
from core.errors import ValidationError
from core.search import MAX_QUERY_CHARS
from intake.api.openapi import ApiRegistry, query_param
from intake.http import int_param, path_id, read_json_object

_NULLABLE_STR = {"type": ["string", "null"]}
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
        "attachments": {"type": "array", "items": {"type": "object", "required": ["filename", "content_type", "size"]}},
        "delivery": {"$ref": "#/components/schemas/Delivery"},
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
                "budget_mode": {"type": "string", "enum": [b.value for b in BudgetMode]},
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
                "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                "history": {"type": "array", "items": {"type": "object", "required": ["at", "actor", "kind"]}},
                "suggestions": {"type": "array", "items": {"type": "object",
                                                           "required": ["title", "url", "score"]}},
            },
        },
    ]
}
CATEGORY = {
    "type": "object",
    "required": ["id", "name", "active"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "active": {"type": "boolean"},
                   "parent_id": {"type": ["integer", "null"]},
                   "subcategories": {"type": "array", "items": {"type": "object"}}},
}


def _agent(body: dict[str, Any], request: web.Request) -> str:
    agent = body.get("agent")
    if agent is None:
        return "api"
    if not isinstance(agent, str) or not agent.strip() or len(agent) > 120:
        raise ValidationError("agent must be a short name", field="agent")
    return agent.strip()


def register(api: ApiRegistry, *, cases: CaseService) -> None:
    api.schemas.update({"CaseSummary": CASE_SUMMARY, "Message": MESSAGE, "Delivery": DELIVERY,
                        "CaseDetail": CASE_DETAIL, "Category": CATEGORY})
    summary_list = {"type": "object", "required": ["cases", "counts"],
                    "properties": {"cases": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}},
                                   "counts": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    detail = {"$ref": "#/components/schemas/CaseDetail"}

    async def list_cases(request: web.Request) -> web.Response:
        q = request.query
        f = CaseFilter(
            activity=q.get("activity") or None,
            open_only=q.get("open") in ("1", "true", "yes"),
            case_type=q.get("type") or None,
            category_id=int_param(q.get("category"), "category"),
            channel=q.get("channel") or None,
            assigned_agent=q.get("assigned") or None,
            text=q.get("q") or None,
            limit=int_param(q.get("limit"), "limit") or 50,
            offset=int_param(q.get("offset"), "offset") or 0,
        )
        return web.json_response({"cases": await cases.list_cases(f), "counts": await cases.activity_counts()})

    api.add("GET", "/cases", list_cases, summary="List cases, newest activity first (best match first with q)", tag="cases",
            response=summary_list, params=[
                query_param("activity", {"type": "string", "enum": [a.value for a in Activity]}),
                query_param("open", {"type": "string", "enum": ["1", "0", "true", "false"]}, "only cases not closed"),
                query_param("type", {"type": "string", "enum": [t.value for t in CaseType]}),
                query_param("category", {"type": "integer"}, "category or subcategory id"),
                query_param("channel", {"type": "string", "enum": [c.value for c in ChannelName]}),
                query_param("assigned", {"type": "string"}, "assigned agent"),
                query_param("q", {"type": "string", "maxLength": MAX_QUERY_CHARS},
                            "full-text search: case number, title, description, messages, notes, contact name "
                            "and addresses; accent- and case-insensitive, by word prefix; best matches first"),
                query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                query_param("offset", {"type": "integer", "minimum": 0}),
            ])

    async def create_case(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        contact = body.get("contact") or {}
        if not isinstance(contact, dict):
            raise ValidationError("contact must be an object", field="contact")
        new = NewCase(
            title=body.get("title"),  # type: ignore[arg-type]
            description=body.get("description"),  # type: ignore[arg-type]
            case_type=body.get("type") or CaseType.UNCLASSIFIED.value,
            contact_name=contact.get("name"), contact_email=contact.get("email"), contact_phone=contact.get("phone"),
            organization=body.get("organization"),
            category_id=int_param(body.get("category_id"), "category_id"),
            subcategory_id=int_param(body.get("subcategory_id"), "subcategory_id"),
            language=body.get("language") if body.get("language") in ("es", "pt", "en") else "es",
        )
        return web.json_response(await cases.create_case(new, actor=f"agent:{_agent(body, request)}"), status=201)

    api.add("POST", "/cases", create_case, summary="Open a case by hand (a customer phoned)", tag="cases",
            status=201, response=detail, request={
                "type": "object", "required": ["title", "description", "contact"],
                "properties": {
                    "title": {"type": "string", "maxLength": 300}, "description": {"type": "string"},
                    "type": {"type": "string", "enum": [t.value for t in CaseType]},
                    "contact": {"type": "object", "properties": {"name": {"type": "string"},
                                                                 "email": {"type": "string"},
                                                                 "phone": {"type": "string"}}},
                    "organization": {"type": "string"}, "category_id": {"type": "integer"},
                    "subcategory_id": {"type": "integer"}, "language": {"type": "string", "enum": ["es", "pt", "en"]},
                    "agent": {"type": "string"},
                }})

    async def get_case(request: web.Request) -> web.Response:
        return web.json_response(await cases.get_case(path_id(request, "number")))

    api.add("GET", "/cases/{number}", get_case, summary="One case with its messages and history", tag="cases",
            response=detail)

    async def reply(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        result = await cases.reply(path_id(request, "number"), body.get("text"), agent=_agent(body, request))  # type: ignore[arg-type]
        return web.json_response(result, status=202)

    api.add("POST", "/cases/{number}/reply", reply, tag="cases", status=202,
            summary="Reply to the customer on their channel (queued in the outbox)",
            request={"type": "object", "required": ["text"],
                     "properties": {"text": {"type": "string"}, "agent": {"type": "string"}}},
            response={"type": "object", "required": ["case", "channel", "outbox_id"],
                      "properties": {"case": {"type": "integer"}, "channel": {"type": "string"},
                                     "outbox_id": {"type": "integer"}}})

    async def note(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        mid = await cases.add_note(path_id(request, "number"), body.get("text"), agent=_agent(body, request))  # type: ignore[arg-type]
        return web.json_response({"message_id": mid}, status=201)

    api.add("POST", "/cases/{number}/notes", note, tag="cases", status=201,
            summary="Add an internal note (never sent to the customer)",
            request={"type": "object", "required": ["text"],
                     "properties": {"text": {"type": "string"}, "agent": {"type": "string"}}},
            response={"type": "object", "required": ["message_id"], "properties": {"message_id": {"type": "integer"}}})

    async def patch_case(request: web.Request) -> web.Response:
        number = path_id(request, "number")
        body = await read_json_object(request)
        agent = _agent(body, request)
        known = {"type", "category_id", "subcategory_id", "sector", "assigned_agent", "kb", "agent"}
        unknown = set(body) - known
        if unknown:
            raise ValidationError(f"unknown field(s): {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
        result = None
        if "type" in body:
            result = await cases.set_type(number, body["type"], agent=agent)
        if "category_id" in body or "subcategory_id" in body:
            result = await cases.set_category(number, int_param(body.get("category_id"), "category_id"),
                                              int_param(body.get("subcategory_id"), "subcategory_id"), agent=agent)
        if "sector" in body:
            result = await cases.set_sector(number, body["sector"], agent=agent)
        if "assigned_agent" in body:
            result = await cases.assign(number, body["assigned_agent"], agent=agent)
        if "kb" in body:
            kb = body["kb"]
            if not isinstance(kb, dict):
                raise ValidationError("kb must be an object", field="kb")
            result = await cases.update_kb_fields(number, agent=agent, problem=kb.get("problem"),
                                                  answer=kb.get("answer"), hotfix=kb.get("hotfix"),
                                                  application=kb.get("application"))
        return web.json_response(result or await cases.get_case(number))

    api.add("PATCH", "/cases/{number}", patch_case, tag="cases", response=detail,
            summary="Change type, category/subcategory, sector, assignment or the KB fields",
            request={"type": "object", "properties": {
                "type": {"type": "string", "enum": [t.value for t in CaseType]},
                "category_id": {"type": ["integer", "null"]}, "subcategory_id": {"type": ["integer", "null"]},
                "sector": {"type": ["string", "null"]}, "assigned_agent": {"type": ["string", "null"]},
                "kb": {"type": "object", "properties": {k: {"type": "string"} for k in
                                                        ("problem", "answer", "hotfix", "application")}},
                "agent": {"type": "string"}}, "additionalProperties": False})

    async def activity(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        return web.json_response(await cases.change_activity(path_id(request, "number"), body.get("activity"),  # type: ignore[arg-type]
                                                             agent=_agent(body, request), sector=body.get("sector")))

    api.add("POST", "/cases/{number}/activity", activity, tag="cases", response=detail,
            summary="Move the case in the workflow (409 when the move is not allowed)",
            description="preliminary_analysis → derived (needs sector) → answer_sent → closed",
            request={"type": "object", "required": ["activity"], "properties": {
                "activity": {"type": "string", "enum": [a.value for a in Activity]},
                "sector": {"type": "string"}, "agent": {"type": "string"}}})

    async def kb_action(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        return web.json_response(await cases.kb_action(path_id(request, "number"), body.get("action"),  # type: ignore[arg-type]
                                                       agent=_agent(body, request), url=body.get("url")))

    api.add("POST", "/cases/{number}/kb-action", kb_action, tag="cases", response=detail,
            summary="Publish the solution to the KB, link an existing post, or do not publish",
            request={"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "enum": [k.value for k in KbAction]},
                "url": {"type": "string"}, "agent": {"type": "string"}}})

    async def budget(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        lines = body.get("lines") or []
        if not isinstance(lines, list) or not all(isinstance(x, dict) for x in lines):
            raise ValidationError("lines must be a list of objects", field="lines")
        return web.json_response(await cases.set_budget(path_id(request, "number"), body.get("mode"), lines,  # type: ignore[arg-type]
                                                        agent=_agent(body, request)))

    api.add("PUT", "/cases/{number}/budget", budget, tag="cases", response=detail,
            summary="Set the budget mode and lines",
            request={"type": "object", "required": ["mode"], "properties": {
                "mode": {"type": "string", "enum": [b.value for b in BudgetMode]},
                "lines": {"type": "array", "items": {"type": "object", "required": ["product"], "properties": {
                    "product": {"type": "string"}, "quantity": {"type": ["number", "string"]},
                    "unit_amount": {"type": ["number", "string"]}}}},
                "agent": {"type": "string"}}})

    async def list_categories(_request: web.Request) -> web.Response:
        return web.json_response({"categories": await cases.list_categories()})

    api.add("GET", "/categories", list_categories, tag="categories", summary="The two-level category master",
            response={"type": "object", "required": ["categories"],
                      "properties": {"categories": {"type": "array", "items": {"$ref": "#/components/schemas/Category"}}}})

    async def create_category(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        return web.json_response(await cases.create_category(body.get("name"),  # type: ignore[arg-type]
                                                             parent_id=int_param(body.get("parent_id"), "parent_id")),
                                 status=201)

    api.add("POST", "/categories", create_category, tag="categories", status=201,
            summary="Add a category, or a subcategory with parent_id",
            request={"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "parent_id": {"type": "integer"}}},
            response={"$ref": "#/components/schemas/Category"})

    async def update_category(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        cid = path_id(request, "id")
        return web.json_response(await cases.update_category(cid, name=body.get("name"), active=body.get("active")))

    api.add("PATCH", "/categories/{id}", update_category, tag="categories", summary="Rename or (de)activate",
            request={"type": "object", "properties": {"name": {"type": "string"}, "active": {"type": "boolean"}}},
            response={"$ref": "#/components/schemas/Category"})
