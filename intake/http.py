"""The one aiohttp server: health, metrics, error mapping, and a place for every
adapter's routes. The service owns the loop: we use AppRunner, never ``web.run_app``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from core.errors import DomainError, InvalidTransition, NotFound, StorageUnavailable, ValidationError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Ids, limits and offsets end up as bound parameters of BIGINT columns; a larger number
#: made the driver raise OverflowError (a 500) instead of a clear 404/422.
DB_INT_MIN, DB_INT_MAX = -(2**63), 2**63 - 1


def fits_db_int(value: int) -> bool:
    return DB_INT_MIN <= value <= DB_INT_MAX


def error_response(status: int, code: str, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors become JSON with the right status; nothing leaks a traceback."""
    try:
        return await handler(request)
    except NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except ValidationError as exc:
        return error_response(422, "invalid", str(exc), field=exc.field)
    except InvalidTransition as exc:
        return error_response(409, "invalid_transition", str(exc))
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


def build_app(*, registry: CollectorRegistry, max_body_bytes: int,
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

    async def metrics(_request: web.Request) -> web.Response:
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
