"""Declare each API operation once: its route, auth and its OpenAPI description.

The document at /api/v1/openapi.json is generated from the same declarations that
register the handlers, so it cannot list a route the server lacks or miss one it has;
tests validate real responses against the declared schemas.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from intake.http import Handler, error_response

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
#: Where the API's bearer tokens come from: named by the 401 body and by serve's warning.
TOKEN_SETTING = "POSVENTA_API_TOKENS or [api] tokens"
UNAUTHORIZED = f"a valid bearer token is required (the server's tokens are set by {TOKEN_SETTING})"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    handler: Handler
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    status: int = 200
    params: tuple[dict[str, Any], ...] = ()
    content_type: str = "application/json"
    description: str | None = None


@dataclass
class ApiRegistry:
    title: str = "posventa API"
    version: str = "1"
    operations: list[Operation] = field(default_factory=list)
    schemas: dict[str, Any] = field(default_factory=dict)

    def add(self, method: str, path: str, handler: Handler, *, summary: str, tag: str,
            request: dict[str, Any] | None = None, response: dict[str, Any] | None = None, status: int = 200,
            params: Sequence[dict[str, Any]] = (), content_type: str = "application/json",
            description: str | None = None) -> None:
        self.operations.append(Operation(method.upper(), path, summary, tag, handler, request, response, status,
                                         tuple(params), content_type, description))

    def document(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "tags": [op.tag],
                "security": [{"bearer": []}],
                "responses": {
                    str(op.status): {"description": "OK",
                                     **({"content": {op.content_type: {"schema": op.response}}} if op.response else {})},
                    "401": {"description": "missing or bad bearer token", "content": _ERROR_CONTENT},
                    "400": {"description": "bad JSON or parameters", "content": _ERROR_CONTENT},
                },
            }
            if op.description:
                entry["description"] = op.description
            if "{" in op.path:
                entry["responses"]["404"] = {"description": "unknown id", "content": _ERROR_CONTENT}
            if op.request is not None:
                entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.request}}}
                entry["responses"]["422"] = {"description": "invalid field", "content": _ERROR_CONTENT}
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "integer"}}
                      for n in _path_params(op.path)] + list(op.params)
            if params:
                entry["parameters"] = params
            paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "servers": [{"url": "/"}],
            "paths": paths,
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                "schemas": {"Error": ERROR_SCHEMA, **self.schemas},
            },
        }

    def install(self, app: web.Application, *, tokens: Sequence[str]) -> None:
        if not tokens:
            # Once, at start: otherwise the first sign is a 401 on a request that looks right.
            log.warning("no API token is configured: the API answers 401 to everyone: set %s", TOKEN_SETTING)
        token_bytes = [t.encode() for t in tokens]

        def guarded(handler: Handler) -> Handler:
            async def wrapper(request: web.Request) -> web.StreamResponse:
                header = request.headers.get("Authorization", "")
                scheme, _, supplied = header.partition(" ")
                ok = scheme.lower() == "bearer" and supplied and any(
                    hmac.compare_digest(supplied.encode(), t) for t in token_bytes)
                if not ok:
                    return error_response(401, "unauthorized", UNAUTHORIZED)
                return await handler(request)

            return wrapper

        for op in self.operations:
            app.router.add_route(op.method, PREFIX + op.path, guarded(op.handler))

        async def openapi(_request: web.Request) -> web.Response:
            return web.json_response(self.document())

        app.router.add_get(PREFIX + "/openapi.json", openapi)


def _path_params(path: str) -> list[str]:
    return [seg[1:-1] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "field": {"type": ["string", "null"]}},
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def query_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
