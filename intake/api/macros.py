"""/api/v1/macros: canned responses (core/macros.py). Using one is a reply:
``POST /api/v1/cases/{number}/reply`` with ``macro`` (intake/api/cases.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from posventa.core.domain import Activity, CaseType
from posventa.core.macros import LANGUAGES, MAX_BODY, MAX_NAME, MacroInput, MacroService
from posventa.intake.api.openapi import ID, ApiRegistry, body, enum, query, query_param, text
from posventa.intake.http import path_id

TAG = "macros"
MACRO = {
    "type": "object",
    "required": ["id", "name", "owner", "bodies", "actions", "usage_count"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "owner": {"type": ["string", "null"], "description": "null: shared with the team; else the agent's own"},
        "bodies": {"type": "object", "properties": {lang: {"type": "string"} for lang in LANGUAGES}},
        "actions": {"type": "object"},
        "usage_count": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
#: Blank bodies count as absent (core's ``_text(required=False)``); at least one must not be.
_BODY = text(MAX_BODY, blank=True, nullable=True)
MACRO_INPUT = {
    "type": "object", "required": ["name", "bodies"], "additionalProperties": False,
    "properties": {
        "name": text(MAX_NAME),
        "owner": text(80, blank=True, nullable=True) | {
            "description": "an agent's username for a personal macro; null, blank or absent: shared"},
        "bodies": {"type": "object", "additionalProperties": False,
                   "description": "Jinja2 text per language: {{ customer.name }}, {{ case.number }}, "
                                  "{{ case.title }}, {{ agent.name }}, {{ kb.url }}, {{ company.name }}; "
                                  "a few filters and {% if %} only",
                   "properties": {lang: _BODY for lang in LANGUAGES}},
        "actions": {"type": "object", "additionalProperties": False, "properties": {
            "type": enum(t.value for t in CaseType), "category_id": ID, "subcategory_id": ID,
            "activity": enum(a.value for a in Activity), "sector": text(120), "note": text(MAX_BODY)},
            "description": "run after the reply, in this order: type, category, activity (with sector), note"},
    },
}
_REFUSALS = {422: "no body in any language, a body that is not a valid template or uses an unknown placeholder "
                  "(field `bodies.<language>`), a subcategory without its category, or a name the owner "
                  "already uses (field `name`)"}


def _input(data: dict[str, Any]) -> MacroInput:
    return MacroInput(name=data["name"], bodies=data["bodies"], owner=data.get("owner"),
                      actions=data.get("actions") or {})


def register(api: ApiRegistry, *, macros: MacroService) -> None:
    api.schemas["Macro"] = MACRO
    ref = {"$ref": "#/components/schemas/Macro"}

    async def list_macros(request: web.Request) -> web.Response:
        q = query(request)
        return web.json_response({"macros": await macros.list(visible_to=q.get("agent"), name_prefix=q.get("name"))})

    api.add("GET", "/macros", list_macros, tag=TAG, summary="Canned responses, most used first",
            response={"type": "object", "required": ["macros"],
                      "properties": {"macros": {"type": "array", "items": ref}}},
            params=[query_param("agent", text(80), "only the team's and this agent's own"),
                    query_param("name", text(MAX_NAME), "names starting with this (any case)")])

    async def create(request: web.Request) -> web.Response:
        return web.json_response(await macros.create(_input(body(request))), status=201)

    api.add("POST", "/macros", create, tag=TAG, status=201, request=MACRO_INPUT, response=ref, errors=_REFUSALS,
            summary="Add a canned response (422 names the field of a bad body or action)")

    async def get(request: web.Request) -> web.Response:
        return web.json_response(await macros.get(path_id(request, "id")))

    api.add("GET", "/macros/{id}", get, tag=TAG, response=ref, summary="One canned response")

    async def replace(request: web.Request) -> web.Response:
        return web.json_response(await macros.update(path_id(request, "id"), _input(body(request))))

    api.add("PUT", "/macros/{id}", replace, tag=TAG, request=MACRO_INPUT, response=ref, errors=_REFUSALS,
            summary="Replace a canned response (its usage count stays)")

    async def remove(request: web.Request) -> web.Response:
        await macros.delete(path_id(request, "id"))
        return web.Response(status=204)

    api.add("DELETE", "/macros/{id}", remove, tag=TAG, status=204, summary="Delete a canned response")
