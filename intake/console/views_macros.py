"""Canned responses in the console: the agents' own and the team's (managers edit those).

Using one happens on the case page (views_agent ``do_reply`` with the ``macro`` field);
here they are listed, added, changed and deleted, all through ``MacroService``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from posventa.core.domain import Activity, CaseType
from posventa.core.errors import DomainError, NotFound, ValidationError
from posventa.core.macros import LANGUAGES, MAX_BODY, MacroInput
from posventa.intake.console.app import PREFIX, SESSION_KEY, Console, see_other
from posventa.intake.console.auth import Role
from posventa.intake.console.forms import Form, domain_errors
from posventa.intake.console.i18n import N_, _l

FIELDS = ("name", "scope", *(f"body_{lang}" for lang in LANGUAGES), "action_type", "action_activity", "action_note")


def register(router: web.UrlDispatcher, console: Console) -> None:
    macros = console.macros

    def editable(request: web.Request, macro: dict[str, Any]) -> bool:
        user = request[SESSION_KEY].user
        return macro["owner"] == user.username or (macro["owner"] is None and user.can(Role.MANAGER))

    async def page(request: web.Request, *, item: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                   values: dict[str, str] | None = None, status: int = 200) -> web.Response:
        user = request[SESSION_KEY].user
        listed = await macros.list(visible_to=user.username)
        if values is None and item is not None:
            values = {"name": item["name"], "scope": "personal" if item["owner"] else "shared",
                      **{f"body_{lang}": item["bodies"].get(lang, "") for lang in LANGUAGES},
                      "action_type": item["actions"].get("type", ""),
                      "action_activity": item["actions"].get("activity", ""),
                      "action_note": item["actions"].get("note", "")}
        return console.render("macros.html", request, {
            "macros": [dict(m, editable=editable(request, m)) for m in listed], "item": item,
            "errors": errors or {}, "values": values or {"scope": "personal"}, "languages": LANGUAGES,
            "types": list(CaseType), "activities": list(Activity), "may_share": user.can(Role.MANAGER),
            "max_body": MAX_BODY, "notice": _l(notice) if (notice := {"saved": N_("Canned response saved."),
                                                                          "deleted": N_("Canned response deleted.")}
                                                     .get(request.query.get("done", ""))) else None,
        }, status=status)

    def read(request: web.Request, form: Form) -> MacroInput:
        user = request[SESSION_KEY].user
        shared = form.text("scope", max_len=10) == "shared"
        if shared and not user.can(Role.MANAGER):
            raise ValidationError(_l("only managers share canned responses with the team"), field="scope")
        actions = {k: v for k, v in (("type", form.optional("action_type", max_len=40)),
                                     ("activity", form.optional("action_activity", max_len=40)),
                                     ("note", form.optional("action_note", max_len=MAX_BODY))) if v}
        return MacroInput(name=form.text("name", max_len=200), owner=None if shared else user.username,
                          bodies={lang: form.text(f"body_{lang}", max_len=MAX_BODY) for lang in LANGUAGES},
                          actions=actions)

    async def save(request: web.Request, item: dict[str, Any] | None) -> web.StreamResponse:
        form = await Form.read(request)
        try:
            new = read(request, form)
            if item is None:
                await macros.create(new)
            else:
                await macros.update(item["id"], new)
        except NotFound:
            raise
        except DomainError as exc:
            errors = {k.replace(".", "_"): v for k, v in domain_errors(exc, "name").items()}
            values = {k: form.text(k) for k in FIELDS}
            return await page(request, item=item, errors=errors, values=values, status=422)
        return see_other(f"{PREFIX}/macros?done=saved")

    async def own(request: web.Request) -> dict[str, Any]:
        try:
            item = await macros.get(int(request.match_info["id"]))
        except ValueError:
            raise NotFound(_l("no such canned response")) from None
        if not editable(request, item):
            raise NotFound(_l("no such canned response"))  # never say another agent's exists
        return item

    async def index(request: web.Request) -> web.StreamResponse:
        return await page(request)

    async def create(request: web.Request) -> web.StreamResponse:
        return await save(request, None)

    async def edit(request: web.Request) -> web.StreamResponse:
        return await page(request, item=await own(request))

    async def change(request: web.Request) -> web.StreamResponse:
        return await save(request, await own(request))

    async def remove(request: web.Request) -> web.StreamResponse:
        item = await own(request)
        await Form.read(request)
        await macros.delete(item["id"])
        return see_other(f"{PREFIX}/macros?done=deleted")

    router.add_get("/macros", index)
    router.add_post("/macros", create)
    router.add_get("/macros/{id:\\d+}", edit)
    router.add_post("/macros/{id:\\d+}", change)
    router.add_post("/macros/{id:\\d+}/delete", remove)
