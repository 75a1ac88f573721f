"""Contacts and organizations in the console: search, a contact's page (identities, the
organization, the cases on every channel, possible duplicates) and an organization's page
(its contacts and open cases at a glance). Everything goes through ``ContactService`` and
``OrganizationService``, the doors the API uses."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from core.contacts.identities import EMAIL, PHONE, TELEGRAM
from core.domain import LANGUAGES
from core.errors import DomainError, NotFound
from intake.console.app import PREFIX, SESSION_KEY, Console, requires, see_other
from intake.console.auth import Role
from intake.console.forms import Form, domain_errors

PAGE_SIZE = 50
#: What an agent may add by hand (a web chat visitor joins a contact by a merge).
MANUAL_IDENTITY_KINDS = (EMAIL, PHONE, TELEGRAM)
NOTICES = {
    "saved": "Contact saved.",
    "identity_added": "Identity added.",
    "identity_removed": "Identity removed.",
    "created": "Saved.",
    "merged": "Contacts merged.",
    "erased": "Contact erased.",
}


def _id(request: web.Request, name: str = "id") -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise NotFound("no such record") from None
    if value >= 2**63:
        raise NotFound("no such record")
    return value


def _page(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", "1")), 1000))
    except ValueError:
        return 1


def register(router: web.UrlDispatcher, console: Console) -> None:
    contacts = console.contacts
    organizations = console.organizations
    if contacts is None or organizations is None:
        return

    def actor(request: web.Request) -> str:
        return f"agent:{request[SESSION_KEY].user.username}"

    # --- contacts ----------------------------------------------------------------------

    async def contact_list(request: web.Request) -> web.StreamResponse:
        q = request.query.get("q", "")[:200]
        page = _page(request)
        rows = await contacts.search(q or None, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        return console.render("contacts.html", request, {
            "q": q, "rows": rows[:PAGE_SIZE], "page": page, "has_next": len(rows) > PAGE_SIZE,
            "params": lambda **kw: urlencode({"q": q, **kw})})

    async def render_contact(request: web.Request, contact_id: int, *, errors: dict[str, str] | None = None,
                             values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
        contact = await contacts.get(contact_id)
        return console.render("contact.html", request, {
            "contact": contact, "cases": await contacts.cases(contact_id),
            "duplicates": await contacts.duplicates(contact_id),
            "organizations": await organizations.search(limit=200),
            "languages": LANGUAGES, "kinds": MANUAL_IDENTITY_KINDS,
            "notice": NOTICES.get(request.query.get("done", "")),
            "errors": errors or {}, "values": values or {}}, status=status)

    async def contact_page(request: web.Request) -> web.StreamResponse:
        return await render_contact(request, _id(request))

    async def contact_save(request: web.Request) -> web.StreamResponse:
        contact_id = _id(request)
        form = await Form.read(request)
        org = form.integer("organization_id", minimum=1)
        body: dict[str, Any] = {"name": form.optional("name", max_len=200),
                                "language": form.optional("language", max_len=5),
                                "notes": form.optional("notes", max_len=20_000),
                                "organization_id": org}
        attributes: dict[str, str] = {}
        for line in form.text("attributes", max_len=20_000).splitlines():
            key, sep, value = line.partition("=")
            if not line.strip():
                continue
            if not sep:
                form.errors["attributes"] = "one key = value per line"
                break
            attributes[key.strip()] = value.strip()
        body["attributes"] = attributes or None
        if not form.errors:
            try:
                await contacts.update(contact_id, body, actor=actor(request))
                return see_other(f"{PREFIX}/contacts/{contact_id}?done=saved")
            except DomainError as exc:
                if isinstance(exc, NotFound):
                    raise
                form.errors.update(domain_errors(exc, "name"))
        return await render_contact(request, contact_id, errors=form.errors, values=dict(form.data), status=422)

    async def identity_add(request: web.Request) -> web.StreamResponse:
        contact_id = _id(request)
        form = await Form.read(request)
        try:
            await contacts.add_identity(contact_id, form.text("kind", max_len=20),
                                        form.text("address", max_len=320).strip(), actor=actor(request))
            return see_other(f"{PREFIX}/contacts/{contact_id}?done=identity_added")
        except DomainError as exc:
            if isinstance(exc, NotFound):
                raise
            return await render_contact(request, contact_id, errors=domain_errors(exc, "address"),
                                        values=dict(form.data), status=422)

    async def identity_remove(request: web.Request) -> web.StreamResponse:
        contact_id = _id(request)
        await contacts.remove_identity(contact_id, _id(request, "identity_id"), actor=actor(request))
        return see_other(f"{PREFIX}/contacts/{contact_id}?done=identity_removed")

    async def contact_merge(request: web.Request) -> web.StreamResponse:
        """Absorb the contact in ``source`` into this one; back to the page it came from."""
        contact_id = _id(request)
        form = await Form.read(request)
        source = form.integer("source", required=True, minimum=1, maximum=2**63 - 1)
        back = form.text("back", max_len=100)
        if source is not None:
            try:
                await contacts.merge(contact_id, source, actor=actor(request))
            except DomainError as exc:
                if isinstance(exc, NotFound):
                    raise
                form.errors["source"] = str(exc)
        if form.errors:
            return await render_contact(request, contact_id, errors=form.errors, values=dict(form.data), status=422)
        if re.fullmatch(r"/cases/\d{1,19}", back):
            return see_other(f"{PREFIX}{back}?done=merged")
        return see_other(f"{PREFIX}/contacts/{contact_id}?done=merged")

    @requires(Role.ADMIN)
    async def contact_export(request: web.Request) -> web.StreamResponse:
        """A privacy request's answer: everything held about the contact, as a JSON file."""
        contact_id = _id(request)
        document = await contacts.export(contact_id)
        return web.json_response(document, dumps=lambda d: json.dumps(d, ensure_ascii=False, indent=2), headers={
            "Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'})

    @requires(Role.ADMIN)
    async def contact_erase(request: web.Request) -> web.StreamResponse:
        """Erase the contact; the admin confirms by typing its id."""
        contact_id = _id(request)
        form = await Form.read(request)
        if form.text("confirm", max_len=30).strip() != str(contact_id):
            form.errors["confirm"] = f"type {contact_id} to confirm the erasure"
            return await render_contact(request, contact_id, errors=form.errors, status=422)
        try:
            await contacts.erase(contact_id, actor=actor(request))
        except DomainError as exc:
            if isinstance(exc, NotFound):
                raise
            return await render_contact(request, contact_id, errors={"confirm": str(exc)}, status=422)
        return see_other(f"{PREFIX}/contacts/{contact_id}?done=erased")

    # --- organizations -------------------------------------------------------------------

    async def organization_list(request: web.Request, *, errors: dict[str, str] | None = None,
                                values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
        q = request.query.get("q", "")[:200]
        return console.render("organizations.html", request, {
            "q": q, "rows": await organizations.search(q or None, limit=200),
            "errors": errors or {}, "values": values or {}}, status=status)

    async def render_organization(request: web.Request, org_id: int, *, errors: dict[str, str] | None = None,
                                  values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
        return console.render("organization.html", request, {
            "org": await organizations.get(org_id), "notice": NOTICES.get(request.query.get("done", "")),
            "errors": errors or {}, "values": values or {}}, status=status)

    def org_body(form: Form) -> dict[str, Any]:
        domains = [d for d in form.text("domains", max_len=20_000).replace(",", " ").split() if d]
        return {"name": form.optional("name", max_len=200), "tax_id": form.optional("tax_id", max_len=50),
                "notes": form.optional("notes", max_len=20_000), "domains": domains}

    async def organization_create(request: web.Request) -> web.StreamResponse:
        form = await Form.read(request)
        try:
            org = await organizations.create(org_body(form), actor=actor(request))
            return see_other(f"{PREFIX}/organizations/{org['id']}?done=created")
        except DomainError as exc:
            return await organization_list(request, errors=domain_errors(exc, "name"), values=dict(form.data),
                                           status=422)

    async def organization_page(request: web.Request) -> web.StreamResponse:
        return await render_organization(request, _id(request))

    async def organization_save(request: web.Request) -> web.StreamResponse:
        org_id = _id(request)
        form = await Form.read(request)
        try:
            await organizations.update(org_id, org_body(form), actor=actor(request))
            return see_other(f"{PREFIX}/organizations/{org_id}?done=created")
        except DomainError as exc:
            if isinstance(exc, NotFound):
                raise
            return await render_organization(request, org_id, errors=domain_errors(exc, "name"),
                                             values=dict(form.data), status=422)

    router.add_get("/contacts", contact_list)
    router.add_get("/contacts/{id:\\d+}", contact_page)
    router.add_post("/contacts/{id:\\d+}", contact_save)
    router.add_post("/contacts/{id:\\d+}/identities", identity_add)
    router.add_post("/contacts/{id:\\d+}/merge", contact_merge)
    router.add_get("/contacts/{id:\\d+}/export", contact_export)
    router.add_post("/contacts/{id:\\d+}/erase", contact_erase)
    router.add_post("/contacts/{id:\\d+}/identities/{identity_id:\\d+}/delete", identity_remove)
    router.add_get("/organizations", organization_list)
    router.add_post("/organizations", organization_create)
    router.add_get("/organizations/{id:\\d+}", organization_page)
    router.add_post("/organizations/{id:\\d+}", organization_save)
