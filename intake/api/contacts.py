"""/api/v1/contacts and /api/v1/organizations: customers as records."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from posventa.core.contacts.history import KINDS, SENTENCES
from posventa.core.contacts.identities import IDENTITY_KINDS
from posventa.core.contacts.organizations import MAX_DOMAINS, OrganizationService
from posventa.core.contacts.service import MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTES, MAX_NOTES, ContactService
from posventa.core.domain import LANGUAGES
from posventa.intake.api.openapi import ID, ApiRegistry, body, enum, integer, query, query_param, text
from posventa.intake.http import path_id

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
             "history": {"type": "array", "items": {"$ref": "#/components/schemas/ContactHistoryEntry"}},
             "duplicates": {"type": "array", "items": {
                 "type": "object", "required": ["contact", "reason"],
                 "properties": {"contact": {"$ref": "#/components/schemas/ContactSummary"},
                                "reason": {"type": "string", "enum": ["email", "phone", "name_and_organization"]}}}},
         }},
    ]
}
HISTORY_ENTRY = {
    "type": "object",
    "required": ["at", "actor", "kind", "code", "values", "detail"],
    "description": "One entry of a contact's history. What it says is `code` and the `values` that fill the "
                   "code's sentence (a client shows it in its own words, keyed on the code); `detail` is that "
                   "sentence in English, whatever the request's language (the API speaks English, as its error "
                   "messages do). An entry that says no more than its kind (`created`), and one whose details an "
                   "erasure removed, has `code` null, `values` {} and `detail` null; an entry written before "
                   "codes whose sentence could not be read back has `code` null and its stored English text "
                   "in `detail`.",
    "properties": {
        "at": {"type": "string"}, "actor": {"type": "string"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "code": {"type": ["string", "null"], "enum": [*SENTENCES, None],
                 "description": "; ".join(f"{code}: {text.template}" for code, text in SENTENCES.items())},
        "values": {"type": "object", "description": "the code's placeholders by name: numbers, text, and "
                                                    "`fields`, a list of the field names an edit changed"},
        "detail": _NULLABLE_STR,
    },
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

#: Who did it, for the history; "api" when not given.
_AGENT = text(120)
_CONTACT_FIELDS = {
    "name": text(200, blank=True, nullable=True),
    "language": {"type": ["string", "null"], "enum": [*LANGUAGES, None]},
    "organization_id": {**ID, "type": ["integer", "null"]},
    "notes": text(MAX_NOTES, blank=True, nullable=True),
    "attributes": {"type": ["object", "null"], "maxProperties": MAX_ATTRIBUTES,
                   "propertyNames": {"minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY, "pattern": r"\S",
                                     "not": {"pattern": r"\x00"}},
                   "additionalProperties": text(MAX_ATTRIBUTE_VALUE, blank=True, nullable=True)},
    "agent": _AGENT,
}
_IDENTITY_INPUT = {"type": "object", "required": ["kind", "address"], "additionalProperties": False,
                   "properties": {"kind": enum(k for k in IDENTITY_KINDS if k != "webchat"),
                                  "address": {"anyOf": [text(320), {"type": "integer"}]},
                                  "agent": _AGENT}}
_ORG_FIELDS = {
    "name": text(200),
    "tax_id": text(50, blank=True, nullable=True),
    "notes": text(20_000, blank=True, nullable=True),
    "domains": {"type": "array", "maxItems": MAX_DOMAINS, "items": text(253),
                "description": "email domains whose new contacts join the organization; public mail domains "
                               "(gmail.com...) are refused"},
    "agent": _AGENT,
}
_IDENTITY_REFUSAL = "an address that is not valid for its kind (an email, a phone, a Telegram user id), or one " \
                    "another contact holds (merge the two contacts instead)"
_ORG_REFUSAL = "a domain that is not a domain, a public mail domain, or one another organization lists"


def _merge_result(moves: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": ["target_id", "source_id", "dry_run", "moves"],
            "properties": {"target_id": {"type": "integer"}, "source_id": {"type": "integer"},
                           "dry_run": {"type": "boolean"},
                           "moves": {"type": "object", "required": moves,
                                     "properties": {m: {"type": "integer", "minimum": 0} for m in moves}}}}


_DRY_RUN = query_param("dry_run", {"type": "boolean"}, "only say what would move")


def _actor(data: dict[str, Any]) -> str:
    return f"agent:{data['agent'].strip() if 'agent' in data else 'api'}"


def register(api: ApiRegistry, *, contacts: ContactService, organizations: OrganizationService) -> None:
    api.schemas.update({"ContactSummary": CONTACT_SUMMARY, "Contact": CONTACT, "Identity": IDENTITY,
                        "ContactHistoryEntry": HISTORY_ENTRY,
                        "OrganizationSummary": ORGANIZATION_SUMMARY, "Organization": ORGANIZATION})
    contact = {"$ref": "#/components/schemas/Contact"}
    organization = {"$ref": "#/components/schemas/Organization"}
    paging = [query_param("limit", integer(1, 200)), query_param("offset", integer(0, 100_000))]

    def limits(request: web.Request) -> tuple[int, int]:
        q = query(request)
        return q.get("limit", 50), q.get("offset", 0)

    # --- contacts ----------------------------------------------------------------------

    async def list_contacts(request: web.Request) -> web.Response:
        limit, offset = limits(request)
        q = query(request)
        found = await contacts.search(q.get("q"), organization_id=q.get("organization"), limit=limit, offset=offset)
        return web.json_response({"contacts": found})

    api.add("GET", "/contacts", list_contacts, tag="contacts",
            summary="Search contacts by name, email address or phone (each word a prefix), newest first",
            response={"type": "object", "required": ["contacts"],
                      "properties": {"contacts": {"type": "array",
                                                  "items": {"$ref": "#/components/schemas/ContactSummary"}}}},
            params=[query_param("q", text(200), "name words, address or phone"),
                    query_param("organization", ID, "only this organization's contacts"), *paging])

    async def create_contact(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await contacts.create(data, actor=_actor(data)), status=201)

    api.add("POST", "/contacts", create_contact, tag="contacts", status=201, response=contact,
            summary="Create a contact, with its identities (an identity another contact holds is refused)",
            errors={422: f"no name and no identity; organization_id names no live organization; or {_IDENTITY_REFUSAL}"},
            request={"type": "object", "additionalProperties": False, "properties": {
                **_CONTACT_FIELDS, "identities": {"type": "array", "maxItems": 20, "items": _IDENTITY_INPUT}}})

    async def get_contact(request: web.Request) -> web.Response:
        contact_id = path_id(request, "id")
        found = await contacts.get(contact_id)
        found["duplicates"] = await contacts.duplicates(contact_id)
        return web.json_response(found)

    api.add("GET", "/contacts/{id}", get_contact, tag="contacts", response=contact,
            summary="A contact with its identities, history and possible duplicates")

    async def patch_contact(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await contacts.update(path_id(request, "id"), data, actor=_actor(data)))

    api.add("PATCH", "/contacts/{id}", patch_contact, tag="contacts", response=contact,
            summary="Change a contact's name, language, organization, notes or attributes",
            errors={422: "the contact was merged away or erased, or organization_id names no live organization"},
            request={"type": "object", "additionalProperties": False, "properties": _CONTACT_FIELDS})

    async def add_identity(request: web.Request) -> web.Response:
        data = body(request)
        identity = await contacts.add_identity(path_id(request, "id"), data["kind"], data["address"],
                                               actor=_actor(data))
        return web.json_response(identity, status=201)

    api.add("POST", "/contacts/{id}/identities", add_identity, tag="contacts", status=201,
            response={"$ref": "#/components/schemas/Identity"},
            summary="Add an email address, phone (normalised to E.164) or Telegram user id to a contact",
            description="Unverified until the customer writes from it. An identity another contact holds is "
                        "refused with 422: merge the two contacts instead.",
            errors={422: f"the contact was merged away or erased; or {_IDENTITY_REFUSAL}"}, request=_IDENTITY_INPUT)

    async def remove_identity(request: web.Request) -> web.Response:
        await contacts.remove_identity(path_id(request, "id"), path_id(request, "identity_id"), actor="agent:api")
        return web.Response(status=204)

    api.add("DELETE", "/contacts/{id}/identities/{identity_id}", remove_identity, tag="contacts", status=204,
            summary="Remove an identity from a contact",
            errors={422: "the contact was merged away or erased"})

    async def contact_cases(request: web.Request) -> web.Response:
        limit, offset = limits(request)
        return web.json_response({"cases": await contacts.cases(path_id(request, "id"), limit=limit,
                                                                offset=offset)})

    api.add("GET", "/contacts/{id}/cases", contact_cases, tag="contacts", params=paging,
            summary="The contact's cases on every channel, newest activity first",
            response={"type": "object", "required": ["cases"],
                      "properties": {"cases": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}}}})

    async def merge_contact(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await contacts.merge(path_id(request, "id"), data["contact_id"],
                                                      actor=_actor(data), dry_run=query(request).get("dry_run", False)))

    api.add("POST", "/contacts/{id}/merge", merge_contact, tag="contacts", params=[_DRY_RUN],
            summary="Absorb another contact into this one: identities, cases, survey sales and answers, history",
            description="One transaction; recorded in both contacts' history with who merged.",
            errors={422: "merging a contact into itself, or either contact was already merged away or erased, "
                         "or contact_id names no contact (`field` says which)"},
            request={"type": "object", "required": ["contact_id"], "additionalProperties": False,
                     "properties": {"contact_id": {**ID, "description": "the contact to absorb"}, "agent": _AGENT}},
            response=_merge_result(["identities", "cases", "messages", "sales", "survey_instances",
                                    "webchat_sessions", "history"]))

    async def export_contact(request: web.Request) -> web.Response:
        return web.json_response(await contacts.export(path_id(request, "id")))

    api.add("GET", "/contacts/{id}/export", export_contact, tag="contacts",
            summary="Everything held about a contact, as one JSON document (a privacy request)",
            response={"type": "object",
                      "required": ["contact", "identities", "cases", "sales", "survey_answers", "history"],
                      "properties": {k: {"type": "array"} for k in
                                     ("identities", "cases", "sales", "survey_answers",
                                      "web_chat_sessions", "messages_outside_cases")}
                      | {"contact": {"type": "object"},
                         "history": {"type": "array", "items": {"$ref": "#/components/schemas/ContactHistoryEntry"}}}})

    async def erase_contact(request: web.Request) -> web.Response:
        who = query(request).get("agent", "api")
        return web.json_response(await contacts.erase(path_id(request, "id"), actor=f"agent:{who.strip()}"))

    api.add("DELETE", "/contacts/{id}", erase_contact, tag="contacts", admin=True,
            params=[query_param("agent", text(120), "who asks, for the record")],
            summary="Erase a contact (a privacy request; admin tokens only)",
            description="Message and case texts are replaced, attachments deleted from disk, identities removed, "
                        "the name becomes 'erased contact #id' (stored in English; the console shows it in its reader's "
                        "language). Survey scores stay, anonymised, so sellers' "
                        "totals do not change. Recorded in the history with who did it.",
            errors={422: "the contact was already erased, or merged into another (erase that one)"},
            response={"type": "object", "required": ["id", "erased", "files_deleted"],
                      "properties": {"id": {"type": "integer"}, "erased": {"type": "boolean"},
                                     "files_deleted": {"type": "integer", "minimum": 0}}})

    # --- organizations -----------------------------------------------------------------

    async def list_organizations(request: web.Request) -> web.Response:
        limit, offset = limits(request)
        return web.json_response({"organizations": await organizations.search(query(request).get("q"), limit=limit,
                                                                              offset=offset)})

    api.add("GET", "/organizations", list_organizations, tag="organizations",
            summary="Organizations by name, each with its open case count",
            response={"type": "object", "required": ["organizations"],
                      "properties": {"organizations": {"type": "array", "items": {
                          "$ref": "#/components/schemas/OrganizationSummary"}}}},
            params=[query_param("q", text(200), "part of the name"), *paging])

    async def create_organization(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await organizations.create(data, actor=_actor(data)), status=201)

    api.add("POST", "/organizations", create_organization, tag="organizations", status=201, response=organization,
            summary="Create an organization", errors={422: _ORG_REFUSAL},
            request={"type": "object", "required": ["name"], "additionalProperties": False,
                     "properties": _ORG_FIELDS})

    async def get_organization(request: web.Request) -> web.Response:
        return web.json_response(await organizations.get(path_id(request, "id")))

    api.add("GET", "/organizations/{id}", get_organization, tag="organizations", response=organization,
            summary="An organization with its contacts, its open cases and its latest cases")

    async def patch_organization(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await organizations.update(path_id(request, "id"), data, actor=_actor(data)))

    api.add("PATCH", "/organizations/{id}", patch_organization, tag="organizations", response=organization,
            summary="Change an organization's name, tax id, notes or email domains (the whole list)",
            errors={422: f"the organization was merged away; or {_ORG_REFUSAL}"},
            request={"type": "object", "additionalProperties": False, "properties": _ORG_FIELDS})

    async def merge_organization(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await organizations.merge(path_id(request, "id"), data["organization_id"],
                                                           actor=_actor(data),
                                                           dry_run=query(request).get("dry_run", False)))

    api.add("POST", "/organizations/{id}/merge", merge_organization, tag="organizations", params=[_DRY_RUN],
            summary="Absorb another organization into this one: its contacts, cases and email domains",
            errors={422: "merging an organization into itself, either one was already merged away, or "
                         "organization_id names no organization"},
            request={"type": "object", "required": ["organization_id"], "additionalProperties": False,
                     "properties": {"organization_id": ID, "agent": _AGENT}},
            response=_merge_result(["contacts", "cases", "domains"]))
