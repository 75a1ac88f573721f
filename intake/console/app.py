"""The console as an aiohttp sub-application at ``/console``: templates, static files,
and the guard every request passes (session, role, CSRF, security headers).

Pages render on the server with Jinja2 (autoescape on for every template), so user text
is escaped in exactly one place. JavaScript only enhances: every form works without it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
import markupsafe
from aiohttp import web
from prometheus_client import CollectorRegistry

from posventa.core.assignment import Assigner
from posventa.core.attachments import AttachmentStore
from posventa.core.calendars import CalendarEditor
from posventa.core.uploads import PREVIEW_TYPES
from posventa.core.cases import CaseService
from posventa.core.contacts.organizations import OrganizationService
from posventa.core.contacts.service import ContactService
from posventa.core.errors import DomainError, NotFound, StorageUnavailable
from posventa.core.kb_images import KbImages
from posventa.core.message_files import MessageFiles
from posventa.core.tasks import Periodic
from posventa.core.macros import MacroService
from posventa.core.message_files import MessageFiles
from posventa.core.read_models import ReadModels
from posventa.core import Database
from posventa.core.ports import Clock
from posventa.core.sla_report import SlaReports
from posventa.intake.console.auth import (
    LoginAudit,
    LoginThrottle,
    Passwords,
    Role,
    SecondFactor,
    Session,
    SessionStore,
    User,
    UserStore,
    csrf_matches,
)
from posventa.intake.console.contact_texts import erased_text, history_text, history_value, person
from posventa.intake.console.forms import form_fields, message_of, multipart_csrf
from posventa.intake.console.i18n import ConsoleLocales, ConsoleText, _l, refusal
from posventa.intake.console.labels import LABELS, label
from posventa.intake.console.live import LiveUpdates
from posventa.intake.console.markdown import MarkdownRenderer
from posventa.intake.http import ClientAddresses

log = logging.getLogger(__name__)

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "pv_console"
LOGIN_CSRF_COOKIE = "pv_console_login"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: No inline script or style anywhere: an injected <script> would not run even if an
#: escaping bug let one through.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONSOLE_KEY: web.AppKey[Console] = web.AppKey("console", None)  # type: ignore[arg-type]
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("console_session", Session)


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Mark a handler with the least role that may call it (the guard checks it)."""
    def mark(handler: Handler) -> Handler:
        handler.console_role = role  # type: ignore[attr-defined]
        return handler
    return mark


def see_other(location: str) -> web.Response:
    """Post/Redirect/Get: a returned 303 (a raised HTTPException cannot carry our cookies
    as cleanly)."""
    return web.Response(status=303, headers={"Location": location})


def public(handler: Handler) -> Handler:
    handler.console_public = True  # type: ignore[attr-defined]
    return handler


def before_enrolment(handler: Handler) -> Handler:
    """Reachable by an admin who must enrol a second factor and has not yet."""
    handler.console_before_enrolment = True  # type: ignore[attr-defined]
    return handler


