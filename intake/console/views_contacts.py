"""Contacts and organizations in the console: search, a contact's page (identities, the
organization, the cases on every channel, possible duplicates with a merge button) and an
organization's page (its contacts, its open cases at a glance, its email domains, merging
another organization into it). Everything goes through ``ContactService`` and
``OrganizationService``, the doors the API uses, so their rules and 4xx messages are the
same here."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from posventa.core.contacts.identities import EMAIL, PHONE, TELEGRAM
from posventa.core.domain import LANGUAGES
from posventa.core.errors import DomainError, NotFound, ValidationError
from posventa.intake.console.app import PREFIX, SESSION_KEY, Console, requires, see_other
from posventa.intake.console.auth import Role
from posventa.intake.console.forms import Form, domain_errors, message_of
from posventa.intake.console.i18n import N_, _l

PAGE_SIZE = 50
#: Organizations offered in a select (the contact form, the list's filter, the new case).
MAX_ORGANIZATIONS_SHOWN = 200
#: What an agent may add by hand (a web chat visitor joins a contact by a merge).
MANUAL_IDENTITY_KINDS = (EMAIL, PHONE, TELEGRAM)
NOTICES = {
    "saved": N_("Contact saved."),
    "identity_added": N_("Identity added."),
    "identity_removed": N_("Identity removed."),
    "created": N_("Saved."),
    "merged": N_("Contacts merged."),
    "org_merged": N_("Organizations merged."),
    "erased": N_("Contact erased."),
}
#: Why two contacts may be one person (ContactService.duplicates' reasons).
DUPLICATE_REASONS = {
    EMAIL: N_("same email address"),
    PHONE: N_("same phone number"),
    "name_and_organization": N_("same name and organization"),
}


def record_id(request: web.Request, name: str = "id") -> int:
    """A path's id; one no database row can have is a 404, not a 500."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise NotFound(_l("no such record")) from None
    if value >= 2**63:
        raise NotFound(_l("no such record"))
    return value


