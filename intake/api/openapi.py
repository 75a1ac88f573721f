"""Declare each API operation once: its route, auth, the rules its input must meet, and
its OpenAPI description.

The document at /api/v1/openapi.json is generated from the same declarations that
register the handlers and that validate every request before a handler runs, so the
description cannot drift from what the server does: a constraint is enforced because it
is declared, and every status an operation can answer is listed with the shared
``Error`` body. ``tests/core/test_api_conformance.py`` runs schemathesis over the running
service and fails on any mismatch.

Declaring a new endpoint (so that it passes the schemathesis test)
-----------------------------------------------------------------

1. Register it with ``api.add(method, path, handler, summary=..., tag=..., ...)`` in a
   ``register(api, ...)`` function under intake/api/, called from service.py. Never add
   an /api/v1 route to the aiohttp router directly.
2. Query parameters: ``params=[query_param(name, schema), ...]``. Use the schema
   builders below (``text()``, ``line()``, ``integer()``, ``ID``, ``enum(...)``, ``DATE``):
   a string parameter is never empty (``minLength: 1``), and an empty or malformed value
   is a 422 naming the parameter. Read the checked, typed values (``DATE`` gives a
   ``date``) with ``query(request)``, never from ``request.query``.
3. A JSON body: ``request=<JSON Schema>``, read with ``body(request)``. State every rule
   the core enforces: lengths (``text(max_len)`` also refuses blank strings and NUL, as
   core's ``_text`` does), enums, minimums/maximums, ``additionalProperties: False`` when
   core refuses unknown fields, ``required``. Give every ``pattern`` a ``maxLength``: it
   is only checked within it, which keeps a backtracking pattern's cost bounded. A
   request the schema accepts must not be refused with 422 unless the refusal depends on
   stored state or on a rule JSON Schema cannot say; name those in ``errors={422:
   "why"}``, which also tells the test that such a 422 is expected.
4. Path ids: ``/things/{id}``; they are integers, and a non-integer or unknown id is 404
   (declared automatically). Read them with ``path_id(request, "id")``. A path parameter
   that is a name (``/calendars/{name}``): ``path_schemas={"name": <schema>}``; a segment
   the schema refuses is 404 too. Read it from ``request.match_info``.
5. Other statuses the handler (or core) can answer: ``errors={409: "when ..."}``.
   401, 503, and (with a body) 400 and 413 are declared for every operation.
   A body that may also come as ``multipart/form-data`` with files (a reply's
   attachments): ``files=FileParts(...)``; the text parts are checked by the same JSON
   schema (a number field's digits become the number), each file part is read as it
   arrives by ``FileParts.take``, and the handler reads them with ``files(request)``.
6. A success response that is not JSON: ``content_type=`` for the only one, or
   ``alternatives={"text/csv": {"type": "string"}}`` for an extra one (``format=csv``).
   A response without a body (204): leave ``response`` out.
7. Run ``pytest tests/core/test_api_conformance.py`` (about a minute): 0 failures.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import unquote

import jsonschema
from aiohttp import multipart as aiohttp_multipart
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp import web

from posventa.core.errors import ValidationError
from posventa.intake.http import DB_INT_MAX, Handler, error_response, path_id, read_json_object

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
#: Where the API's bearer tokens come from: named by the 401 body and by serve's warning.
TOKEN_SETTING = "POSVENTA_API_TOKENS or [api] tokens"
UNAUTHORIZED = f"a valid bearer token is required (the server's tokens are set by {TOKEN_SETTING})"

# --- schema builders: the constraints the core enforces, stated once ---------------------

#: Said with "not" rather than one pattern: a pattern over a long string makes test data
#: generation crawl (seconds per example at 100 000 characters).
_BLANK = {"pattern": r"^\s*$"}
_NUL = {"pattern": r"\x00"}
_CONTROL = {"pattern": r"[\x00-\x1f]"}
#: What core's text checks (``_text``, catalog ``_str``) refuse: blank, or a NUL
#: (PostgreSQL text cannot hold it); the sales import also refuses control characters.
NOT_BLANK_NOR_NUL = {"anyOf": [_BLANK, _NUL]}
NOT_BLANK_NOR_CONTROL = {"anyOf": [_BLANK, _CONTROL]}
_NOT_MESSAGES = [(NOT_BLANK_NOR_NUL, "must not be blank nor contain NUL"), (_NUL, "must not contain NUL"),
                 (NOT_BLANK_NOR_CONTROL, "must be one line, not blank"), (_CONTROL, "must be one line")]
#: Ids are BIGINT keys; no row has an id outside 1..2**63-1.
ID = {"type": "integer", "minimum": 1, "maximum": DB_INT_MAX}
DATE = {"type": "string", "format": "date"}


def text(max_len: int, *, blank: bool = False, nullable: bool = False) -> dict[str, Any]:
    """A string of at most ``max_len`` characters without NUL; not blank unless ``blank``."""
    return _string(max_len, _NUL if blank else NOT_BLANK_NOR_NUL, blank=blank, nullable=nullable)


def line(max_len: int, *, blank: bool = False, nullable: bool = False) -> dict[str, Any]:
    """A one-line string: no control characters (what the sales import refuses)."""
    return _string(max_len, _CONTROL if blank else NOT_BLANK_NOR_CONTROL, blank=blank, nullable=nullable)


def _string(max_len: int, refused: dict[str, Any], *, blank: bool, nullable: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_len, "not": refused}
    if not blank:
        schema["minLength"] = 1
    if nullable:
        # Not one schema with "type": ["string", "null"]: its "not" (a pattern) would pass
        # for null, since a pattern holds for anything that is not a string, and refuse it.
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def integer(minimum: int | None = None, maximum: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def enum(values: Iterable[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def query_param(name: str, schema: dict[str, Any], description: str = "", *,
                required: bool = False) -> dict[str, Any]:
    """A query parameter. A string one is never empty: ``?to=`` is a 422 naming ``to``."""
    if schema.get("type") == "string" and "enum" not in schema:
        schema = {"minLength": 1, **schema}
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


# --- the error body and the statuses every operation shares ----------------------------

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                   "field": {"type": ["string", "null"], "description": "the parameter or field at fault"}},
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_ALWAYS = {401: "missing or bad bearer token",
           503: "the database is unavailable; try again later"}
_WITH_BODY = {400: "the body is not a JSON object",
              413: "the body is larger than [http] max_body_bytes",
              422: "a field is invalid; `field` names it"}
_WITH_QUERY = {422: "a parameter is invalid or empty; `field` names it"}
_WITH_PATH = {404: "no such id"}
_ADMIN_ONLY = {403: "the token is not one of [api] admin_tokens"}


@dataclass(frozen=True)
class FileParts:
    """A ``multipart/form-data`` form beside an operation's JSON body: its fields as text
    parts, and up to ``max_files`` parts named ``field`` that are files. ``take(chunks,
    filename, field)`` reads one file as it arrives and returns what the handler gets (or
    raises a ``ValidationError`` naming the field)."""

    field: str
    max_files: int
    take: Callable[[AsyncIterable[bytes], str | None, str], Awaitable[Any]]
    #: What the description says of each file (types, size).
    description: str = ""
    #: The JSON body's schema replaced for the form (e.g. files alone may suffice).
    schema: dict[str, Any] | None = None

    def form_schema(self, request: dict[str, Any]) -> dict[str, Any]:
        base = dict(self.schema if self.schema is not None else request)
        properties = dict(base.get("properties", {}))
        properties[self.field] = {"type": "array", "maxItems": self.max_files, "description": self.description,
                                  "items": {"type": "string", "format": "binary"}}
        return {**base, "properties": properties}


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
    #: Other content types of the success response (e.g. text/csv for format=csv).
    alternatives: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    #: Error statuses beyond the ones of the operation's shape, with when they happen.
    errors: Mapping[int, str] = field(default_factory=dict)
    #: Only a token of ``[api] admin_tokens`` may call it (a privacy erasure): 403 otherwise.
    admin: bool = False
    #: The body may also be a multipart/form-data form with files.
    files: FileParts | None = None
    #: Path parameters that are not ids (a calendar's name): their schema. A segment the
    #: schema refuses is a 404, as a malformed id is.
    path_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path_params(self) -> list[str]:
        return [seg[1:-1] for seg in self.path.split("/") if seg.startswith("{") and seg.endswith("}")]

    def error_statuses(self) -> dict[int, str]:
        """Every error status this operation can answer, with a description."""
        statuses = dict(_ALWAYS)
        if self.path_params:
            statuses.update(_WITH_PATH)
        if self.params:
            statuses.update(_WITH_QUERY)
        if self.request is not None:
            statuses.update(_WITH_BODY)
        if self.admin:
            statuses.update(_ADMIN_ONLY)
        for status, why in self.errors.items():
            statuses[status] = f"{statuses[status]}; or {why}" if status in statuses else why
        return dict(sorted(statuses.items()))

    def describe(self) -> dict[str, Any]:
        ok: dict[str, Any] = {"description": "OK"}
        if self.response is not None:
            ok["content"] = {self.content_type: {"schema": self.response},
                             **{ct: {"schema": s} for ct, s in self.alternatives.items()}}
        responses = {str(self.status): ok}
        for status, why in self.error_statuses().items():
            responses[str(status)] = {"description": why, "content": _ERROR_CONTENT}
        entry: dict[str, Any] = {"summary": self.summary, "tags": [self.tag], "security": [{"bearer": []}],
                                 "responses": responses}
        if self.description:
            entry["description"] = self.description
        if self.request is not None:
            content: dict[str, Any] = {"application/json": {"schema": self.request}}
            if self.files is not None:
                content["multipart/form-data"] = {"schema": self.files.form_schema(self.request)}
            entry["requestBody"] = {"required": True, "content": content}
        params = [{"name": n, "in": "path", "required": True, "schema": self.path_schemas.get(n, ID)}
                  for n in self.path_params]
        params += list(self.params)
        if params:
            entry["parameters"] = params
        return entry


# --- the one place a request is checked against its declaration ------------------------

_QUERY_KEY = web.RequestKey("posventa.api.query", dict)
_BODY_KEY = web.RequestKey("posventa.api.body", dict)
_FILES_KEY = web.RequestKey("posventa.api.files", list)
#: Text parts of a form: each at most this many bytes (the form's files are bounded by
#: their own rule), and at most this many of them.
MAX_FORM_FIELD_BYTES = 200_000
MAX_FORM_FIELDS = 50
_INT_RE = re.compile(r"-?[0-9]+")


def query(request: web.Request) -> Mapping[str, Any]:
    """The declared query parameters that were given, checked and typed."""
    return request[_QUERY_KEY]


def body(request: web.Request) -> dict[str, Any]:
    """The JSON body (or a form's text fields), checked against the operation's request schema."""
    return request[_BODY_KEY]


def files(request: web.Request) -> list[Any]:
    """What ``FileParts.take`` made of a form's files, in order (empty for a JSON body)."""
    return request.get(_FILES_KEY, [])


def _allows_integer(schema: Mapping[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "integer" or (isinstance(kinds, list) and "integer" in kinds):
        return True
    return any(_allows_integer(s) for s in schema.get("anyOf", ()) if isinstance(s, Mapping))


async def read_form(request: web.Request, parts: FileParts, schema: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], list[Any]]:
    """A multipart/form-data body: its text fields (a field the schema allows to be an
    integer, given as digits, becomes one) and its files, each taken as it arrives."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError, HttpProcessingError):
        raise ValidationError("the body is not a multipart/form-data form", field="body") from None
    properties = schema.get("properties", {})
    data: dict[str, Any] = {}
    taken: list[Any] = []
    fields = 0
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp_multipart.BodyPartReader) or not part.name:
                raise ValidationError("every part of the form needs a field name", field="body")
            name = part.name
            if name == parts.field:
                if len(taken) >= parts.max_files:
                    raise ValidationError(f"{name} must have at most {parts.max_files} items", field=name)
                taken.append(await parts.take(_chunks(part), _filename(part.filename), name))
                continue
            if part.filename is not None:
                raise ValidationError(f"{name} must be a text field, not a file", field=name)
            fields += 1
            if fields > MAX_FORM_FIELDS or name in data:
                raise ValidationError(f"{name} is given more than once (or the form has too many fields)", field=name)
            raw = await part.read(decode=True)
            if len(raw) > MAX_FORM_FIELD_BYTES:
                raise ValidationError(f"{name} must be at most {MAX_FORM_FIELD_BYTES} bytes", field=name)
            try:
                value: Any = raw.decode(part.get_charset("utf-8"))
            except (UnicodeDecodeError, LookupError):
                raise ValidationError(f"{name} is not valid UTF-8 text", field=name) from None
            prop = properties.get(name)
            if isinstance(prop, Mapping) and _allows_integer(prop) and _INT_RE.fullmatch(value):
                value = int(value)
            data[name] = value
    except (ValueError, AssertionError, HttpProcessingError):
        # A malformed part header (a NUL in it, say) is the client's mistake, not ours.
        raise ValidationError("the body is not a well-formed multipart/form-data form", field="body") from None
    if taken:
        data[parts.field] = ["file"] * len(taken)  # for the schema's count and anyOf rules
    return data, taken


def _filename(raw: str | None) -> str | None:
    """A part's file name: browsers escape ``"``, CR and LF as %22, %0D, %0A (the HTML
    form encoding), and some clients (aiohttp's) percent-encode the whole name."""
    return unquote(raw, errors="replace") if raw else raw


async def _chunks(part: Any) -> AsyncIterable[bytes]:
    # HTTP forms send files as they are (RFC 7578 deprecates Content-Transfer-Encoding).
    while chunk := await part.read_chunk(64 * 1024):
        yield chunk


def _describe_error(error: jsonschema.ValidationError, base: str | None = None) -> tuple[str, str]:
    """(field, message) for a schema violation; bounded, never echoing the value."""
    where = [str(p) for p in error.absolute_path]
    v, expected = error.validator, error.validator_value
    if v == "required":
        missing = next((k for k in expected if k not in error.instance), expected[0])
        where.append(missing)
        name = ".".join(filter(None, [base, *where]))
        return name, f"{name} is required"
    if v == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)[:1] or ["?"]
        where.append(str(extra[0]))
        name = ".".join(filter(None, [base, *where]))
        return name, f"unknown field {name}"
    name = ".".join(filter(None, [base, *where])) or "body"
    messages = {
        "type": lambda: f"must be of type {' or '.join(expected) if isinstance(expected, list) else expected}",
        "enum": lambda: f"must be one of: {', '.join(map(str, expected))}",
        "const": lambda: f"must be {expected!r}",
        "minLength": lambda: "must not be empty" if expected == 1 else f"must be at least {expected} characters",
        "maxLength": lambda: f"must be at most {expected} characters",
        "pattern": lambda: "has the wrong form",
        "not": lambda: next((m for schema, m in _NOT_MESSAGES if schema == expected), "has the wrong form"),
        "minimum": lambda: f"must be at least {expected}",
        "maximum": lambda: f"must be at most {expected}",
        "exclusiveMinimum": lambda: f"must be more than {expected}",
        "exclusiveMaximum": lambda: f"must be less than {expected}",
        "minItems": lambda: f"must have at least {expected} item(s)",
        "maxItems": lambda: f"must have at most {expected} items",
        "uniqueItems": lambda: "must not repeat an item",
        "format": lambda: f"must be a {expected}" + (" (YYYY-MM-DD)" if expected == "date" else ""),
        "minProperties": lambda: f"must have at least {expected} field(s)",
    }
    describe = messages.get(str(v))
    return name, f"{name} {describe() if describe else 'does not match the schema'}"


_draft_pattern = jsonschema.Draft202012Validator.VALIDATORS["pattern"]


def _bounded_pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Any:
    """``pattern`` only within the declared ``maxLength`` (which reports a longer string
    itself): a backtracking pattern over a megabyte body would cost seconds."""
    if isinstance(instance, str) and len(instance) > schema.get("maxLength", len(instance)):
        return
    yield from _draft_pattern(validator, pattern, instance, schema)


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, validators={"pattern": _bounded_pattern})


