"""Admins manage console users (create, change role, deactivate, reset a password) and the
business-hours calendars (core/calendars.py)."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from posventa.core.business_hours import WEEKDAYS
from posventa.core.errors import DomainError, NotFound
from posventa.intake.console.app import SESSION_KEY, PREFIX, Console, requires, see_other
from posventa.intake.console.auth import Role
from posventa.intake.console.forms import Form, domain_errors
from posventa.intake.console.i18n import N_, _l

NOTICES = {"created": N_("User created."), "updated": N_("User updated."),
           "password": N_("Password changed; their sessions ended.")}


def register(router: web.UrlDispatcher, console: Console) -> None:
    async def render(request: web.Request, *, errors: dict[str, str] | None = None,
                     values: dict[str, str] | None = None, row_errors: dict[int, dict[str, str]] | None = None,
                     status: int = 200) -> web.Response:
        return console.render("admin_users.html", request, {
            "users": await console.users.list(), "roles": list(Role), "errors": errors or {},
            "values": values or {}, "row_errors": row_errors or {},
            "notice": console.locales.gettext(NOTICES[done]) if (done := request.query.get("done", "")) in NOTICES else None,
        }, status=status)

    @requires(Role.ADMIN)
    async def users_page(request: web.Request) -> web.StreamResponse:
        return await render(request)

    @requires(Role.ADMIN)
    async def create_user(request: web.Request) -> web.StreamResponse:
        form = await Form.read(request)
        try:
            await console.users.create(form.text("username", max_len=200), form.text("password", max_len=2000),
                                       role=form.text("role", max_len=20),
                                       display_name=form.optional("display_name", max_len=200))
        except DomainError as exc:
            values = {k: form.text(k, max_len=200) for k in ("username", "display_name", "role")}
            return await render(request, errors=domain_errors(exc, "username"), values=values, status=422)
        return see_other(f"{PREFIX}/admin/users?done=created")

    def user_id(request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise NotFound(_l("no such user")) from None

    @requires(Role.ADMIN)
    async def update_user(request: web.Request) -> web.StreamResponse:
        uid = user_id(request)
        form = await Form.read(request)
        me = request[SESSION_KEY].user
        active = form.text("active", max_len=5)
        try:
            if uid == me.id and active == "0":
                raise DomainError(_l("you cannot deactivate yourself"))
            await console.users.update(uid, role=form.optional("role", max_len=20),
                                       active=None if active == "" else active == "1",
                                       display_name=form.text("display_name", max_len=200)
                                       if "display_name" in form.data else None)
        except NotFound:
            raise
        except DomainError as exc:
            return await render(request, row_errors={uid: domain_errors(exc, "role")}, status=422)
        return see_other(f"{PREFIX}/admin/users?done=updated")

    @requires(Role.ADMIN)
    async def reset_password(request: web.Request) -> web.StreamResponse:
        uid = user_id(request)
        form = await Form.read(request)
        try:
            await console.users.set_password(uid, form.text("password", max_len=2000))
        except NotFound:
            raise
        except DomainError as exc:
            return await render(request, row_errors={uid: domain_errors(exc, "password")}, status=422)
        return see_other(f"{PREFIX}/admin/users?done=password")

    # --- business-hours calendars -----------------------------------------------------------

    async def render_calendars(request: web.Request, *, errors: dict[str, str] | None = None,
                               submitted: dict[str, str] | None = None, status: int = 200) -> web.Response:
        if console.calendars is None:
            raise NotFound(_l("calendars are not editable here"))
        rows = [{**c, **{key: _joined(key, c[key]) for key in LIST_FIELDS}} for c in await console.calendars.list()]
        if submitted is not None and not any(r["name"] == submitted["name"] for r in rows):
            rows.append({**submitted, "edited": False})
        return console.render("admin_calendars.html", request, {
            "calendars": rows, "weekdays": WEEKDAYS, "errors": errors or {}, "submitted": submitted,
            "saved": request.query.get("saved"),
        }, status=status)

    @requires(Role.ADMIN)
    async def calendars_page(request: web.Request) -> web.StreamResponse:
        return await render_calendars(request)

    @requires(Role.ADMIN)
    async def save_calendar(request: web.Request) -> web.StreamResponse:
        if console.calendars is None:
            raise NotFound(_l("calendars are not editable here"))
        form = await Form.read(request)
        submitted = {key: form.text(key, max_len=20_000) for key in ("name", "timezone", "country", "subdivision",
                                                                     *LIST_FIELDS)}
        data = {key: submitted[key] for key in ("timezone", "country", "subdivision")}
        # Spans are separated by commas (or lines); days by lines (or commas).
        data.update({key: [v for v in re.split(r"[,\n]", submitted[key]) if v.strip()] for key in LIST_FIELDS
                     if key != "open_days"})
        data["open_days"] = [v for v in submitted["open_days"].split("\n") if v.strip()]
        try:
            await console.calendars.save(submitted["name"], data, actor=request[SESSION_KEY].user.username)
        except DomainError as exc:
            return await render_calendars(request, errors=domain_errors(exc, "name"), submitted=submitted,
                                          status=422)
        return see_other(f"{PREFIX}/admin/calendars?saved={quote(submitted['name'].strip())}")

    router.add_get("/admin/calendars", calendars_page)
    router.add_post("/admin/calendars", save_calendar)
    router.add_get("/admin/users", users_page)
    router.add_post("/admin/users", create_user)
    router.add_post("/admin/users/{id:\\d+}", update_user)
    router.add_post("/admin/users/{id:\\d+}/password", reset_password)


#: A calendar's fields that are lists: the weekdays' spans, and the custom days.
LIST_FIELDS = (*WEEKDAYS, "closed_days", "open_days")


def _joined(key: str, values: list[str]) -> str:
    """A list field as its form input shows it: spans on one line, days one per line."""
    return ", ".join(values) if key in WEEKDAYS else "\n".join(values)
