"""/api/v1/surveys/... and /api/v1/sales: the survey catalog, sales from the ERP,
the manager panel, commission scores, and operators' manual answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from posventa.core.errors import ValidationError
from posventa.core.surveys import PanelFilter, SaleError, SaleResult, Surveys
from posventa.core.surveys.catalog import MAX_CODE, MAX_NAME, MAX_NOTE, MAX_OPERATOR, MAX_TEXT
from posventa.core.surveys.panel import DETRACTOR_STATES, MAX_LIMIT, SECTIONS
from posventa.core.surveys.sales import MAX_BULK, MAX_EXTERNAL_ID, MAX_SELLER
from posventa.core.surveys.windows import MAX_DAYS
from posventa.intake.api.openapi import (DATE, DB_INT_MAX, ID, ApiRegistry, body, enum, integer, line, query, query_param,
                                text)
from posventa.intake.http import path_id, stream_csv

TAG = "surveys"
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_NUM = {"type": ["number", "null"]}
_TEXTS = {"type": "object", "required": ["es", "pt", "en"],
          "properties": {lang: {"type": "string", "minLength": 1} for lang in ("es", "pt", "en")},
          "additionalProperties": False}
_TEXTS_IN = {**_TEXTS, "properties": {lang: text(MAX_TEXT) for lang in ("es", "pt", "en")}}
#: Every scale core's Scale.parse accepts, spelled the way it stores them.
_SCALES = ["yes/no", *(f"{lo}-{hi}" for lo in range(11) for hi in range(lo + 1, 11))]
_WEIGHTS = {"oneOf": [
    {"type": "object", "additionalProperties": {"type": "integer", "minimum": -100, "maximum": 100}},
    {"type": "array", "items": {"type": "integer", "minimum": -100, "maximum": 100}},
], "description": "a weight from -100 to 100 for EVERY score of the scale: {\"1\": -100, ..., \"5\": 100} "
                  "or a list in scale order"}
#: Ids or codes/names; a name is trimmed by core, so one with spaces around it is refused
#: here (two spellings of the same entry would otherwise pass uniqueItems).
_REFS = {"type": "array", "uniqueItems": True, "items": {"anyOf": [
    ID, {"type": "string", "maxLength": MAX_NAME, "pattern": r"^[^\s\x00]([^\x00]*[^\s\x00])?$"}]}}
_OPERATOR = text(MAX_OPERATOR)
_NOTE = text(MAX_NOTE, blank=True, nullable=True)

_THRESHOLD = {"oneOf": [{"type": "integer", "minimum": -100, "maximum": 100}, {"type": "string", "enum": ["off"]},
                        {"type": "null"}],
              "description": "an answer weighing this or less is a detractor answer and opens a complaint case; "
                             "\"off\": never; null: the [surveys] detractor_weight default"}
QUESTION = {"type": "object", "required": ["id", "code", "text", "scale", "weights", "detractor_threshold"],
            "properties": {
    "id": _INT, "code": _STR, "text": _TEXTS, "scale": _STR,
    "weights": {"type": "object", "additionalProperties": {"type": "integer", "minimum": -100, "maximum": 100}},
    "detractor_threshold": _THRESHOLD}}
QUESTION_IN = {"type": "object", "required": ["code", "text", "scale", "weights"], "properties": {
    "code": text(MAX_CODE), "text": _TEXTS_IN,
    "scale": {**enum(_SCALES), "description": '"1-5", "0-10" (any range within 0-10) or "yes/no"'},
    "weights": _WEIGHTS, "detractor_threshold": _THRESHOLD}, "additionalProperties": False}
_RESURVEY = {"type": "boolean", "description": "when a detractor case of this rule closes, ask the customer "
                                              "\"Was your problem solved? yes/no\" (recorded apart from the score)"}
RULE = {"type": "object", "required": ["id", "name", "start_after_days", "expires_after_days", "note", "questions",
                                       "operators", "resurvey_after_close"], "properties": {
    "id": _INT, "name": _STR, "start_after_days": _INT, "expires_after_days": _INT, "note": _STR,
    "resurvey_after_close": _RESURVEY,
    "questions": {"type": "array", "items": {"$ref": "#/components/schemas/SurveyQuestion"}},
    "operators": {"type": "array", "items": _STR}}}
RULE_IN = {"type": "object", "required": ["name", "start_after_days", "expires_after_days"], "properties": {
    "name": text(MAX_NAME),
    "start_after_days": {**integer(0, MAX_DAYS),
                         "description": "days after the deal closed when the survey becomes available"},
    "expires_after_days": {**integer(1, MAX_DAYS),
                           "description": "days after the start when it stops being available"},
    "note": _NOTE, "questions": {**_REFS, "description": "question ids or codes, in the order they are asked"},
    "operators": {"type": "array", "items": _OPERATOR}, "resurvey_after_close": _RESURVEY},
    "additionalProperties": False}
PROFILE = {"type": "object", "required": ["id", "name", "notes", "rules"], "properties": {
    "id": _INT, "name": _STR, "notes": _STR,
    "rules": {"type": "array", "items": {"type": "object", "required": ["id", "name"],
                                         "properties": {"id": _INT, "name": _STR}}}}}
PROFILE_IN = {"type": "object", "required": ["name"], "properties": {
    "name": text(MAX_NAME), "notes": _NOTE, "rules": {**_REFS, "description": "rule ids or names"}},
    "additionalProperties": False}
PRODUCT = {"type": "object", "required": ["id", "code", "name", "profile"], "properties": {
    "id": _INT, "code": _STR, "name": _STR,
    "profile": {"type": ["object", "null"], "properties": {"id": _INT, "name": _STR}}}}
PRODUCT_IN = {"type": "object", "required": ["code", "name"], "properties": {
    "code": text(MAX_CODE), "name": text(MAX_NAME),
    "profile": {"anyOf": [{"type": "null"}, *_REFS["items"]["anyOf"]], "description": "profile id or name"}},
    "additionalProperties": False}
_EMAIL_CHARS = r"[^@\s<>\"',;\x00-\x1f]+"
_CUSTOMER = {
    "name": line(200, blank=True, nullable=True),
    "email": {"type": ["string", "null"], "maxLength": 320,
              "pattern": rf"^(\s*|{_EMAIL_CHARS}@{_EMAIL_CHARS}\.{_EMAIL_CHARS})$"},
    "telegram_id": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 20, "pattern": r"^([0-9]{1,20}|\s*)$"},
                              integer(0, 10**20 - 1)], "description": "the numeric Telegram user id"},
    "webchat_session": {"type": ["string", "null"], "pattern": r"^([A-Za-z0-9_-]{1,40}|\s*)$",
                        "maxLength": 40},
    "phone": line(50, blank=True, nullable=True),
    "language": {"enum": ["es", "pt", "en", None]}}
SALE_IN = {"type": "object", "required": ["external_id", "product", "seller", "closed_at", "customer"], "properties": {
    "external_id": {**line(MAX_EXTERNAL_ID), "description": "the ERP's id; sending it again is harmless"},
    "product": {**line(MAX_CODE), "description": "product code"},
    "seller": line(MAX_SELLER),
    "closed_at": {"type": "string", "maxLength": 40,
                  "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                             r"(Z|[+-][0-9]{2}:?[0-9]{2})?)?$",
                  "description": "YYYY-MM-DD (a local date in [surveys] timezone) or an ISO 8601 date-time; a "
                                 "time without offset is local"},
    "customer": {"type": "object", "properties": _CUSTOMER, "additionalProperties": False,
                 "description": "at least one of telegram_id, webchat_session, email, phone",
                 "anyOf": [{"required": [k], "properties": {k: {"type": ["string", "integer"], "pattern": r"\S"}}}
                           for k in ("telegram_id", "webchat_session", "email", "phone")]}},
    "additionalProperties": False}
#: Refusals no schema can state: they depend on the catalog, the clock or the calendar.
SALE_REFUSALS = {422: "the product does not exist, or closed_at is not a real date, is before 1970 or after 9000, "
                      "or is in the future"}
SALE_RESULT = {"type": "object", "required": ["external_id", "sale_id", "customer_id", "duplicate", "surveys"],
               "properties": {"external_id": _STR, "sale_id": _INT, "customer_id": _INT,
                              "duplicate": {"type": "boolean"}, "surveys": _INT}}
SALE_ERROR = {"type": "object", "required": ["index", "reason"], "properties": {
    "index": _INT, "reason": _STR, "external_id": _NSTR, "field": _NSTR}}
PANEL_ITEM = {"type": "object", "required": ["id", "status", "rule_id", "rule", "sale", "seller", "product",
                                             "window_start", "window_end"], "properties": {
    "id": _INT, "status": {"type": "string", "enum": ["pending", "open", "executed", "expired", "paused"]},
    "rule_id": _INT, "rule": _STR, "sale": _STR, "seller": _STR, "product": _STR, "customer_id": _INT,
    "customer": _NSTR, "closed_at": _STR, "window_start": _STR, "window_end": _STR, "channel": _NSTR,
    "opened_at": _NSTR, "executed_at": _NSTR, "executed_by": _NSTR, "total_score": _NUM,
    "normalized_score": _NUM}}
INSTANCE = {"type": "object", "required": ["id", "status", "rule", "sale", "product", "customer", "window_start",
                                           "window_end", "answers", "questions"], "properties": {
    "id": _INT, "status": _STR, "channel": _NSTR, "language": _NSTR, "rule": {"type": "object"},
    "sale": {"type": "object"}, "product": {"type": "object"}, "customer": {"type": "object"},
    "window_start": _STR, "window_end": _STR, "opened_at": _NSTR, "last_asked_at": _NSTR, "reminded_at": _NSTR,
    "executed_at": _NSTR, "executed_by": _NSTR, "total_score": _NUM, "normalized_score": _NUM,
    "case": {"type": ["object", "null"], "required": ["number", "activity", "closed_at"], "properties": {
        "number": _INT, "activity": _STR, "closed_at": _NSTR},
        "description": "the complaint case a detractor answer opened (null: none)"},
    "followup": {"type": ["object", "null"], "properties": {
        "status": {"type": "string", "enum": ["asked", "answered"]}, "score": _NSTR,
        "weight": {"type": ["integer", "null"]}, "asked_at": _NSTR, "answered_at": _NSTR},
        "description": "\"Was your problem solved?\" after the detractor case closed; its weight never "
                       "changes total_score"},
    "answers": {"type": "array", "items": {"type": "object", "required": ["question_id", "score", "weight",
                                                                          "answered_by"]}},
    "questions": {"type": "array", "items": {"type": "object", "required": ["id", "code", "answered"]}}}}
DETRACTOR_ITEM = {"type": "object", "required": [
    "id", "status", "rule", "sale", "seller", "product", "case_number", "case_title", "case_activity", "state",
    "case_opened_at", "first_response_at", "first_response_seconds", "case_closed_at"], "properties": {
    "id": {**_INT, "description": "the survey (rule instance)"},
    "status": {"type": "string", "enum": ["pending", "open", "executed", "expired", "paused"]},
    "rule": _STR, "sale": _STR, "seller": _STR, "product": _STR,
    "customer_id": {**_INT, "description": "the surveyed contact"}, "customer": _NSTR, "total_score": _NUM,
    "normalized_score": _NUM, "case_number": _INT, "case_title": _STR,
    "case_activity": {"type": "string", "enum": ["preliminary_analysis", "derived", "answer_sent", "closed"]},
    "state": {"type": "string", "enum": list(DETRACTOR_STATES)}, "assigned_agent": _NSTR,
    "case_opened_at": _STR, "first_response_at": _NSTR,
    "first_response_seconds": {"type": ["integer", "null"], "minimum": 0,
                               "description": "from the case opening to the first agent reply"},
    "case_closed_at": _NSTR,
    "followup": {"type": ["object", "null"], "properties": {"score": _STR, "weight": _INT},
                 "description": "the answer to \"Was your problem solved?\" (resurvey_after_close)"}}}
DETRACTORS_DOC = """Detractor surveys (an answer at or below its question's detractor threshold opened a
complaint case) and what was done about them: the case's `state` (`open`: no agent reply yet; `answered`:
an agent replied or the case is in answer_sent; `closed`) and the time to the first agent reply. Newest case
first; `counts` covers the whole filter. Filters as in the panel; `format=csv` streams every row (text/csv)."""
SCORES_DOC = """Weighted scores per seller over the executed surveys of the sales that match the filters
(commission). With total_i = the sum of the weights of survey i's answers:

