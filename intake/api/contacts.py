"""/api/v1/contacts and /api/v1/organizations: customers as records."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.contacts.identities import IDENTITY_KINDS
from core.contacts.organizations import OrganizationService
from core.contacts.service import ContactService
from core.domain import LANGUAGES
from core.errors import ValidationError
from intake.api.cases import agent_name
from intake.api.openapi import ApiRegistry, query_param
from intake.http import int_param, path_id, read_json_object

_NULLABLE_STR = {"type": ["string", "null"]}
_ORG_REF = {"type": ["object", "null"], "required": ["id", "name"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
IDENTITY = {
    "type": "object",
    "required": ["id", "kind", "address", "verified", "unreachable"],
    "properties": {"id": {"type": "integer"}, "kind": {"type": "string", "enum": list(IDENTITY_KINDS)},
                   "address": {"type": "string"}, "verified": {"type": "boolean"},
                   "unreachable": {"type": "boolean"}, "created_at": _NULLABLE_STR},
}
CONTACT_SUMMARY = {
    "type": "object",
    "required": ["id", "name", "email", "phone", "language", "organization"],
    "properties": {"id": {"type": "integer"}, "name": _NULLABLE_STR, "email": _NULLABLE_STR, "phone": _NULLABLE_STR,
                   "language": _NULLABLE_STR, "organization": _ORG_REF, "created_at": _NULLABLE_STR},
}
CONTACT = {
    "allOf": [
        {"$ref": "#/components/schemas/ContactSummary"},
        {"type": "object",
         "required": ["notes", "attributes", "identities", "merged_into_id", "erased_at", "history"],
         "properties": {
             "notes": _NULLABLE_STR,
             "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
             "identities": {"type": "array", "items": {"$ref": "#/components/schemas/Identity"}},
             "merged_into_id": {"type": ["integer", "null"]},
             "erased_at": _NULLABLE_STR,
             "history": {"type": "array", "items": {"type": "object", "required": ["at", "actor", "kind"]}},
             "duplicates": {"type": "array", "items": {
                 "type": "object", "required": ["contact", "reason"],
                 "properties": {"contact": {"$ref": "#/components/schemas/ContactSummary"},
                                "reason": {"type": "string", "enum": ["email", "phone", "name_and_organization"]}}}},
         }},
    ]
}
ORGANIZATION_SUMMARY = {
    "type": "object",
    "required": ["id", "name", "tax_id", "notes", "domains", "open_case_count"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "tax_id": _NULLABLE_STR,
                   "notes": _NULLABLE_STR, "domains": {"type": "array", "items": {"type": "string"}},
                   "open_case_count": {"type": "integer"}, "merged_into_id": {"type": ["integer", "null"]},
                   "created_at": {"type": "string"}},
}
ORGANIZATION = {
    "allOf": [
        {"$ref": "#/components/schemas/OrganizationSummary"},
        {"type": "object", "required": ["contacts", "open_cases", "cases"],
         "properties": {
             "contacts": {"type": "array", "items": {"$ref": "#/components/schemas/ContactSummary"}},
             "open_cases": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}},
             "cases": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}},
         }},
    ]
}

_CONTACT_FIELDS = {
    "name": {"type": ["string", "null"], "maxLength": 200},
    "language": {"type": ["string", "null"], "enum": [*LANGUAGES, None]},
    "organization_id": {"type": ["integer", "null"]},
    "notes": {"type": ["string", "null"]},
    "attributes": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
}
_IDENTITY_INPUT = {"type": "object", "required": ["kind", "address"],
                   "properties": {"kind": {"type": "string", "enum": [k for k in IDENTITY_KINDS if k != "webchat"]},
                                  "address": {"type": "string"}}}
_ORG_FIELDS = {
    "name": {"type": "string", "maxLength": 200},
    "tax_id": {"type": ["string", "null"], "maxLength": 50},
    "notes": {"type": ["string", "null"]},
    "domains": {"type": "array", "items": {"type": "string"},
                "description": "email domains whose new contacts join the organization; public mail domains "
                               "(gmail.com...) are refused"},
}


def _merge_result(moves: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": ["target_id", "source_id", "dry_run", "moves"],
            "properties": {"target_id": {"type": "integer"}, "source_id": {"type": "integer"},
                           "dry_run": {"type": "boolean"},
                           "moves": {"type": "object", "required": moves,
                                     "properties": {m: {"type": "integer", "minimum": 0} for m in moves}}}}


def _dry_run(request: web.Request) -> bool:
    value = request.query.get("dry_run", "false")
    if value not in ("true", "false", "1", "0"):
        raise ValidationError("dry_run must be true or false", field="dry_run")
    return value in ("true", "1")


_DRY_RUN = query_param("dry_run", {"type": "string", "enum": ["true", "false", "1", "0"]},
                       "only say what would move")


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed - {"agent"}
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(sorted(unknown))}", field=sorted(unknown)[0])


def _actor(body: dict[str, Any], request: web.Request) -> str:
    return f"agent:{agent_name(body, request)}"


def register(api: ApiRegistry, *, contacts: ContactService, organizations: OrganizationService) -> None:
    api.schemas.update({"ContactSummary": CONTACT_SUMMARY, "Contact": CONTACT, "Identity": IDENTITY,
                        "OrganizationSummary": ORGANIZATION_SUMMARY, "Organization": ORGANIZATION})
    contact = {"$ref": "#/components/schemas/Contact"}
    organization = {"$ref": "#/components/schemas/Organization"}
    paging = [query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
              query_param("offset", {"type": "integer", "minimum": 0, "maximum": 100000})]

    def limits(request: web.Request) -> tuple[int, int]:
        limit = int_param(request.query.get("limit"), "limit") or 50
        offset = int_param(request.query.get("offset"), "offset") or 0
        if not 1 <= limit <= 200:
            raise ValidationError("limit must be between 1 and 200", field="limit")
        if not 0 <= offset <= 100_000:
            raise ValidationError("offset must be between 0 and 100000", field="offset")
        return limit, offset

    # --- contacts ----------------------------------------------------------------------

    async def list_contacts(request: web.Request) -> web.Response:
        limit, offset = limits(request)
        found = await contacts.search(request.query.get("q") or None,
                                      organization_id=int_param(request.query.get("organization"), "organization"),
                                      limit=limit, offset=offset)
        return web.json_response({"contacts": found})

    api.add("GET", "/contacts", list_contacts, tag="contacts",
            summary="Search contacts by name, email address or phone (each word a prefix), newest first",
            response={"type": "object", "required": ["contacts"],
                      "properties": {"contacts": {"type": "array",
                                                  "items": {"$ref": "#/components/schemas/ContactSummary"}}}},
            params=[query_param("q", {"type": "string", "maxLength": 200}, "name words, address or phone"),
                    query_param("organization", {"type": "integer"}, "only this organization's contacts"),
                    *paging])

    async def create_contact(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        _only(body, set(_CONTACT_FIELDS) | {"identities"})
        return web.json_response(await contacts.create(body, actor=_actor(body, request)), status=201)

    api.add("POST", "/contacts", create_contact, tag="contacts", status=201, response=contact,
            summary="Create a contact, with its identities (an identity another contact holds is refused)",
            request={"type": "object", "properties": {
                **_CONTACT_FIELDS, "identities": {"type": "array", "maxItems": 20, "items": _IDENTITY_INPUT},
                "agent": {"type": "string"}}})

    async def get_contact(request: web.Request) -> web.Response:
        contact_id = path_id(request, "id")
        found = await contacts.get(contact_id)
        found["duplicates"] = await contacts.duplicates(contact_id)
        return web.json_response(found)

    api.add("GET", "/contacts/{id}", get_contact, tag="contacts", response=contact,
            summary="A contact with its identities, history and possible duplicates")

    async def patch_contact(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        _only(body, set(_CONTACT_FIELDS))
        return web.json_response(await contacts.update(path_id(request, "id"), body, actor=_actor(body, request)))

    api.add("PATCH", "/contacts/{id}", patch_contact, tag="contacts", response=contact,
            summary="Change a contact's name, language, organization, notes or attributes",
            request={"type": "object", "properties": {**_CONTACT_FIELDS, "agent": {"type": "string"}}})

    async def add_identity(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        _only(body, {"kind", "address"})
        identity = await contacts.add_identity(path_id(request, "id"), body.get("kind"), body.get("address"),
                                               actor=_actor(body, request))
        return web.json_response(identity, status=201)

    api.add("POST", "/contacts/{id}/identities", add_identity, tag="contacts", status=201,
            response={"$ref": "#/components/schemas/Identity"},
            summary="Add an email address, phone (normalised to E.164) or Telegram user id to a contact",
            description="Unverified until the customer writes from it. An identity another contact holds is "
                        "refused with 422: merge the two contacts instead.",
            request={**_IDENTITY_INPUT, "properties": {**_IDENTITY_INPUT["properties"],
                                                       "agent": {"type": "string"}}})

    async def remove_identity(request: web.Request) -> web.Response:
        await contacts.remove_identity(path_id(request, "id"), path_id(request, "identity_id"), actor="agent:api")
        return web.Response(status=204)

    api.add("DELETE", "/contacts/{id}/identities/{identity_id}", remove_identity, tag="contacts", status=204,
            summary="Remove an identity from a contact")

    async def contact_cases(request: web.Request) -> web.Response:
        limit, offset = limits(request)
        return web.json_response({"cases": await contacts.cases(path_id(request, "id"), limit=limit,
                                                                offset=offset)})

    api.add("GET", "/contacts/{id}/cases", contact_cases, tag="contacts", params=paging,
            summary="The contact's cases on every channel, newest activity first",
            response={"type": "object", "required": ["cases"],
                      "properties": {"cases": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}}}})

    async def merge_contact(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        _only(body, {"contact_id"})
        return web.json_response(await contacts.merge(path_id(request, "id"), body.get("contact_id"),
                                                      actor=_actor(body, request), dry_run=_dry_run(request)))

    api.add("POST", "/contacts/{id}/merge", merge_contact, tag="contacts", params=[_DRY_RUN],
            summary="Absorb another contact into this one: identities, cases, survey sales and answers, history",
            description="One transaction; recorded in both contacts' history with who merged. Refused (422) "
                        "for the contact itself, or a contact already merged away or erased.",
            request={"type": "object", "required": ["contact_id"],
                     "properties": {"contact_id": {"type": "integer", "description": "the contact to absorb"},
                                    "agent": {"type": "string"}}},
            response=_merge_result(["identities", "cases", "messages", "sales", "survey_instances",
                                    "webchat_sessions", "history"]))

    async def export_contact(request: web.Request) -> web.Response:
        return web.json_response(await contacts.export(path_id(request, "id")))

    api.add("GET", "/contacts/{id}/export", export_contact, tag="contacts",
            summary="Everything held about a contact, as one JSON document (a privacy request)",
            response={"type": "object",
                      "required": ["contact", "identities", "cases", "sales", "survey_answers", "history"],
                      "properties": {k: {"type": "array"} for k in
                                     ("identities", "cases", "sales", "survey_answers", "history",
                                      "web_chat_sessions", "messages_outside_cases")}
                      | {"contact": {"type": "object"}}})

    async def erase_contact(request: web.Request) -> web.Response:
        contact_id = path_id(request, "id")
        agent = request.query.get("agent") or "api"
        if len(agent) > 120 or "\x00" in agent:
            raise ValidationError("agent must be a short name", field="agent")
        return web.json_response(await contacts.erase(contact_id, actor=f"agent:{agent}"))

    api.add("DELETE", "/contacts/{id}", erase_contact, tag="contacts", admin=True,
            params=[query_param("agent", {"type": "string", "maxLength": 120}, "who asks, for the record")],
            summary="Erase a contact (a privacy request; admin tokens only)",
            description="Message and case texts are replaced, attachments deleted from disk, identities removed, "
                        "the name becomes 'erased contact #id'. Survey scores stay, anonymised, so sellers' "
                        "totals do not change. Recorded in the history with who did it. 422 when already erased "
                        "or merged away.",
            response={"type": "object", "required": ["id", "erased", "files_deleted"],
                      "properties": {"id": {"type": "integer"}, "erased": {"type": "boolean"},
                                     "files_deleted": {"type": "integer", "minimum": 0}}})

    # --- organizations -----------------------------------------------------------------

    async def list_organizations(request: web.Request) -> web.Response:
        limit, offset = limits(request)
        q = request.query.get("q") or None
        if q is not None and len(q) > 200:
            raise ValidationError("q is longer than 200 characters", field="q")
        return web.json_response({"organizations": await organizations.search(q, limit=limit, offset=offset)})

    api.add("GET", "/organizations", list_organizations, tag="organizations",
            summary="Organizations by name, each with its open case count",
            response={"type": "object", "required": ["organizations"],
                      "properties": {"organizations": {"type": "array", "items": {
                          "$ref": "#/components/schemas/OrganizationSummary"}}}},
            params=[query_param("q", {"type": "string", "maxLength": 200}, "part of the name"), *paging])

    async def create_organization(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        _only(body, set(_ORG_FIELDS))
        return web.json_response(await organizations.create(body, actor=_actor(body, request)), status=201)

    api.add("POST", "/organizations", create_organization, tag="organizations", status=201, response=organization,
            summary="Create an organization",
            request={"type": "object", "required": ["name"], "properties": {**_ORG_FIELDS,
                                                                             "agent": {"type": "string"}}})

    async def get_organization(request: web.Request) -> web.Response:
        return web.json_response(await organizations.get(path_id(request, "id")))

    api.add("GET", "/organizations/{id}", get_organization, tag="organizations", response=organization,
            summary="An organization with its contacts, its open cases and its latest cases")

    async def patch_organization(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        _only(body, set(_ORG_FIELDS))
        return web.json_response(await organizations.update(path_id(request, "id"), body,
                                                            actor=_actor(body, request)))

    api.add("PATCH", "/organizations/{id}", patch_organization, tag="organizations", response=organization,
            summary="Change an organization's name, tax id, notes or email domains (the whole list)",
            request={"type": "object", "properties": {**_ORG_FIELDS, "agent": {"type": "string"}}})

    async def merge_organization(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        _only(body, {"organization_id"})
        return web.json_response(await organizations.merge(path_id(request, "id"), body.get("organization_id"),
                                                           actor=_actor(body, request), dry_run=_dry_run(request)))

    api.add("POST", "/organizations/{id}/merge", merge_organization, tag="organizations", params=[_DRY_RUN],
            summary="Absorb another organization into this one: its contacts, cases and email domains",
            request={"type": "object", "required": ["organization_id"],
                     "properties": {"organization_id": {"type": "integer"}, "agent": {"type": "string"}}},
            response=_merge_result(["contacts", "cases", "domains"]))
