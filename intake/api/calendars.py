"""/api/v1/calendars: business-hours calendars (core/calendars.py), what admins edit on
the console's /console/admin/calendars page. Admin tokens only, as the page is for admins.

A calendar in effect is config's (``[[calendars]]``) or one stored by an edit, which
overrides config's of the same name. Every definition is checked by the rule config and
the console follow (core.calendars.check_definition): overlapping or inverted hours, an
unknown time zone, country or subdivision are a 422 naming the field.
"""

from __future__ import annotations

from aiohttp import web

from posventa.core.business_hours import WEEKDAYS
from posventa.core.calendars import MAX_DAYS, MAX_NAME, NAME_PATTERN, CalendarEditor
from posventa.intake.api.openapi import ApiRegistry, body

TAG = "calendars"
#: Who made an edit, as the log says it (API tokens have no names).
ACTOR = "api"
NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN,
        "description": "no '/', no control character, no leading '.' nor spaces around it"}
_SPANS = {"type": "array", "maxItems": MAX_DAYS, "items": {"type": "string", "maxLength": 200},
          "description": 'open hours that day, e.g. ["09:00-13:00", "14:00-18:00"]; empty: closed'}
_DAYS = {"type": "array", "maxItems": MAX_DAYS, "items": {"type": "string", "maxLength": 200}}
_TEXT = {"type": "string", "maxLength": 64}
FIELDS_SCHEMA = {
    "timezone": {**_TEXT, "description": "an IANA time zone, e.g. America/Argentina/Buenos_Aires"},
    "country": {**_TEXT, "description": "holidays of this country (ISO 3166-1 alpha-2, e.g. AR); blank: none"},
    "subdivision": {**_TEXT, "description": "and of this subdivision of it (e.g. SP for São Paulo); blank: none"},
    **{day: _SPANS for day in WEEKDAYS},
    "closed_days": {**_DAYS, "description": 'custom closed days, e.g. ["2026-12-24"]'},
    "open_days": {**_DAYS, "description": 'custom open days with their hours, e.g. ["2026-12-26 09:00-13:00"]'},
}
CALENDAR = {
    "type": "object",
    "required": ["name", "edited", "configured", "timezone", "country", "subdivision", *WEEKDAYS, "closed_days",
                 "open_days"],
    "properties": {
        "name": {"type": "string"},
        "edited": {"type": "boolean", "description": "stored by an edit (console or API), over config's if any"},
        "configured": {"type": "boolean", "description": "config defines a calendar of this name"},
        **{key: {"type": schema["type"], **({"items": {"type": "string"}} if schema["type"] == "array" else {})}
           for key, schema in FIELDS_SCHEMA.items()},
    },
}
_REFUSED = {422: "the definition cannot work, `field` names what to fix: overlapping, inverted or malformed hours "
                 "(a weekday), a calendar never open (`mon`), an unknown time zone (`timezone`), country "
                 "(`country`) or subdivision (`subdivision`), a malformed day (`closed_days`, `open_days`), or "
                 "a policy's calendar made unusable"}


def register(api: ApiRegistry, *, calendars: CalendarEditor) -> None:
    api.schemas["Calendar"] = CALENDAR
    one = {"$ref": "#/components/schemas/Calendar"}
    named = {"name": NAME}

    async def list_calendars(_request: web.Request) -> web.Response:
        return web.json_response({"calendars": await calendars.list()})

    api.add("GET", "/calendars", list_calendars, tag=TAG, admin=True, summary="Every business-hours calendar in effect",
            response={"type": "object", "required": ["calendars"],
                      "properties": {"calendars": {"type": "array", "items": one}}})

    async def get_calendar(request: web.Request) -> web.Response:
        return web.json_response(await calendars.get(request.match_info["name"]))

    api.add("GET", "/calendars/{name}", get_calendar, tag=TAG, admin=True, response=one, path_schemas=named,
            summary="One calendar (404: no calendar of that name)")

    async def create_calendar(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await calendars.create(data["name"], data, actor=ACTOR), status=201)

    api.add("POST", "/calendars", create_calendar, tag=TAG, admin=True, status=201, response=one,
            summary="Add a calendar (policies name it in config; 422 if the name is in effect already)",
            description="Fields left out are empty: no hours that weekday, no holidays, no custom days.",
            errors={422: _REFUSED[422] + "; or a calendar of that name exists already (`name`)"},
            request={"type": "object", "required": ["name", "timezone"], "additionalProperties": False,
                     "properties": {"name": NAME, **FIELDS_SCHEMA}})

    async def update_calendar(request: web.Request) -> web.Response:
        return web.json_response(await calendars.update(request.match_info["name"], body(request),
                                                        actor=ACTOR))

    api.add("PATCH", "/calendars/{name}", update_calendar, tag=TAG, admin=True, response=one, path_schemas=named,
            summary="Change a calendar: the fields given replace its own (a config calendar is overridden)",
            description="Applied at once by every process: new due times, the outside-hours notice and "
                        "automatic assignment's hours follow it. Targets already set keep their due times.",
            errors=_REFUSED,
            request={"type": "object", "additionalProperties": False, "properties": FIELDS_SCHEMA})

    async def delete_calendar(request: web.Request) -> web.Response:
        in_effect = await calendars.delete(request.match_info["name"], actor=ACTOR)
        return web.json_response({"calendar": in_effect})

    api.add("DELETE", "/calendars/{name}", delete_calendar, tag=TAG, admin=True, path_schemas=named,
            summary="Remove a calendar's edit: config's of that name is in effect again, else it is gone",
            response={"type": "object", "required": ["calendar"],
                      "properties": {"calendar": {"anyOf": [one, {"type": "null"}],
                                                  "description": "config's calendar now in effect, or null"}}},
            errors={409: "config defines the calendar and it has no edit to remove, or a policy needs it"})