- `sum` = Σ total_i
- `average` = sum / n (n = executed surveys)
- `normalized_average` = (1/n) Σ (total_i / answers_i): each term is survey i's mean weight per answer,
  so the result always lies within -100..100 whatever the number of questions.

`detractors` counts the seller's surveys with a detractor case (executed or not) and `detractors_closed`
how many of those cases are closed.

`from`/`to` are local dates (the `[surveys] timezone`), both inclusive, on the sale's closing date.
`format=csv` answers text/csv with the same columns."""
PANEL_DOC = """The manager panel. Counts of every section, and the first `limit` items of each (or only of
`section`). With `operator`, only the rules that operator is responsible for.

- `my_rules`: window open now (start <= now < end) and not executed, most urgent first;
- `executed`;
- `not_executed`: window already started and not executed (= my_rules + inconsistencies);
- `inconsistencies`: not executed and the window already ended.

`from`/`to` (local dates, inclusive) filter on the sale's closing date. `format=csv` streams every item
(text/csv, one row per survey with a `section` column) instead of JSON."""


def _filter(request: web.Request) -> PanelFilter:
    q = query(request)
    return PanelFilter(operator=q.get("operator"), seller=q.get("seller"), product=q.get("product"),
                       rule_id=q.get("rule"), date_from=q.get("from"), date_to=q.get("to"))


def _csv(request: web.Request) -> bool:
    return query(request).get("format") == "csv"


_FILTER_PARAMS = [
    query_param("operator", text(120), "only rules this operator is responsible for"),
    query_param("seller", text(120)), query_param("product", text(120), "product code"),
    query_param("rule", ID, "rule id"),
    query_param("from", DATE, "first closing date (local), inclusive"),
    query_param("to", DATE, "last closing date (local), inclusive"),
    query_param("format", enum(["json", "csv"])),
]
_FILTER_REFUSAL = {422: "`from` is after `to`"}
_CSV = {"text/csv": {"type": "string"}}


def _sale_result(r: SaleResult) -> dict[str, Any]:
    return {"external_id": r.external_id, "sale_id": r.sale_id, "customer_id": r.contact_id,
            "duplicate": r.duplicate, "surveys": r.instances}


def _sale_error(e: SaleError) -> dict[str, Any]:
    return {"index": e.where, "reason": e.reason, "external_id": e.external_id, "field": e.field}


def _crud(api: ApiRegistry, *, path: str, noun: str, schema: str, request_schema: dict[str, Any],
          list_fn: Any, get_fn: Any, create_fn: Any, update_fn: Any, delete_fn: Any,
          refusals: str, change_refusals: dict[int, str] | None = None, in_use: str | None = None) -> None:
    """The five catalog operations. ``refusals``: why a well-formed create or change is
    refused (422: names taken, references that do not exist); ``in_use``: why a delete is
    (400, history depends on it)."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    plural = path.rsplit("/", 1)[-1]

    async def list_(_request: web.Request) -> web.Response:
        return web.json_response({plural: await list_fn()})

    async def get(request: web.Request) -> web.Response:
        return web.json_response(await get_fn(path_id(request, "id")))

    async def create(request: web.Request) -> web.Response:
        return web.json_response(await create_fn(body(request)), status=201)

    async def patch(request: web.Request) -> web.Response:
        return web.json_response(await update_fn(path_id(request, "id"), body(request)))

    async def delete(request: web.Request) -> web.Response:
        await delete_fn(path_id(request, "id"))
        return web.Response(status=204)

    partial = {k: v for k, v in request_schema.items() if k != "required"}
    api.add("GET", path, list_, summary=f"List {plural}", tag=TAG,
            response={"type": "object", "required": [plural], "properties": {plural: {"type": "array", "items": ref}}})
    api.add("POST", path, create, summary=f"Create a {noun}", tag=TAG, status=201, request=request_schema,
            response=ref, errors={422: refusals})
    api.add("GET", f"{path}/{{id}}", get, summary=f"One {noun}", tag=TAG, response=ref)
    api.add("PATCH", f"{path}/{{id}}", patch, summary=f"Change a {noun} (only the fields given)", tag=TAG,
            request=partial, response=ref, errors={422: refusals, **(change_refusals or {})})
    api.add("DELETE", f"{path}/{{id}}", delete, summary=f"Delete a {noun} (refused while history depends on it)",
            tag=TAG, status=204, errors={400: in_use} if in_use else None)


