"""Log in and out, and the user's own profile (the TOTP second factor).

The login form has no session yet, so its CSRF protection is a double-submit cookie:
a random value in a cookie that must come back in the form (a cross-site page can make
the browser send the cookie, but cannot read it to fill the field). That stops an
attacker logging a victim into the attacker's account.
"""

from __future__ import annotations

import logging
import math
import secrets

from aiohttp import web

from markupsafe import Markup

from posventa.core.errors import ValidationError
from posventa.core.notifications import EVENTS, NOTIFY_CHANNELS

from posventa.intake.console.app import (
    LOGIN_CSRF_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    SESSION_KEY,
    Console,
    before_enrolment,
    public,
    see_other,
)
from posventa.intake.console.auth import csrf_matches
from posventa.intake.console.forms import Form, message_of
from posventa.intake.console.i18n import LANGUAGE_NAMES, _l

log = logging.getLogger(__name__)


def safe_next(value: str | None) -> str:
    """Only paths inside the console: never an open redirect to another site."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value \
            and not value.startswith(f"{PREFIX}/login"):
        return value
    return f"{PREFIX}/"


def register(router: web.UrlDispatcher, console: Console) -> None:
    def login_page(request: web.Request, *, status: int = 200, error: str | None = None,
                   username: str = "", next_path: str | None = None, ask_code: bool = False) -> web.Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = console.render("login.html", request, {
            "error": error, "username": username, "login_csrf": token, "ask_code": ask_code,
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
        code = form.text("code", max_len=20).replace(" ", "")
        next_path = form.text("next", max_len=2000)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not cookie or not csrf_matches(cookie, form.text("_csrf", max_len=200)):
            return login_page(request, status=403, username=username,
                              error=_l("The login form expired. Please try again."), next_path=next_path)
        address = console.client_addresses.of(request)
        wait = console.throttle.retry_after(address, username)
        if wait > 0:
            console.audit.refused(username, address, wait=wait)
            response = login_page(request, status=429, username=username,
                                  error=_l("Too many failed attempts. Try again in %(wait)s.", wait=console.locales.duration(wait)),
                                  next_path=next_path)
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        user = await console.users.authenticate(username, password)
        if user is not None and user.totp:
            if not code:
                # The password was right: ask for the second factor (not a failure). The
                # browser re-sends the password with the code; it is never put in the page.
                return login_page(request, status=401, username=username, next_path=next_path, ask_code=True,
                                  error=_l("Enter the 6-digit code from your authenticator app."))
            if not await console.second_factor.verify(user.id, code):
                console.audit.failed(username, address, wait=console.throttle.failed(address, username))
                return login_page(request, status=401, username=username, next_path=next_path, ask_code=True,
                                  error=_l("Wrong or already used code."))
        if user is None:
            console.audit.failed(username, address, wait=console.throttle.failed(address, username))
            return login_page(request, status=401, username=username, error=_l("Wrong username or password."),
                              next_path=next_path)
        console.throttle.succeeded(address, username)
        console.audit.succeeded(username, address)
        # A fresh token on every login: a cookie planted before login is worth nothing.
        token, _session = await console.sessions.create(user)
        response = see_other(safe_next(next_path))
        console.set_session_cookie(response, token)
        response.del_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/")
        return response

    @before_enrolment
    async def logout(request: web.Request) -> web.StreamResponse:
        await console.sessions.delete(request.cookies.get(SESSION_COOKIE))
        response = see_other(f"{PREFIX}/login")
        console.clear_session_cookie(response)
        return response

    async def home(request: web.Request) -> web.StreamResponse:
        return see_other(f"{PREFIX}/inbox")

    async def profile_page(request: web.Request, *, status: int = 200, error: str | None = None,
                     message: str | None = None, secret: str | None = None,
                     locale_errors: dict[str, str] | None = None) -> web.Response:
        user = request[SESSION_KEY].user
        context: dict[str, object] = {"error": error, "message": message, "must_enrol": console.must_enrol(user),
                                      "languages": LANGUAGE_NAMES, "locale_errors": locale_errors or {},
                                      "locale_saved": request.query.get("locale") == "1",
                                      "can_remove": user.totp and not console.totp_required(user),
                                      "enrolled_now": request.query.get("enrolled") == "1",
                                      "notify_saved": request.query.get("notify") == "1",
                                      "notify": None, "events": EVENTS, "notify_channels": NOTIFY_CHANNELS}
        if console.assigner is not None:
            context["notify"] = (await console.assigner.get_agent(user.id))["notify"]
        if not user.totp:
            # A new secret each time the page is drawn; it is stored only once a code from
            # the app proves the app has it (POST /profile/totp).
            secret = secret or console.second_factor.new_secret()
            uri = console.second_factor.enrolment_uri(secret, user.username)
            # segno draws paths only (no text from the URI): safe to put in the page as is.
            context.update(secret=secret, qr=Markup(console.second_factor.qr_svg(uri)))
        return console.render("profile.html", request, context, status=status)

    @before_enrolment
    async def profile(request: web.Request) -> web.StreamResponse:
        return await profile_page(request)

    @before_enrolment
    async def enrol(request: web.Request) -> web.StreamResponse:
        user = request[SESSION_KEY].user
        form = await Form.read(request)
        secret = form.text("secret", max_len=64).strip()
        code = form.text("code", max_len=20).replace(" ", "")
        if user.totp:
            return await profile_page(request, status=409, error=_l("A second factor is already set up."))
        address = console.client_addresses.of(request)
        # Codes guessed here are guesses like at the login form: the same brake.
        wait = console.throttle.retry_after(address, user.username)
        if wait > 0:
            console.audit.refused(user.username, address, wait=wait)
            response = await profile_page(request, status=429, secret=secret,
                                    error=_l("Too many wrong codes. Try again in %(wait)s.", wait=console.locales.duration(wait)))
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        if not await console.second_factor.enrol(user.id, secret, code):
            console.throttle.failed(address, user.username)
            return await profile_page(request, status=422, secret=secret,
                                error=_l("That code does not match. Check the time on your phone and try the next one."))
        log.info("console: %r enrolled a TOTP second factor", user.username)
        return see_other(f"{PREFIX}/profile?enrolled=1")

    async def remove(request: web.Request) -> web.StreamResponse:
        user = request[SESSION_KEY].user
        form = await Form.read(request)
        if console.totp_required(user):
            return await profile_page(request, status=403, error=_l("Admins must keep a second factor here."))
        if not user.totp:
            return see_other(f"{PREFIX}/profile")
        address = console.client_addresses.of(request)
        wait = console.throttle.retry_after(address, user.username)
        if wait > 0:
            response = await profile_page(request, status=429, error=_l("Too many wrong codes. Try again in %(wait)s.", wait=console.locales.duration(wait)))
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        # A current code, so a session left open on someone else's screen cannot remove it.
        if not await console.second_factor.verify(user.id, form.text("code", max_len=20).replace(" ", "")):
            console.throttle.failed(address, user.username)
            return await profile_page(request, status=422, error=_l("Wrong or already used code."))
        await console.users.remove_second_factor(user.id, end_sessions=False)
        log.info("console: %r removed their TOTP second factor", user.username)
        return see_other(f"{PREFIX}/profile")

    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_get("/", home)
    @before_enrolment
    async def set_locale(request: web.Request) -> web.StreamResponse:
        form = await Form.read(request)
        user = request[SESSION_KEY].user
        try:
            await console.users.set_locale(user.id, language=form.optional("language", max_len=5),
                                           timezone=form.optional("timezone", max_len=64))
        except ValidationError as exc:
            return await profile_page(request, status=422, locale_errors={exc.field or "language": message_of(exc)})
        return see_other(f"{PREFIX}/profile?locale=1")

    @before_enrolment
    async def set_notify(request: web.Request) -> web.StreamResponse:
        """The agent's own notification preferences: one checkbox per event and channel
        (an unchecked box is not sent, so every box not sent is off)."""
        if console.assigner is None:
            raise web.HTTPNotFound()
        form = await Form.read(request)
        chosen = {event: {channel: form.text(f"notify.{event}.{channel}", max_len=5) == "on"
                          for channel in NOTIFY_CHANNELS} for event in EVENTS}
        await console.assigner.update_agent(request[SESSION_KEY].user.id, notify=chosen)
        return see_other(f"{PREFIX}/profile?notify=1#notifications")

    router.add_get("/profile", profile)
    router.add_post("/profile/notify", set_notify)
    router.add_post("/profile/locale", set_locale)
    router.add_post("/profile/totp", enrol)
    router.add_post("/profile/totp/remove", remove)

