"""Managers' pages: the survey panel, charts, CSV exports and the survey catalog.

The panel and catalog are core.surveys' ``Panel`` and ``Catalog``, the charts' counts
``core.read_models``: these views only read forms into the shapes those take and show
their ``ValidationError`` next to the field.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from posventa.core.cases import CaseFilter
from posventa.core.errors import DomainError, NotFound, ValidationError
from posventa.core.read_models import MAX_CHART_DAYS, NO_CATEGORY
from posventa.core.surveys.panel import DETRACTOR_STATES
from posventa.intake.console.app import PREFIX, Console, requires, see_other
from posventa.intake.console.auth import Role
from posventa.intake.console.forms import Form, domain_errors, message_of
from posventa.intake.console.i18n import N_, ConsoleText, _l, refusal
from posventa.intake.console.labels import label
from posventa.intake.http import stream_csv

SECTIONS = ("my_rules", "executed", "not_executed", "inconsistencies")
SECTION_LABELS = {"my_rules": N_("My rules"), "executed": N_("Executed"), "not_executed": N_("Not executed"),
                  "inconsistencies": N_("Inconsistencies")}
PAGE_SIZE = 50
KINDS = ("questions", "rules", "profiles", "products")
DEFAULT_CHART_DAYS = 30
#: How the charts name cases without a category (core's NO_CATEGORY key).
NO_CATEGORY_LABEL = N_("(no category)")
SCALES = ("1-5", "0-10", "1-10", "yes/no")


def _panel_filter(query: Any, me: str) -> tuple[Any, dict[str, str], dict[str, str]]:
    """(PanelFilter or None, the raw values to show back, errors by field)."""
    from posventa.core.surveys.panel import PanelFilter

    raw = {k: (query.get(k) or "").strip()[:120] for k in
           ("operator", "seller", "product", "rule", "date_from", "date_to")}
    if query.get("mine") == "1":
        raw["operator"] = me
    errors: dict[str, str | ConsoleText] = {}
    dates: dict[str, date | None] = {}
    for name in ("date_from", "date_to"):
        try:
            dates[name] = date.fromisoformat(raw[name]) if raw[name] else None
        except ValueError:
            errors[name] = _l("use a date like 2026-03-31")
            dates[name] = None
    rule_id = None
    if raw["rule"]:
        try:
            rule_id = int(raw["rule"])
        except ValueError:
            errors["rule"] = _l("unknown rule")
    try:
        f = PanelFilter(operator=raw["operator"] or None, seller=raw["seller"] or None,
                        product=raw["product"] or None, rule_id=rule_id, **dates)
    except ValidationError as exc:
        errors[exc.field or "operator"] = message_of(exc)
        f = PanelFilter()
    return f, raw, errors


def _cell(value: Any) -> Any:
    """Spreadsheets run a cell starting with = + - @ as a formula; a customer controls
    case titles, so those cells get a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


async def _csv_response(request: web.Request, filename: str, chunks: Any) -> web.StreamResponse:
    # A byte-order mark so spreadsheet programs read the UTF-8 (ñ, ç, ã) correctly.
    return await stream_csv(request, chunks, filename=filename, byte_order_mark=True,
                            headers={"Cache-Control": "no-store"})