def register(api: ApiRegistry, *, surveys: Surveys) -> None:
    api.schemas.update({"SurveyQuestion": QUESTION, "SurveyRule": RULE, "SurveyProfile": PROFILE,
                        "Product": PRODUCT, "SaleResult": SALE_RESULT, "SaleError": SALE_ERROR,
                        "PanelItem": PANEL_ITEM, "SurveyInstance": INSTANCE, "DetractorItem": DETRACTOR_ITEM})
    cat = surveys.catalog
    _crud(api, path="/surveys/questions", noun="question", schema="SurveyQuestion", request_schema=QUESTION_IN,
          list_fn=cat.list_questions, get_fn=cat.get_question, create_fn=cat.create_question,
          update_fn=cat.update_question, delete_fn=cat.delete_question,
          refusals="the weights do not give every score of the scale a weight from -100 to 100, or the code "
                   "is taken",
          change_refusals={400: "the scale changes while the question has answers"},
          in_use="the question has answers")
    _crud(api, path="/surveys/rules", noun="rule", schema="SurveyRule", request_schema=RULE_IN,
          list_fn=cat.list_rules, get_fn=cat.get_rule, create_fn=cat.create_rule, update_fn=cat.update_rule,
          delete_fn=cat.delete_rule, refusals="a listed question does not exist, or the name is taken",
          in_use="the rule has surveys for sales")
    _crud(api, path="/surveys/profiles", noun="profile", schema="SurveyProfile", request_schema=PROFILE_IN,
          list_fn=cat.list_profiles, get_fn=cat.get_profile, create_fn=cat.create_profile,
          update_fn=cat.update_profile, delete_fn=cat.delete_profile,
          refusals="a listed rule does not exist, or the name is taken")
    _crud(api, path="/surveys/products", noun="product", schema="Product", request_schema=PRODUCT_IN,
          list_fn=cat.list_products, get_fn=cat.get_product, create_fn=cat.create_product,
          update_fn=cat.update_product, delete_fn=cat.delete_product,
          refusals="the profile does not exist, or the code is taken", in_use="the product has sales")
    rule_ref = {"$ref": "#/components/schemas/SurveyRule"}

    async def add_rule_question(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await cat.add_rule_question(path_id(request, "id"), data["question"],
                                                             position=data.get("position")))

    api.add("POST", "/surveys/rules/{id}/questions", add_rule_question, tag=TAG, response=rule_ref,
            summary="Add a question to a rule (at position, 1-based; default last)",
            errors={422: "the question does not exist or the rule already asks it, or position is past the end"},
            request={"type": "object", "required": ["question"], "properties": {
                "question": {**_REFS["items"], "description": "question id or code"},
                "position": integer(1, DB_INT_MAX)}})

    async def remove_rule_question(request: web.Request) -> web.Response:
        return web.json_response(await cat.remove_rule_question(path_id(request, "id"), path_id(request, "question_id")))

    api.add("DELETE", "/surveys/rules/{id}/questions/{question_id}", remove_rule_question, tag=TAG,
            response=rule_ref, summary="Remove a question from a rule")

    async def add_operator(request: web.Request) -> web.Response:
        return web.json_response(await cat.add_rule_operator(path_id(request, "id"), body(request)["operator"]))

    api.add("POST", "/surveys/rules/{id}/operators", add_operator, tag=TAG, response=rule_ref,
            summary="Make an operator responsible for a rule",
            request={"type": "object", "required": ["operator"], "properties": {"operator": _OPERATOR}})

    async def remove_operator(request: web.Request) -> web.Response:
        return web.json_response(await cat.remove_rule_operator(path_id(request, "id"), query(request)["operator"]))

    api.add("DELETE", "/surveys/rules/{id}/operators", remove_operator, tag=TAG, response=rule_ref,
            summary="An operator is no longer responsible for a rule",
            params=[query_param("operator", _OPERATOR, required=True)])

    # --- sales ---------------------------------------------------------------------------

    async def post_sales(request: web.Request) -> web.Response:
        data = body(request)
        if "sales" in data:
            results, errors = await surveys.sales.record_many(data["sales"])
            return web.json_response({
                "created": sum(1 for r in results if not r.duplicate),
                "duplicates": sum(1 for r in results if r.duplicate),
                "sales": [_sale_result(r) for r in results], "errors": [_sale_error(e) for e in errors]})
        sale = surveys.sales.validate(data)
        [outcome] = await surveys.sales.record([sale])
        if isinstance(outcome, SaleError):
            raise ValidationError(outcome.reason, field=outcome.field)
        return web.json_response(_sale_result(outcome))

    api.add("POST", "/sales", post_sales, tag="sales",
            summary="Record a sale, or many: {\"sales\": [...]} (idempotent by external_id)",
            description=f"One sale answers 200 with `duplicate: true` when that external_id was already "
                        "recorded (nothing changes), or 422. "
                        f"A bulk request (up to {MAX_BULK}) answers 200 with the stored sales and, for each "
                        "rejected one, its index and reason; a rejected sale writes nothing. Every rule of the "
                        "product's profile gets a survey window.",
            errors=SALE_REFUSALS,
            request={"oneOf": [SALE_IN, {"type": "object", "required": ["sales"], "properties": {
                "sales": {"type": "array", "maxItems": MAX_BULK, "items": {
                    "type": "object", "description": "a sale as above; an invalid one is reported in `errors`"}}},
                "additionalProperties": False}]},
            response={"oneOf": [{"$ref": "#/components/schemas/SaleResult"}, {
                "type": "object", "required": ["created", "duplicates", "sales", "errors"], "properties": {
                    "created": _INT, "duplicates": _INT,
                    "sales": {"type": "array", "items": {"$ref": "#/components/schemas/SaleResult"}},
                    "errors": {"type": "array", "items": {"$ref": "#/components/schemas/SaleError"}}}}]})

    # --- panel and scores ------------------------------------------------------------------

    async def panel(request: web.Request) -> web.StreamResponse:
        f = _filter(request)
        q = query(request)
        section = q.get("section")
        if _csv(request):
            return await stream_csv(request, surveys.panel.export_csv(f, section=section),
                                    filename="survey-panel.csv")
        result = await surveys.panel.panel(f, section=section, limit=q.get("limit", 50), offset=q.get("offset", 0))
        return web.json_response({"filters": _filter_echo(f, section), **result})

    items = {"type": "array", "items": {"$ref": "#/components/schemas/PanelItem"}}
    api.add("GET", "/surveys/panel", panel, tag=TAG, summary="Manager panel: my rules, executed, not executed, "
            "inconsistencies", description=PANEL_DOC, alternatives=_CSV, errors=_FILTER_REFUSAL,
            params=[*_FILTER_PARAMS,
                    query_param("section", enum(SECTIONS)),
                    query_param("limit", integer(1, MAX_LIMIT)),
                    query_param("offset", integer(0, DB_INT_MAX))],
            response={"type": "object", "required": ["now", "filters", "counts", "items"], "properties": {
                "now": _STR, "filters": {"type": "object"},
                "counts": {"type": "object", "required": list(SECTIONS), "properties": {s: _INT for s in SECTIONS}},
                "items": {"type": "object", "properties": {s: items for s in SECTIONS}}}})

    async def seller_scores(request: web.Request) -> web.Response:
        f = _filter(request)
        rows = await surveys.panel.seller_scores(f)
        if _csv(request):
            return web.Response(text=surveys.panel.seller_scores_csv(rows), content_type="text/csv",
                                charset="utf-8",
                                headers={"Content-Disposition": 'attachment; filename="seller-scores.csv"'})
        return web.json_response({"filters": _filter_echo(f, None), "sellers": rows})

    api.add("GET", "/surveys/seller-scores", seller_scores, tag=TAG,
            summary="Weighted scores per seller (commission): sum, average, normalised average",
            description=SCORES_DOC, params=_FILTER_PARAMS, alternatives=_CSV, errors=_FILTER_REFUSAL,
            response={"type": "object", "required": ["filters", "sellers"], "properties": {
                "filters": {"type": "object"},
                "sellers": {"type": "array", "items": {"type": "object", "required": [
                    "seller", "surveys", "sum", "average", "normalized_average", "detractors",
                    "detractors_closed"], "properties": {
                    "seller": _STR, "surveys": _INT, "sum": {"type": "number"}, "average": {"type": "number"},
                    "normalized_average": {"type": "number", "minimum": -100, "maximum": 100},
                    "detractors": {"type": "integer", "minimum": 0},
                    "detractors_closed": {"type": "integer", "minimum": 0}}}}}})

    async def detractors(request: web.Request) -> web.StreamResponse:
        f = _filter(request)
        q = query(request)
        state = q.get("state")
        if _csv(request):
            return await stream_csv(request, surveys.panel.export_detractors_csv(f, state=state),
                                    filename="survey-detractors.csv")
        result = await surveys.panel.detractors(f, state=state, limit=q.get("limit", 50), offset=q.get("offset", 0))
        return web.json_response({"filters": {**_filter_echo(f, None), "state": state}, **result})

    api.add("GET", "/surveys/detractors", detractors, tag=TAG,
            summary="Detractor surveys and their cases: open, answered, closed, time to first response",
            description=DETRACTORS_DOC, alternatives=_CSV, errors=_FILTER_REFUSAL,
            params=[*_FILTER_PARAMS,
                    query_param("state", enum(DETRACTOR_STATES)),
                    query_param("limit", integer(1, MAX_LIMIT)),
                    query_param("offset", integer(0, DB_INT_MAX))],
            response={"type": "object", "required": ["now", "filters", "counts", "items"], "properties": {
                "now": _STR, "filters": {"type": "object"},
                "counts": {"type": "object", "required": list(DETRACTOR_STATES),
                           "properties": {s: _INT for s in DETRACTOR_STATES}},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/DetractorItem"}}}})

    # --- one survey ---------------------------------------------------------------------------

    instance_ref = {"$ref": "#/components/schemas/SurveyInstance"}

    async def get_instance(request: web.Request) -> web.Response:
        return web.json_response(await surveys.runner.instance(path_id(request, "id")))

    api.add("GET", "/surveys/instances/{id}", get_instance, tag=TAG, response=instance_ref,
            summary="One survey (rule instance) with its answers")

    async def answer(request: web.Request) -> web.Response:
        data = body(request)
        return web.json_response(await surveys.runner.record_answers(path_id(request, "id"), data["answers"],
                                                                     operator=data["operator"]))

    api.add("POST", "/surveys/instances/{id}/answers", answer, tag=TAG, response=instance_ref,
            summary="Record answers an operator collected by hand (a phone call)",
            description="The operator must be responsible for the survey's rule. When every question has an "
                        "answer the survey is executed by that operator; a partial run pauses the chat. "
                        "409 when the window is not open or the survey is already executed or expired.",
            errors={409: "the window is not open, or the survey is already executed or expired",
                    422: "the operator is not responsible for the rule, a question is not one of the survey's, "
                         "or a score is not on its scale"},
            request={"type": "object", "required": ["operator", "answers"], "properties": {
                "operator": _OPERATOR,
                "answers": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
                    "type": "object", "required": ["question", "score"], "properties": {
                        "question": {"type": ["integer", "string"], "description": "question id or code"},
                        "score": {"type": ["string", "integer"], "description": "a score of the question's scale"}}}}}})

    async def resume(request: web.Request) -> web.Response:
        return web.json_response(await surveys.runner.resume(path_id(request, "id"),
                                                             operator=body(request)["operator"]))

    api.add("POST", "/surveys/instances/{id}/resume", resume, tag=TAG, response=instance_ref,
            summary="Reopen a paused survey in the customer's chat at the next unanswered question",
            errors={409: "the survey is not paused, has expired, another survey is being answered, or the "
                         "customer has no reachable chat",
                    422: "the operator is not responsible for the rule"},
            request={"type": "object", "required": ["operator"], "properties": {"operator": _OPERATOR}})

    async def tick(_request: web.Request) -> web.Response:
        return web.json_response((await surveys.scheduler.tick()).as_dict())

    api.add("POST", "/surveys/tick", tick, tag=TAG, summary="Open, remind and expire survey windows now",
            response={"type": "object", "required": ["expired", "reminded", "opened", "unreachable"],
                      "properties": {"expired": _INT, "reminded": _INT, "opened": _INT, "unreachable": _INT,
                                     "by_channel": {"type": "object", "additionalProperties": _INT}}})


def _filter_echo(f: PanelFilter, section: str | None) -> dict[str, Any]:
    return {"operator": f.operator, "seller": f.seller, "product": f.product, "rule": f.rule_id,
            "from": f.date_from.isoformat() if f.date_from else None,
            "to": f.date_to.isoformat() if f.date_to else None, "section": section}
