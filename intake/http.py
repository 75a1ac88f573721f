"""The one aiohttp server: health, metrics, error mapping, and a place for every
adapter's routes. The service owns the loop: we use AppRunner, never ``web.run_app``."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from posventa.core.config import Network, parse_networks
from posventa.core.errors import (
    Conflict,
    DomainError,
    InvalidTransition,
    NotFound,
    StaleReply,
    StorageUnavailable,
    ValidationError,
)
from posventa.core.uploads import EMPTY, TOO_LARGE, TYPE_REFUSED, UploadRefused
from posventa.core.workflow import MissingCaseType

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Ids, limits and offsets end up as bound parameters of BIGINT columns; a larger number
#: made the driver raise OverflowError (a 500) instead of a clear 404/422.
DB_INT_MIN, DB_INT_MAX = -(2**63), 2**63 - 1


def fits_db_int(value: int) -> bool:
    return DB_INT_MIN <= value <= DB_INT_MAX


@dataclass(frozen=True, slots=True)
class ClientAddresses:
    """The one rule for "which address is this client at", for every door that limits or
    allows by address (console logins, the web chat, ``/metrics``).

    ``X-Forwarded-For`` is believed only when the TCP peer is a trusted proxy: anyone
    else can write any address there. Behind a chain of trusted proxies the header is
    read from the right (each proxy appends the address it saw), skipping trusted hops;
    the first address that is not a trusted proxy is the client. A malformed entry
    stops the walk: what is left of it was written by the client, not by a proxy.
    """

    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> ClientAddresses:
        return cls(trusted_proxies=parse_networks(cidrs))

    def of(self, request: web.Request) -> str:
        return self.resolve(request.remote, request.headers.getall("X-Forwarded-For", ()))

    def resolve(self, peer: str | None, forwarded: Sequence[str]) -> str:
        client = _parse_address(peer)
        if client is None:
            return "unknown"  # a unix socket, or a peer already gone
        if not self.is_trusted(client):
            return str(client)
        hops = [hop for value in forwarded for hop in value.split(",")]
        for hop in reversed(hops):
            address = _parse_address(hop)
            if address is None:
                break
            client = address
            if not self.is_trusted(client):
                break
        return str(client)

    def is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.trusted_proxies)


def address_in(address: str, networks: Sequence[Network]) -> bool:
    """Whether an address from ``ClientAddresses`` lies in one of ``networks``."""
    parsed = _parse_address(address)
    return parsed is not None and any(parsed in network for network in networks)


def _parse_address(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip()[:64])
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; compare them as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may read ``/metrics``: a client address in ``allow_from`` or the bearer ``token``."""

    addresses: ClientAddresses
    allow_from: tuple[Network, ...] = ()
    token: str = ""

    def allows(self, request: web.Request) -> bool:
        if address_in(self.addresses.of(request), self.allow_from):
            return True
        given = request.headers.get("Authorization", "")
        return bool(self.token) and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                        f"Bearer {self.token}".encode())


