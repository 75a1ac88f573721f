"""/api/v1/agents: each agent's capacity, sectors and availability for automatic
assignment (core/assignment.py)."""

from __future__ import annotations

from aiohttp import web

from posventa.core.assignment import MAX_CAPACITY, Assigner
from posventa.core.notifications import EVENTS, NOTIFY_CHANNELS
from posventa.intake.api.openapi import ApiRegistry, body, integer, text
from posventa.intake.http import path_id

AGENT = {
    "type": "object",
    "required": ["id", "username", "capacity", "sectors", "available", "open_cases"],
    "properties": {
        "id": {"type": "integer", "description": "the console user's id"},
        "username": {"type": "string"},
        "display_name": {"type": ["string", "null"]},
        "capacity": {"type": "integer", "minimum": 1, "description": "open cases at most"},
        "sectors": {"type": "array", "items": {"type": "string"}},
        "available": {"type": "boolean", "description": "a console page open, or /available on the Telegram desk"},
        "telegram_available": {"type": "boolean"},
        "console_open": {"type": "boolean"},
        "away_since": {"type": ["string", "null"], "format": "date-time"},
        "open_cases": {"type": "integer", "minimum": 0},
        "telegram_user_id": {"type": ["integer", "null"]},
        "email": {"type": ["string", "null"]},
        "notify": {"type": "object", "description": "per event, per channel: true or false",
                   "additionalProperties": {"type": "object", "additionalProperties": {"type": "boolean"}}},
    },
}


def register(api: ApiRegistry, *, assigner: Assigner) -> None:
    api.schemas["Agent"] = AGENT
    one = {"$ref": "#/components/schemas/Agent"}

    async def list_agents(request: web.Request) -> web.Response:
        return web.json_response({"agents": await assigner.list_agents()})

    api.add("GET", "/agents", list_agents, tag="agents", summary="Agents with capacity, sectors and availability",
            response={"type": "object", "required": ["agents"],
                      "properties": {"agents": {"type": "array", "items": one}}})

    async def get_agent(request: web.Request) -> web.Response:
        return web.json_response(await assigner.get_agent(path_id(request, "id")))

    api.add("GET", "/agents/{id}", get_agent, tag="agents", summary="One agent", response=one)

    async def patch_agent(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await assigner.update_agent(
            path_id(request, "id"), capacity=data.get("capacity"), sectors=data.get("sectors"),
            available=data.get("available"), telegram_user_id=data.get("telegram_user_id"), email=data.get("email"),
            notify=data.get("notify")))

    api.add("PATCH", "/agents/{id}", patch_agent, tag="agents", response=one,
            summary="Set an agent's capacity (1 or more), sectors, availability or Telegram user id",
            request={"type": "object", "additionalProperties": False, "properties": {
                "capacity": integer(1, MAX_CAPACITY),
                "sectors": {"type": "array", "maxItems": 50, "items": {**text(120), "pattern": "^[^,]*$"}},
                "available": {"type": "boolean"},
                "telegram_user_id": integer(1, 2**53),
                "email": {"type": "string", "maxLength": 320, "pattern": r"^(\s*|[^\s<>,\x00]*@[^\s<>,\x00]*)$",
                          "description": "blank clears it"},
                "notify": {"type": "object", "maxProperties": 4, "propertyNames": {"enum": list(EVENTS)},
                           "additionalProperties": {
                               "type": "object", "maxProperties": 3, "propertyNames": {"enum": list(NOTIFY_CHANNELS)},
                               "additionalProperties": {"type": "boolean"}}},
            }})