def _page(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", "1")), 1000))
    except ValueError:
        return 1


async def duplicate_offers(console: Console, contact_id: int | None) -> list[dict[str, Any]]:
    """The contacts that may be the same person, each with its reason in the reader's
    language: what the contact page and the case page offer to merge."""
    if console.contacts is None or contact_id is None:
        return []
    return [{**d, "why": console.locales.gettext(DUPLICATE_REASONS.get(d["reason"], d["reason"]))}
            for d in await console.contacts.duplicates(contact_id)]


def register(router: web.UrlDispatcher, console: Console) -> None:
    contacts = console.contacts
    organizations = console.organizations
    if contacts is None or organizations is None:
        return
    gettext = console.locales.gettext

    def actor(request: web.Request) -> str:
        return f"agent:{request[SESSION_KEY].user.username}"

    def notice(request: web.Request) -> str | None:
        code = NOTICES.get(request.query.get("done", ""))
        return gettext(code) if code else None

    async def succeeded(action: Awaitable[object], errors: dict[str, Any], field: str, *,
                        pinned: bool = False, record_field: str | None = None) -> bool:
        """Run a form's one service call: True when it is done. A refusal (a DomainError;
        NotFound stays the page's 404) goes into ``errors`` at the field core names, else at
        ``field`` (always at ``field`` when ``pinned``: a merge's or an erasure's one input),
        but one about the page's own record (core names it ``id``: merged away or erased,
        a stale page) at ``record_field``, shown at the top of a page that has no forms
        any more."""
        try:
            await action
        except NotFound:
            raise
        except DomainError as exc:
            if record_field and isinstance(exc, ValidationError) and exc.field == "id":
                errors[record_field] = message_of(exc)
            else:
                errors.update({field: message_of(exc)} if pinned else domain_errors(exc, field))
            return False
        return True

    # --- contacts ----------------------------------------------------------------------

    async def contact_list(request: web.Request) -> web.StreamResponse:
        q = request.query.get("q", "")[:200]
        raw_org = request.query.get("organization", "")
        org = int(raw_org) if raw_org.isdigit() and len(raw_org) < 19 else None
        page = _page(request)
        try:
            rows = await contacts.search(q or None, organization_id=org, limit=PAGE_SIZE + 1,
                                         offset=(page - 1) * PAGE_SIZE)
        except DomainError as exc:  # a NUL in the query: say so next to the field
            return console.render("contacts.html", request, {
                "q": q, "organization": org, "rows": [], "page": 1, "has_next": False,
                "organizations": await organizations.search(limit=MAX_ORGANIZATIONS_SHOWN),
                "errors": domain_errors(exc, "q"), "params": lambda **kw: ""}, status=422)

        def params(**kw: Any) -> str:
            return urlencode({k: v for k, v in {"q": q, "organization": org or "", **kw}.items() if v != ""})

        return console.render("contacts.html", request, {
            "q": q, "organization": org, "rows": rows[:PAGE_SIZE], "page": page, "has_next": len(rows) > PAGE_SIZE,
            "organizations": await organizations.search(limit=MAX_ORGANIZATIONS_SHOWN), "errors": {},
            "params": params})

    async def render_contact(request: web.Request, contact_id: int, *, errors: dict[str, str] | None = None,
                             values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
        contact = await contacts.get(contact_id)
        rows = await contacts.cases(contact_id)
        return console.render("contact.html", request, {
            "contact": contact, "cases": rows,
            "erased_contacts": await console.read_models.erased_contacts(c["contact_id"] for c in rows),
            "duplicates": await duplicate_offers(console, contact_id),
            "organizations": await organizations.search(limit=MAX_ORGANIZATIONS_SHOWN),
            "languages": LANGUAGES, "kinds": MANUAL_IDENTITY_KINDS, "notice": notice(request),
            "errors": errors or {}, "values": values or {}}, status=status)

    async def contact_page(request: web.Request) -> web.StreamResponse:
        return await render_contact(request, record_id(request))

    async def contact_save(request: web.Request) -> web.StreamResponse:
        contact_id = record_id(request)
        form = await Form.read(request)
        org = form.integer("organization_id", minimum=1, maximum=2**63 - 1)
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
                form.errors["attributes"] = gettext("One key = value per line.")
                break
            attributes[key.strip()] = value.strip()
        body["attributes"] = attributes or None
        if not form.errors and await succeeded(contacts.update(contact_id, body, actor=actor(request)),
                                               form.errors, "name"):
            return see_other(f"{PREFIX}/contacts/{contact_id}?done=saved")
        return await render_contact(request, contact_id, errors=form.errors, values=dict(form.data), status=422)

    async def identity_add(request: web.Request) -> web.StreamResponse:
        contact_id = record_id(request)
        form = await Form.read(request)
        if await succeeded(contacts.add_identity(contact_id, form.text("kind", max_len=20),
                                                 form.text("address", max_len=320).strip(), actor=actor(request)),
                           form.errors, "address"):
            return see_other(f"{PREFIX}/contacts/{contact_id}?done=identity_added")
        return await render_contact(request, contact_id, errors=form.errors, values=dict(form.data), status=422)

    async def identity_remove(request: web.Request) -> web.StreamResponse:
        contact_id = record_id(request)
        errors: dict[str, Any] = {}
        identity_id = record_id(request, "identity_id")
        if await succeeded(contacts.remove_identity(contact_id, identity_id, actor=actor(request)), errors, "address"):
            return see_other(f"{PREFIX}/contacts/{contact_id}?done=identity_removed")
        return await render_contact(request, contact_id, errors=errors, status=422)

    async def contact_merge(request: web.Request) -> web.StreamResponse:
        """Absorb the contact in ``source`` into this one; back to the page it came from
        (a case page's suggestion comes back to the case)."""
        contact_id = record_id(request)
        form = await Form.read(request)
        source = form.integer("source", required=True, minimum=1, maximum=2**63 - 1)
        back = form.text("back", max_len=100)
        if source is not None:
            await succeeded(contacts.merge(contact_id, source, actor=actor(request)), form.errors, "source",
                            pinned=True, record_field="contact_id")
        if form.errors:
            return await render_contact(request, contact_id, errors=form.errors, values=dict(form.data), status=422)
        if re.fullmatch(r"/cases/\d{1,19}", back):
            return see_other(f"{PREFIX}{back}?done=merged")
        return see_other(f"{PREFIX}/contacts/{contact_id}?done=merged")

    @requires(Role.ADMIN)
    async def contact_export(request: web.Request) -> web.StreamResponse:
        """A privacy request's answer: everything held about the contact, as a JSON file."""
        contact_id = record_id(request)
        document = await contacts.export(contact_id)
        return web.json_response(document, dumps=lambda d: json.dumps(d, ensure_ascii=False, indent=2), headers={
            "Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'})

    @requires(Role.ADMIN)
    async def contact_erase(request: web.Request) -> web.StreamResponse:
        """Erase the contact; the admin confirms by typing its id."""
        contact_id = record_id(request)
        form = await Form.read(request)
        if form.text("confirm", max_len=30).strip() != str(contact_id):
            form.errors["confirm"] = gettext("Type %(id)s to confirm the erasure.") % {"id": contact_id}
            return await render_contact(request, contact_id, errors=form.errors, status=422)
        if await succeeded(contacts.erase(contact_id, actor=actor(request)), form.errors, "confirm", pinned=True):
            return see_other(f"{PREFIX}/contacts/{contact_id}?done=erased")
        return await render_contact(request, contact_id, errors=form.errors, status=422)

    # --- organizations -------------------------------------------------------------------

    async def organization_list(request: web.Request, *, errors: dict[str, str] | None = None,
                                values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
        q = request.query.get("q", "")[:200]
        try:
            rows = await organizations.search(q or None, limit=MAX_ORGANIZATIONS_SHOWN)
        except DomainError as exc:
            rows, errors, status = [], {**(errors or {}), **domain_errors(exc, "q")}, 422
        return console.render("organizations.html", request, {
            "q": q, "rows": rows, "errors": errors or {}, "values": values or {}}, status=status)

    async def render_organization(request: web.Request, org_id: int, *, errors: dict[str, str] | None = None,
                                  values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
        org = await organizations.get(org_id)
        others = [o for o in await organizations.search(limit=MAX_ORGANIZATIONS_SHOWN) if o["id"] != org_id]
        return console.render("organization.html", request, {
            "org": org, "others": others, "notice": notice(request),
            "erased_contacts": await console.read_models.erased_contacts(
                c["contact_id"] for c in [*org["open_cases"], *org["cases"]]),
            "errors": errors or {}, "values": values or {}}, status=status)

    def org_body(form: Form) -> dict[str, Any]:
        domains = [d for d in form.text("domains", max_len=5000).replace(",", " ").split() if d]
        return {"name": form.optional("name", max_len=200), "tax_id": form.optional("tax_id", max_len=50),
                "notes": form.optional("notes", max_len=20_000), "domains": domains}

    async def organization_create(request: web.Request) -> web.StreamResponse:
        form = await Form.read(request)
        body = org_body(form)
        if not form.errors:
            try:
                org = await organizations.create(body, actor=actor(request))
                return see_other(f"{PREFIX}/organizations/{org['id']}?done=created")
            except DomainError as exc:
                form.errors.update(domain_errors(exc, "name"))
        return await organization_list(request, errors=form.errors, values=dict(form.data), status=422)

    async def organization_page(request: web.Request) -> web.StreamResponse:
        return await render_organization(request, record_id(request))

    async def organization_save(request: web.Request) -> web.StreamResponse:
        org_id = record_id(request)
        form = await Form.read(request)
        body = org_body(form)
        if not form.errors and await succeeded(organizations.update(org_id, body, actor=actor(request)),
                                               form.errors, "name"):
            return see_other(f"{PREFIX}/organizations/{org_id}?done=created")
        return await render_organization(request, org_id, errors=form.errors, values=dict(form.data), status=422)

    async def organization_merge(request: web.Request) -> web.StreamResponse:
        """Absorb the organization in ``source`` (its contacts, cases and domains)."""
        org_id = record_id(request)
        form = await Form.read(request)
        source = form.integer("source", required=True, minimum=1, maximum=2**63 - 1)
        if source is not None and await succeeded(organizations.merge(org_id, source, actor=actor(request)),
                                                  form.errors, "source", pinned=True,
                                                  record_field="organization_id"):
            return see_other(f"{PREFIX}/organizations/{org_id}?done=org_merged")
        return await render_organization(request, org_id, errors=form.errors, values=dict(form.data), status=422)

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
    router.add_post("/organizations/{id:\\d+}/merge", organization_merge)