class _Rules:
    """An operation's input rules, compiled once at install."""

    def __init__(self, op: Operation, components: Mapping[str, Any]) -> None:
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        self.params = [(p["name"], p["schema"], bool(p.get("required")), _Validator(p["schema"], format_checker=checker))
                       for p in op.params if p.get("in") == "query"]
        self.path_validators = {name: _Validator(schema, format_checker=checker)
                                for name, schema in op.path_schemas.items()}
        self.body = self.form = None
        self.form_schema: dict[str, Any] = {}
        if op.request is not None:
            # $refs in the body schema point into the document's components.
            schema = {"$ref": "#/$defs/body", "$defs": {"body": op.request},
                      "components": {"schemas": dict(components)}}
            self.body = _Validator(schema, format_checker=checker)
        self.files = op.files
        if op.files is not None and op.request is not None:
            self.form_schema = op.files.form_schema(op.request)
            # The files themselves are checked as they are read; the schema sees placeholders.
            placeholders = {**self.form_schema, "properties": {
                **self.form_schema["properties"],
                op.files.field: {**self.form_schema["properties"][op.files.field], "items": {"type": "string"}}}}
            self.form = _Validator({"$ref": "#/$defs/body", "$defs": {"body": placeholders},
                                    "components": {"schemas": dict(components)}}, format_checker=checker)

    def check_query(self, raw: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, schema, required, validator in self.params:
            if name not in raw:
                if required:
                    raise ValidationError(f"{name} is required", field=name)
                continue
            value: Any = raw[name]
            kind = schema.get("type")
            if kind == "integer":
                if not _INT_RE.fullmatch(value):
                    raise ValidationError(f"{name} must be an integer", field=name)
                value = int(value)
            elif kind == "boolean":
                if value not in ("true", "false"):
                    raise ValidationError(f"{name} must be true or false", field=name)
                value = value == "true"
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is not None:
                _refuse(error, name)
            values[name] = date.fromisoformat(value) if schema.get("format") == "date" else value
        return values

    def check_body(self, data: dict[str, Any], *, form: bool = False) -> None:
        validator = self.form if form else self.body
        assert validator is not None
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is not None:
            _refuse(error)


def _whole_numbers(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 to JSON Schema, so core (which
    checks ``isinstance(x, int)``) gets it as one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _refuse(error: jsonschema.ValidationError, base: str | None = None) -> None:
    name, message = _describe_error(error, base)
    raise ValidationError(message, field=name)


@dataclass
class ApiRegistry:
    title: str = "posventa API"
    version: str = "1"
    operations: list[Operation] = field(default_factory=list)
    schemas: dict[str, Any] = field(default_factory=dict)

    def add(self, method: str, path: str, handler: Handler, *, summary: str, tag: str,
            request: dict[str, Any] | None = None, response: dict[str, Any] | None = None, status: int = 200,
            params: Sequence[dict[str, Any]] = (), content_type: str = "application/json",
            description: str | None = None, alternatives: Mapping[str, dict[str, Any]] | None = None,
            errors: Mapping[int, str] | None = None, admin: bool = False, files: FileParts | None = None,
            path_schemas: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.operations.append(Operation(method.upper(), path, summary, tag, handler, request, response, status,
                                         tuple(params), content_type, description, dict(alternatives or {}),
                                         dict(errors or {}), admin, files, dict(path_schemas or {})))

    def document(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for op in self.operations:
            paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = op.describe()
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

    def install(self, app: web.Application, *, tokens: Sequence[str], admin_tokens: Sequence[str] = ()) -> None:
        if not tokens and not admin_tokens:
            # Once, at start: otherwise the first sign is a 401 on a request that looks right.
            log.warning("no API token is configured: the API answers 401 to everyone: set %s", TOKEN_SETTING)
        admin_bytes = [t.encode() for t in admin_tokens]
        # An admin token may do everything an ordinary one may.
        token_bytes = [t.encode() for t in tokens] + admin_bytes

        def matches(supplied: str, known: list[bytes]) -> bool:
            return any(hmac.compare_digest(supplied.encode(), t) for t in known)

        def guarded(op: Operation) -> Handler:
            rules = _Rules(op, {"Error": ERROR_SCHEMA, **self.schemas})

            async def wrapper(request: web.Request) -> web.StreamResponse:
                header = request.headers.get("Authorization", "")
                scheme, _, supplied = header.partition(" ")
                if not (scheme.lower() == "bearer" and supplied and matches(supplied, token_bytes)):
                    return error_response(401, "unauthorized", UNAUTHORIZED)
                if op.admin and not matches(supplied, admin_bytes):
                    return error_response(403, "forbidden", "this needs an admin token ([api] admin_tokens)")
                for name in op.path_params:
                    if name in rules.path_validators:
                        if not rules.path_validators[name].is_valid(request.match_info[name]):
                            raise web.HTTPNotFound()
                    else:
                        path_id(request, name)
                request[_QUERY_KEY] = rules.check_query(request.query)
                if rules.form is not None and request.content_type == "multipart/form-data":
                    assert rules.files is not None
                    data, taken = await read_form(request, rules.files, rules.form_schema)
                    rules.check_body(data, form=True)
                    data.pop(rules.files.field, None)
                    request[_BODY_KEY] = data
                    request[_FILES_KEY] = taken
                elif rules.body is not None:
                    data = await read_json_object(request)
                    try:
                        data = _whole_numbers(data)
                        rules.check_body(data)
                    except RecursionError:
                        return error_response(400, "bad_json", "body is nested too deeply")
                    request[_BODY_KEY] = data
                return await op.handler(request)

            return wrapper

        for op in self.operations:
            app.router.add_route(op.method, PREFIX + op.path, guarded(op))

        async def openapi(_request: web.Request) -> web.Response:
            return web.json_response(self.document())

        app.router.add_get(PREFIX + "/openapi.json", openapi)