class Console:
    """Everything the console needs, handed in by the composition root."""

    def __init__(self, *, db: Database, cases: CaseService, macros: MacroService, attachments: AttachmentStore, clock: Clock,
                 public_url: str, passwords: Passwords | None = None, throttle: LoginThrottle | None = None,
                 company_name: str = "posventa", catalog: Any = None, panel: Any = None,
                 timezone: str = "UTC", live: LiveUpdates | None = None, default_language: str = "en",
                 client_addresses: ClientAddresses | None = None, registry: CollectorRegistry | None = None,
                 require_totp_for_admins: bool = False, kb_images: KbImages | None = None,
                 contacts: ContactService | None = None, organizations: OrganizationService | None = None,
                 assigner: Assigner | None = None, sla_reports: SlaReports | None = None,
                 calendars: CalendarEditor | None = None, files: MessageFiles,
                 read_models: ReadModels | None = None) -> None:
        self.db = db
        #: core.message_files' MessageFiles (the attachment downloads, and the files an agent
        #: attaches to a reply, taken by the upload rule) and core.read_models'
        #: ReadModels (the charts' counts, the case page's suggestions).
        self.files = files
        self.read_models = read_models or ReadModels(db=db)
        #: core.sla_report's SlaReports (the managers' SLA report page).
        self.sla_reports = sla_reports or SlaReports(db=db)
        self.cases = cases
        self.macros = macros
        #: The KB editor's pasted and uploaded images (stored like attachments).
        self.kb_images = kb_images or KbImages(db=db, files=attachments, clock=clock)
        self.markdown = MarkdownRenderer()
        #: core.contacts ContactService and OrganizationService (the contact pages).
        self.contacts = contacts
        self.organizations = organizations
        #: core.assignment's Assigner: the agent's own notification preferences (profile).
        self.assigner = assigner
        #: core.calendars' CalendarEditor: admins edit business-hours calendars.
        self.calendars = calendars
        #: core.surveys Catalog and Panel; None where surveys are not installed (the
        #: manager pages then say so instead of failing).
        self.catalog = catalog
        self.panel = panel
        self.tz = ZoneInfo(timezone)
        #: The console's languages (es, pt, en) and the request's choice of one. A browser
        #: that asks for none of them gets English, the language the console is written in.
        self.locales = ConsoleLocales(default_language=default_language, default_timezone=timezone)
        self.attachments = attachments
        self.clock = clock
        self.company_name = company_name
        self.passwords = passwords or Passwords()
        self.users = UserStore(db=db, clock=clock, passwords=self.passwords)
        self.sessions = SessionStore(db=db, clock=clock)
        self.throttle = throttle or LoginThrottle()
        self.audit = LoginAudit(registry=registry)
        self.second_factor = SecondFactor(db=db, clock=clock, issuer=company_name)
        #: Until an admin enrols, every page but the profile (and logging out) leads there.
        self.require_totp_for_admins = require_totp_for_admins
        #: The client's address (through trusted proxies only): what the login brake keys on.
        self.client_addresses = client_addresses or ClientAddresses()
        #: Open pages' event streams; the composition root hands in one that fans out
        #: across processes when there are several.
        self.live = live or LiveUpdates()
        parts = urlsplit(public_url)
        #: Secure cookies whenever agents reach us over HTTPS (TLS ends at a proxy, so the
        #: request itself may look like plain HTTP).
        self.secure_cookies = parts.scheme == "https"
        self._public_host = parts.netloc.lower()
        self.app = self._build()

    # --- lifecycle (a service component) ------------------------------------------------

    @property
    def periodic_jobs(self) -> tuple[Periodic, ...]:
        """Read by the service's /metrics."""
        return self.live.periodic_jobs

    def install(self, app: web.Application) -> None:
        app.add_subapp(PREFIX, self.app)

        async def to_console(_request: web.Request) -> web.Response:
            return see_other(f"{PREFIX}/")

        app.router.add_get(PREFIX, to_console)

    async def start(self) -> None:
        await self.live.start()

    async def stop(self) -> None:
        await self.live.stop()

    # --- building --------------------------------------------------------------------------

    def _build(self) -> web.Application:
        from posventa.intake.console import (views_admin, views_agent, views_auth, views_contacts, views_kb, views_macros,
                                    views_manager, views_reports)

        app = web.Application(middlewares=[self._locale, self._headers, self._errors, self._guard])
        app[CONSOLE_KEY] = self
        env = aiohttp_jinja2.setup(
            app,
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,  # every template, whatever its name: user text is always escaped
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
        )
        # {{ _("...") }} in the request's language (i18n.py); new style: %(name)s placeholders.
        env.install_gettext_callables(self.locales.gettext, self.locales.ngettext, newstyle=True)
        locales = self.locales
        env.filters.update(per_request_filters(locales, self.clock))
        env.filters.update({"filesize": _filesize, "urlq": _urlq, "safe_url": _safe_url, "highlight": _highlight,
                            "markdown": lambda text: markupsafe.Markup(self.markdown.render(text))})
        env.globals.update({"base": PREFIX, "LABELS": LABELS, "Role": Role, "PREVIEW_TYPES": PREVIEW_TYPES,
                            "current_language": lambda: locales.current.language,
                            "script_texts": locales.script_texts})
        app.router.add_static("/static/", HERE / "static", name="static", append_version=False)
        views_auth.register(app.router, self)
        views_agent.register(app.router, self)
        views_macros.register(app.router, self)
        views_kb.register(app.router, self)
        views_contacts.register(app.router, self)
        views_manager.register(app.router, self)
        views_reports.register(app.router, self)
        views_admin.register(app.router, self)
        return app

    def render(self, template: str, request: web.Request, context: dict[str, Any], *,
               status: int = 200) -> web.Response:
        """A page with what every page needs (who is logged in, their CSRF token)."""
        session = request.get(SESSION_KEY)
        base = {"request": request, "user": session.user if session else None,
                "csrf_token": session.csrf_token if session else "", "company": self.company_name}
        return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)

    def set_session_cookie(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, token, path=f"{PREFIX}/", httponly=True, samesite="Lax",
                            secure=self.secure_cookies, max_age=int(self.sessions.absolute.total_seconds()))

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path=f"{PREFIX}/", secure=self.secure_cookies, httponly=True,
                            samesite="Lax")

    # --- middlewares ---------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _secure_headers(exc.headers, static=False)
            raise
        _secure_headers(response.headers, static=request.path.startswith(f"{PREFIX}/static/"))
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Errors as pages in the console's look, never JSON or a traceback."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status in (400, 401, 403, 404, 405, 413, 429, 503):
                return self.error_page(request, exc.status, getattr(exc, "console_text", None) or exc.text or exc.reason,
                                       headers=exc.headers)
            raise
        except NotFound as exc:
            return self.error_page(request, 404, message_of(exc))
        except DomainError as exc:
            return self.error_page(request, 400, message_of(exc))
        except StorageUnavailable:
            return self.error_page(request, 503, _l("The database is unavailable. Try again in a moment."))
        except Exception:
            log.exception("console error on %s %s", request.method, request.path)
            return self.error_page(request, 500, _l("Something went wrong on our side."))

    def error_page(self, request: web.Request, status: int, message: str | ConsoleText, *,
                   headers: Any = None) -> web.Response:
        message = self.locales.translate(message)
        response = self.render("error.html", request, {"status": status, "message": message}, status=status)
        for key in ("Retry-After",):
            if headers and key in headers:
                response.headers[key] = headers[key]
        return response

    @web.middleware
    async def _locale(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The browser's language first; _guard refines it with the user's profile."""
        self.locales.use(self.locales.locale(self.locales.negotiate(request.headers.get("Accept-Language")), None))
        return await handler(request)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Session → role → CSRF, before any handler runs."""
        target = request.match_info.handler
        if request.path.startswith(f"{PREFIX}/static/") or getattr(target, "console_public", False):
            return await handler(request)
        session = await self.sessions.resolve(request.cookies.get(SESSION_COOKIE))
        if session is None:
            if request.method in SAFE_METHODS and request.headers.get("Accept", "") != "text/event-stream":
                return see_other(f"{PREFIX}/login?next={quote(request.path_qs, safe='')}")
            raise refusal(web.HTTPUnauthorized, _l("Your session has ended. Log in again."))
        request[SESSION_KEY] = session
        if session.user.language or session.user.timezone:
            # The profile's choice wins over the browser's (set before anything renders).
            self.locales.use(self.locales.locale(
                session.user.language or self.locales.current.language, session.user.timezone))
        needed: Role = getattr(target, "console_role", Role.AGENT)
        if not session.user.can(needed):
            raise refusal(web.HTTPForbidden, _l("This page is for the %(role)s role.", role=_l(label(needed.value))))
        if self.must_enrol(session.user) and not getattr(target, "console_before_enrolment", False):
            if request.method in SAFE_METHODS:
                return see_other(f"{PREFIX}/profile")
            raise refusal(web.HTTPForbidden, _l("Set up your second factor on your profile page first."))
        if request.method not in SAFE_METHODS:
            if not self.same_origin(request):
                raise refusal(web.HTTPForbidden, _l("Cross-site request refused."))
            given = request.headers.get(CSRF_HEADER)
            if given is None:
                if request.content_type == "multipart/form-data":
                    given = await multipart_csrf(request, CSRF_FIELD)
                else:
                    form = await form_fields(request) if request.content_type == \
                        "application/x-www-form-urlencoded" else {}
                    given = form.get(CSRF_FIELD)
            if not csrf_matches(session.csrf_token, given):
                raise refusal(web.HTTPForbidden, _l("The form expired or did not come from this console. "
                                                    "Reload the page and try again."))
        return await handler(request)

    def totp_required(self, user: User) -> bool:
        return self.require_totp_for_admins and user.role == Role.ADMIN

    def must_enrol(self, user: User) -> bool:
        return self.totp_required(user) and not user.totp

    def same_origin(self, request: web.Request) -> bool:
        """Browsers send Origin on every cross-site POST; when present it must be us."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser, or a same-origin GET-style navigation
        host = urlsplit(origin).netloc.lower()
        return bool(host) and host in {request.host.lower(), self._public_host}


def _secure_headers(headers: Any, *, static: bool) -> None:
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if static:
        headers.setdefault("Cache-Control", "public, max-age=3600")
        return
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    # Case pages hold customers' personal data: no shared or back-button caches.
    headers.setdefault("Cache-Control", "no-store")


def _per_render(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter Jinja must call at every render. Given a literal (``'breached'|label``),
    Jinja would otherwise call it once, when it compiles the template, and keep that
    first request's language (or that moment's time) for every later page."""

    @jinja2.pass_context
    def at_render(_context: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return at_render


def per_request_filters(locales: ConsoleLocales, clock: Clock) -> dict[str, Callable[..., Any]]:
    """The filters whose answer depends on the request (its language and time zone) or on
    the time: labels, translations, dates, numbers, countdowns."""
    filters: dict[str, Callable[..., Any]] = {
        "dt": locales.datetime, "dt_seconds": lambda value: locales.datetime(value, seconds=True),
        "date": locales.date, "number": locales.number, "label": lambda value: locales.gettext(label(value)),
        "tr": locales.translate, "countdown": lambda value: locales.countdown(value, clock.now()),
        "history_text": lambda entry: history_text(locales, entry),
        "history_value": lambda value, kind: history_value(locales, value, kind),
        "person": lambda name, contact_id=None: person(locales, name, contact_id),
        "erased_text": lambda text, erased: erased_text(locales, text, erased),
    }
    return {name: _per_render(fn) for name, fn in filters.items()}


def _highlight(match: dict[str, Any]) -> markupsafe.Markup:
    """A search snippet with its matched words in <mark>; the text itself stays escaped."""
    snippet, out, at = match["snippet"], [], 0
    for start, end in match["highlights"]:
        out += [markupsafe.escape(snippet[at:start]), markupsafe.Markup("<mark>"),
                markupsafe.escape(snippet[start:end]), markupsafe.Markup("</mark>")]
        at = end
    out.append(markupsafe.escape(snippet[at:]))
    return markupsafe.Markup("").join(out)


def _filesize(size: int | None) -> str:
    size = int(size or 0)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size} {unit}"
        size //= 1024
    return f"{size} GB"


def _safe_url(value: Any) -> str:
    """Links from stored data (KB posts) only as http(s): never ``javascript:``."""
    text = str(value or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else "#"


def _urlq(value: Any) -> str:
    return quote(str(value), safe="")
