"""Log in and out.

The login form has no session yet, so its CSRF protection is a double-submit cookie:
a random value in a cookie that must come back in the form (a cross-site page can make
the browser send the cookie, but cannot read it to fill the field). That stops an
attacker logging a victim into the attacker's account.
"""

from __future__ import annotations

import math
import secrets

from aiohttp import web

from intake.console.app import LOGIN_CSRF_COOKIE, PREFIX, SESSION_COOKIE, Console, public, see_other
from intake.console.auth import csrf_matches
from intake.console.forms import Form


def safe_next(value: str | None) -> str:
    """Only paths inside the console: never an open redirect to another site."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value \
            and not value.startswith(f"{PREFIX}/login"):
        return value
    return f"{PREFIX}/"


def register(router: web.UrlDispatcher, console: Console) -> None:
    def login_page(request: web.Request, *, status: int = 200, error: str | None = None,
                   username: str = "", next_path: str | None = None) -> web.Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = console.render("login.html", request, {
            "error": error, "username": username, "login_csrf": token,
            "next": safe_next(next_path if next_path is not None else request.query.get("next")),
        }, status=status)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, path=f"{PREFIX}/", httponly=True, samesite="Strict",
                            secure=console.secure_cookies, max_age=3600)
        return response

    @public
    async def login_form(request: web.Request) -> web.StreamResponse:
        if await console.sessions.resolve(request.cookies.get(SESSION_COOKIE)):
            return see_other(safe_next(request.query.get("next")))
        return login_page(request)

    @public
    async def login(request: web.Request) -> web.StreamResponse:
        form = await Form.read(request)
        username = form.text("username", max_len=200).strip()
        password = form.text("password", max_len=2000)
        next_path = form.text("next", max_len=2000)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not cookie or not csrf_matches(cookie, form.text("_csrf", max_len=200)):
            return login_page(request, status=403, username=username,
                              error="The login form expired. Please try again.", next_path=next_path)
        address = console.client_addresses.of(request)
        wait = console.throttle.retry_after(address, username)
        if wait > 0:
            console.audit.refused(username, address, wait=wait)
            response = login_page(request, status=429, username=username,
                                  error=f"Too many failed attempts. Try again in {_duration(wait)}.",
                                  next_path=next_path)
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        user = await console.users.authenticate(username, password)
        if user is None:
            console.audit.failed(username, address, wait=console.throttle.failed(address, username))
            return login_page(request, status=401, username=username, error="Wrong username or password.",
                              next_path=next_path)
        console.throttle.succeeded(address, username)
        console.audit.succeeded(username, address)
        # A fresh token on every login: a cookie planted before login is worth nothing.
        token, _session = await console.sessions.create(user)
        response = see_other(safe_next(next_path))
        console.set_session_cookie(response, token)
        response.del_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/")
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        await console.sessions.delete(request.cookies.get(SESSION_COOKIE))
        response = see_other(f"{PREFIX}/login")
        console.clear_session_cookie(response)
        return response

    async def home(request: web.Request) -> web.StreamResponse:
        return see_other(f"{PREFIX}/inbox")

    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_get("/", home)


def _duration(seconds: float) -> str:
    """The delays grow from a second to a quarter of an hour: say them in the right unit."""
    if seconds < 90:
        whole = math.ceil(seconds)
        return f"{whole} second" if whole == 1 else f"{whole} seconds"
    return f"{math.ceil(seconds / 60)} minutes"
