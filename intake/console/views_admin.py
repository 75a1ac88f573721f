"""Admins manage console users: create, change role, deactivate, reset a password."""

from __future__ import annotations

from aiohttp import web

from core.errors import DomainError, NotFound
from intake.console.app import SESSION_KEY, PREFIX, Console, requires, see_other
from intake.console.auth import Role
from intake.console.forms import Form, domain_errors
from intake.console.i18n import N_, _l

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

    router.add_get("/admin/users", users_page)
    router.add_post("/admin/users", create_user)
    router.add_post("/admin/users/{id:\\d+}", update_user)
    router.add_post("/admin/users/{id:\\d+}/password", reset_password)