def register(router: web.UrlDispatcher, console: Console) -> None:
    def surveys_ready() -> None:
        if console.panel is None or console.catalog is None:
            raise refusal(web.HTTPNotFound, _l("Surveys are not installed in this service."))

    # --- the panel -------------------------------------------------------------------------

    @requires(Role.MANAGER)
    async def panel(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        me = _me(request)
        f, raw, errors = _panel_filter(request.query, me)
        section = request.query.get("section", "inconsistencies")
        if section not in SECTIONS:
            section = "inconsistencies"
        try:
            page = max(1, min(int(request.query.get("page", "1")), 10_000))
        except ValueError:
            page = 1
        data = await console.panel.panel(f, section=section, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        items = data["items"][section]
        params = {k: v for k, v in raw.items() if v}
        return console.render("panel.html", request, {
            "section": section, "sections": SECTIONS, "section_labels": {k: console.locales.gettext(v) for k, v in SECTION_LABELS.items()}, "counts": data["counts"],
            "items": items[:PAGE_SIZE], "has_next": len(items) > PAGE_SIZE, "page": page, "raw": raw,
            "errors": errors, "query": urlencode(params), "rules": await console.catalog.list_rules(),
            "me": me, "sellers": await console.panel.seller_scores(f),
        })

    @requires(Role.MANAGER)
    async def detractors(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        me = _me(request)
        f, raw, errors = _panel_filter(request.query, me)
        state = request.query.get("state") or None
        if state not in DETRACTOR_STATES:
            state = None
        try:
            page = max(1, min(int(request.query.get("page", "1")), 10_000))
        except ValueError:
            page = 1
        data = await console.panel.detractors(f, state=state, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        params = {k: v for k, v in raw.items() if v}
        return console.render("detractors.html", request, {
            "state": state, "states": DETRACTOR_STATES, "counts": data["counts"], "items": data["items"][:PAGE_SIZE],
            "has_next": len(data["items"]) > PAGE_SIZE, "page": page, "raw": raw, "errors": errors,
            "query": urlencode(params), "rules": await console.catalog.list_rules(), "me": me,
            "sellers": await console.panel.seller_scores(f),
        })

    @requires(Role.MANAGER)
    async def detractors_csv(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        f, _raw, errors = _panel_filter(request.query, _me(request))
        if errors:
            raise web.HTTPBadRequest(text="; ".join(f"{k}: {console.locales.translate(v)}" for k, v in errors.items()))
        state = request.query.get("state") or None
        if state is not None and state not in DETRACTOR_STATES:
            raise refusal(web.HTTPBadRequest, _l("state must be one of %(states)s", states=", ".join(DETRACTOR_STATES)))
        return await _csv_response(request, f"survey-detractors-{state or 'all'}.csv",
                                   console.panel.export_detractors_csv(f, state=state))

    @requires(Role.MANAGER)
    async def panel_csv(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        f, _raw, errors = _panel_filter(request.query, _me(request))
        if errors:
            raise web.HTTPBadRequest(text="; ".join(f"{k}: {console.locales.translate(v)}" for k, v in errors.items()))
        section = request.query.get("section") or None
        if section is not None and section not in SECTIONS:
            raise refusal(web.HTTPBadRequest, _l("section must be one of %(sections)s", sections=", ".join(SECTIONS)))
        name = f"survey-panel-{section or 'all'}.csv"
        return await _csv_response(request, name, console.panel.export_csv(f, section=section))

    @requires(Role.MANAGER)
    async def sellers_csv(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        f, _raw, errors = _panel_filter(request.query, _me(request))
        if errors:
            raise web.HTTPBadRequest(text="; ".join(f"{k}: {console.locales.translate(v)}" for k, v in errors.items()))
        rows = await console.panel.seller_scores(f)

        async def one() -> Any:
            yield console.panel.seller_scores_csv(rows)

        return await _csv_response(request, "seller-scores.csv", one())

    @requires(Role.MANAGER)
    async def cases_csv(request: web.Request) -> web.StreamResponse:
        columns = ("number", "created_at", "updated_at", "title", "type", "activity", "channel", "sector",
                   "assigned_agent", "category", "subcategory", "contact_name", "organization", "closed_at")

        async def rows() -> Any:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\r\n").writerow(columns)
            yield buf.getvalue()
            offset = 0
            while True:
                batch = await console.cases.list_cases(CaseFilter(limit=500, offset=offset))
                if not batch:
                    break
                buf = io.StringIO()
                writer = csv.writer(buf, lineterminator="\r\n")
                for c in batch:
                    c = {**c, "category": (c["category"] or {}).get("name"),
                         "subcategory": (c["subcategory"] or {}).get("name")}
                    writer.writerow([_cell(c[k]) for k in columns])
                yield buf.getvalue()
                offset += len(batch)

        return await _csv_response(request, "cases.csv", rows())

    # --- charts ------------------------------------------------------------------------------

    @requires(Role.MANAGER)
    async def charts(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        f, raw, errors = _panel_filter(request.query, _me(request))
        now = console.clock.now()
        today = now.astimezone(console.tz).date()
        last = f.date_to or today
        first = f.date_from or (last - timedelta(days=DEFAULT_CHART_DAYS - 1))
        if (last - first).days >= MAX_CHART_DAYS:
            first = last - timedelta(days=MAX_CHART_DAYS - 1)
            errors.setdefault("date_from", _l("charts cover at most %(days)d days", days=MAX_CHART_DAYS))
        since = datetime.combine(first, time(), console.tz)
        until = datetime.combine(last + timedelta(days=1), time(), console.tz)
        data = {
            "outcomes": [asdict(d) for d in await console.read_models.survey_outcomes_by_day(
                tz=console.tz, since=since, until=until, now=now)],
            "scores": [asdict(q) for q in await console.read_models.score_distribution()],
            "sellers": await console.panel.seller_scores(f),
            "cases": await console.read_models.cases_per_type_and_category(since=since, until=until),
        }
        # The chart's words in the reader's language: case types and "(no category)".
        gettext = console.locales.gettext
        data["cases"] = {kind: {gettext(NO_CATEGORY_LABEL) if name == NO_CATEGORY else name: n
                                for name, n in counts.items()}
                         for kind, counts in data["cases"].items()}
        data["type_labels"] = {kind: gettext(label(kind)) for kind in data["cases"]}
        raw = {**raw, "date_from": raw["date_from"] or first.isoformat(), "date_to": raw["date_to"] or last.isoformat()}
        return console.render("charts.html", request, {
            "data": data, "data_json": json.dumps(data), "raw": raw, "errors": errors,
            "query": urlencode({k: v for k, v in raw.items() if v})})

    # --- the catalog -----------------------------------------------------------------------------

    @requires(Role.MANAGER)
    async def catalog_page(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        return console.render("catalog.html", request, {
            "questions": await console.catalog.list_questions(), "rules": await console.catalog.list_rules(),
            "profiles": await console.catalog.list_profiles(), "products": await console.catalog.list_products(),
            "notice": console.locales.gettext(notice) if (notice := {"saved": N_("Saved."), "deleted": N_("Deleted.")}
                                                          .get(request.query.get("done", ""))) else None,
        })

    def kind_of(request: web.Request) -> str:
        kind = request.match_info["kind"]
        if kind not in KINDS:
            raise NotFound(_l("no such catalog section"))
        return kind

    def item_id(request: web.Request) -> int | None:
        raw = request.match_info.get("id", "new")
        if raw == "new":
            return None
        try:
            return int(raw)
        except ValueError:
            raise NotFound(_l("no such catalog entry")) from None

    async def load(kind: str, ident: int) -> dict[str, Any]:
        getter = {"questions": console.catalog.get_question, "rules": console.catalog.get_rule,
                  "profiles": console.catalog.get_profile, "products": console.catalog.get_product}[kind]
        return await getter(ident)

    async def render_form(request: web.Request, kind: str, item: dict[str, Any] | None, *,
                          values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                          status: int = 200) -> web.Response:
        values = values if values is not None else _values_of(kind, item)
        return console.render("catalog_form.html", request, {
            "kind": kind, "item": item, "values": values, "errors": errors or {}, "scales": SCALES,
            "weight_scores": _scores_for(values.get("scale", "1-5"), values.get("weights", {})),
            "questions": await console.catalog.list_questions() if kind == "rules" else [],
            "rules": await console.catalog.list_rules() if kind == "profiles" else [],
            "profiles": await console.catalog.list_profiles() if kind == "products" else [],
        }, status=status)

    @requires(Role.MANAGER)
    async def form_page(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        kind, ident = kind_of(request), item_id(request)
        item = await load(kind, ident) if ident is not None else None
        return await render_form(request, kind, item)

    @requires(Role.MANAGER)
    async def save(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        kind, ident = kind_of(request), item_id(request)
        item = await load(kind, ident) if ident is not None else None
        form = await Form.read(request)
        data, values, errors = _read_catalog_form(kind, form)
        if not errors:
            try:
                if kind == "questions":
                    if ident is None:
                        await console.catalog.create_question(data)
                    else:
                        await console.catalog.update_question(ident, data)
                elif kind == "rules":
                    await (console.catalog.create_rule(data) if ident is None
                           else console.catalog.update_rule(ident, data))
                elif kind == "profiles":
                    await (console.catalog.create_profile(data) if ident is None
                           else console.catalog.update_profile(ident, data))
                else:
                    await (console.catalog.create_product(data) if ident is None
                           else console.catalog.update_product(ident, data))
                return see_other(f"{PREFIX}/catalog?done=saved#{kind}")
            except NotFound:
                raise
            except DomainError as exc:
                errors = domain_errors(exc, "name" if kind in ("rules", "profiles") else "code")
        return await render_form(request, kind, item, values=values, errors=errors, status=422)

    @requires(Role.MANAGER)
    async def delete(request: web.Request) -> web.StreamResponse:
        surveys_ready()
        kind, ident = kind_of(request), item_id(request)
        if ident is None:
            raise NotFound(_l("nothing to delete"))
        item = await load(kind, ident)
        deleter = {"questions": console.catalog.delete_question, "rules": console.catalog.delete_rule,
                   "profiles": console.catalog.delete_profile, "products": console.catalog.delete_product}[kind]
        try:
            await deleter(ident)
        except NotFound:
            raise
        except DomainError as exc:
            return await render_form(request, kind, item, errors={"delete": message_of(exc)}, status=422)
        return see_other(f"{PREFIX}/catalog?done=deleted#{kind}")

    router.add_get("/panel", panel)
    router.add_get("/exports/panel.csv", panel_csv)
    router.add_get("/panel/detractors", detractors)
    router.add_get("/exports/detractors.csv", detractors_csv)
    router.add_get("/exports/sellers.csv", sellers_csv)
    router.add_get("/exports/cases.csv", cases_csv)
    router.add_get("/charts", charts)
    router.add_get("/catalog", catalog_page)
    router.add_get("/catalog/{kind}/{id}", form_page)
    router.add_post("/catalog/{kind}/{id}", save)
    router.add_post("/catalog/{kind}/{id:\\d+}/delete", delete)


def _me(request: web.Request) -> str:
    from posventa.intake.console.app import SESSION_KEY

    return request[SESSION_KEY].user.username


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]


def _values_of(kind: str, item: dict[str, Any] | None) -> dict[str, Any]:
    """Form values for an existing entry (or a blank form)."""
    if item is None:
        return {"scale": "1-5", "weights": {}}
    if kind == "questions":
        return {"code": item["code"], "text_es": item["text"]["es"], "text_pt": item["text"]["pt"],
                "text_en": item["text"]["en"], "scale": item["scale"],
                "weights": {k: str(v) for k, v in item["weights"].items()},
                "detractor_threshold": "" if item["detractor_threshold"] is None else str(item["detractor_threshold"])}
    if kind == "rules":
        return {"name": item["name"], "start_after_days": str(item["start_after_days"]),
                "expires_after_days": str(item["expires_after_days"]), "note": item["note"],
                "questions": ", ".join(q["code"] for q in item["questions"]),
                "operators": ", ".join(item["operators"]),
                "resurvey_after_close": "1" if item["resurvey_after_close"] else ""}
    if kind == "profiles":
        return {"name": item["name"], "notes": item["notes"], "rules": [str(r["id"]) for r in item["rules"]]}
    return {"code": item["code"], "name": item["name"],
            "profile": str(item["profile"]["id"]) if item["profile"] else ""}


def _scores_for(scale: str, weights: dict[str, str]) -> list[tuple[str, str]]:
    """The score inputs to show: the scale's scores, or what was typed if the scale is bad."""
    try:
        from posventa.core.surveys.scales import Scale

        scores = Scale.parse(scale).scores
    except (ImportError, ValidationError):
        scores = tuple(weights)
    return [(s, weights.get(s, "")) for s in scores]


def _number(text: str) -> int | str:
    """An int when the text is one; otherwise the text, so core names the field."""
    try:
        return int(text.strip())
    except ValueError:
        return text


def _read_catalog_form(kind: str, form: Form) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(data for core.surveys.Catalog, values to show back, form-level errors)."""
    errors: dict[str, str] = {}
    if kind == "questions":
        weights_raw = {k[len("weight_"):]: form.text(k, max_len=10).strip() for k in form.data
                       if isinstance(k, str) and k.startswith("weight_")}
        values = {"code": form.text("code", max_len=200), "text_es": form.text("text_es", max_len=5000),
                  "text_pt": form.text("text_pt", max_len=5000), "text_en": form.text("text_en", max_len=5000),
                  "scale": form.text("scale", max_len=20), "weights": weights_raw,
                  "detractor_threshold": form.text("detractor_threshold", max_len=10).strip()}
        weights: dict[str, Any] = {}
        for score, raw in weights_raw.items():
            if raw == "":
                continue  # core reports the missing score by name
            try:
                weights[score] = int(raw)
            except ValueError:
                errors["weights"] = _l("the weight for score %(score)s must be a whole number from -100 to 100",
                                       score=score)
        data = {"code": values["code"], "text": {"es": values["text_es"], "pt": values["text_pt"],
                                                 "en": values["text_en"]},
                "scale": values["scale"], "weights": weights,
                # Blank: the [surveys] default; "off"; or a weight (core names a bad one).
                "detractor_threshold": (_number(values["detractor_threshold"]) if values["detractor_threshold"]
                                        else None)}
        return data, values, errors
    if kind == "rules":
        values = {k: form.text(k, max_len=10_000) for k in
                  ("name", "start_after_days", "expires_after_days", "note", "questions", "operators",
                   "resurvey_after_close")}
        data = {"name": values["name"], "start_after_days": _number(values["start_after_days"]),
                "expires_after_days": _number(values["expires_after_days"]), "note": values["note"],
                "questions": _split(values["questions"]), "operators": _split(values["operators"]),
                "resurvey_after_close": values["resurvey_after_close"] == "1"}
        return data, values, errors
    if kind == "profiles":
        values = {"name": form.text("name", max_len=300), "notes": form.text("notes", max_len=10_000),
                  "rules": form.all("rules")}
        rules: list[int | str] = [_number(r) for r in values["rules"]]
        return {"name": values["name"], "notes": values["notes"], "rules": rules}, values, errors
    values = {"code": form.text("code", max_len=200), "name": form.text("name", max_len=300),
              "profile": form.text("profile", max_len=30)}
    data = {"code": values["code"], "name": values["name"],
            "profile": _number(values["profile"]) if values["profile"] else None}
    return data, values, errors