def error_response(status: int, code: str, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


#: A refused file's status, by reason (the error code is the reason).
UPLOAD_STATUS = {TOO_LARGE: 413, TYPE_REFUSED: 415, EMPTY: 422}


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors become JSON with the right status; nothing leaks a traceback."""
    try:
        return await handler(request)
    except NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except UploadRefused as exc:
        log.info("%s %s: file refused: %s", request.method, request.path, exc)
        response = error_response(UPLOAD_STATUS[exc.reason], exc.reason, str(exc), field=exc.field)
        if exc.reason == TOO_LARGE:
            response.force_close()  # the rest of the file is never read
        return response
    except ValidationError as exc:
        return error_response(422, "invalid", str(exc), field=exc.field)
    except MissingCaseType as exc:
        return error_response(409, "type_required", str(exc), field=exc.field)
    except InvalidTransition as exc:
        return error_response(409, "invalid_transition", str(exc))
    except Conflict as exc:
        return error_response(409, "conflict", str(exc))
    except StaleReply as exc:
        return error_response(409, "stale_reply", str(exc), field=exc.field, newer=list(exc.newer),
                              latest_message_id=exc.latest)
    except DomainError as exc:
        return error_response(400, "bad_request", str(exc))
    except StorageUnavailable:
        return error_response(503, "unavailable", "storage is unavailable; try again later")
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400 and exc.content_type != "application/json":
            response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
            if "Allow" in exc.headers:  # a 405 says which methods the resource has (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error")


#: Stored files served as what they are; anything else is bytes to save (an HTML or SVG
#: file must never become a page of ours, even if a browser were asked to show it).
SERVED_AS_IS = ("image/", "application/pdf", "text/plain")


def file_headers(filename: str, content_type: str, *, inline: bool = False) -> dict[str, str]:
    """Headers for a stored (untrusted) file: a download unless ``inline`` (the caller
    allows that for images only), its real type when harmless, never sniffed, sandboxed."""
    served = content_type if content_type.startswith(SERVED_AS_IS) else "application/octet-stream"
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return {
        "Content-Type": served,
        "Content-Disposition": f"{'inline' if inline else 'attachment'}; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(filename, safe='')}",
        "X-Content-Type-Options": "nosniff",
        # Even a file the browser renders gets no script and no access to our origin.
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
    }


async def stream_csv(request: web.Request, chunks: AsyncIterator[str], *, filename: str,
                     byte_order_mark: bool = False, headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """A CSV download written as it is produced. A client that goes away in the middle (a
    closed tab, a cancelled download) is an ordinary event: one line at info, no traceback."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"',
        **(headers or {}),
    })
    sent = 0
    # aclosing: the generator's database connection is given back even when we stop early.
    async with contextlib.aclosing(chunks):
        try:
            await response.prepare(request)
            if byte_order_mark:
                await response.write("\ufeff".encode())
            async for chunk in chunks:
                data = chunk.encode("utf-8")
                await response.write(data)
                sent += len(data)
            await response.write_eof()
        # "Connection lost" while waiting to drain, or a reset on the next write (aiohttp's
        # ClientConnectionResetError): both are ConnectionErrors.
        except ConnectionError:
            log.info("CSV export %s: the client disconnected after %d bytes", filename, sent)
    return response


async def read_json_object(request: web.Request) -> dict:
    """The request body as a JSON object, or 400 with a message."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json", "message": "body is not valid JSON"}),
                                 content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json", "message": "body must be a JSON object"}),
                                 content_type="application/json")
    return data


def build_app(*, registry: CollectorRegistry, max_body_bytes: int, metrics_access: MetricsAccess,
              before_metrics: Callable[[], Awaitable[None]] | None = None,
              health: Callable[[], Awaitable[dict]] | None = None) -> web.Application:
    app = web.Application(middlewares=[api_errors], client_max_size=max_body_bytes)

    async def healthz(_request: web.Request) -> web.Response:
        try:
            info = await health() if health else {}
        except Exception as exc:
            log.warning("health check failed: %s", type(exc).__name__)
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok", **info})

    async def metrics(request: web.Request) -> web.Response:
        if not metrics_access.allows(request):
            log.info("metrics refused to %s", metrics_access.addresses.of(request))
            if metrics_access.token:
                return web.Response(status=401, text="a bearer token is required",
                                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
            return web.Response(status=403, text="not allowed from this address")
        if before_metrics is not None:
            try:
                await before_metrics()
            except Exception as exc:  # metrics must answer even when the database does not
                log.warning("metrics refresh failed: %s", type(exc).__name__)
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


class HttpServer:
    """Start/stop around an ``AppRunner`` on the service's own loop."""

    def __init__(self, *, app: web.Application, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def path_id(request: web.Request, name: str) -> int:
    """An integer id from the URL path; anything else, or an id no row can have, is 404."""
    try:
        number = int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None
    if not fits_db_int(number):
        raise web.HTTPNotFound()
    return number


def int_param(value: object, name: str, *, required: bool = False) -> int | None:
    """An optional integer from a query string or JSON body; a clear 422 otherwise."""
    if value is None or value == "":
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return None
    if isinstance(value, bool):
        raise ValidationError(f"{name} must be an integer", field=name)
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be an integer", field=name) from None
    if not fits_db_int(number):
        raise ValidationError(f"{name} is out of range", field=name)
    return number
