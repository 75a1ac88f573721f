"""The managers' SLA report page: achievement and times per agent, sector, channel, type
or week, with charts (Chart.js, vendored) and a CSV download. The figures are
core.sla_report's (its docstring says what each one counts); this view only reads the
form and names the groups in the reader's language."""

from __future__ import annotations

from datetime import UTC, date
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from posventa.core.errors import ValidationError
from posventa.core.sla_report import GROUPINGS, SlaReport, SlaReportFilter, report_csv
from posventa.intake.console.app import Console, requires
from posventa.intake.console.auth import Role
from posventa.intake.console.i18n import N_
from posventa.intake.console.labels import label

GROUPING_LABELS = {"": N_("No grouping"), "agent": N_("Agent"), "sector": N_("Sector"), "channel": N_("Channel"),
                   "type": N_("Type"), "week": N_("Week")}


def _read(query: Any, today: date) -> tuple[SlaReportFilter, dict[str, str], dict[str, str]]:
    """(the filter to run, the raw values to show back, errors by field). A bad value is
    shown next to its field and the default used instead."""
    raw = {k: (query.get(k) or "").strip()[:20] for k in ("from", "to", "group_by")}
    errors: dict[str, str] = {}
    dates: dict[str, date | None] = {}
    for name in ("from", "to"):
        try:
            dates[name] = date.fromisoformat(raw[name]) if raw[name] else None
        except ValueError:
            errors[name] = N_("use a date like 2026-03-31")
            dates[name] = None
    group_by = raw["group_by"] or None
    if group_by is not None and group_by not in GROUPINGS:
        errors["group_by"] = N_("unknown grouping")
        group_by = None
    try:
        f = SlaReportFilter.default(today, since=dates["from"], until=dates["to"], group_by=group_by)
    except ValidationError as exc:
        # The rule is core's; the words are the console's, translated.
        errors[exc.field or "from"] = (N_("the last day must not be before the first") if exc.field == "to"
                                       else N_("the period is too long: a report covers a year at most"))
        f = SlaReportFilter.default(today, group_by=group_by)
    return f, raw, errors


def register(router: web.UrlDispatcher, console: Console) -> None:
    async def build(request: web.Request) -> tuple[SlaReport, dict[str, str], dict[str, str]]:
        now = console.clock.now()
        f, raw, errors = _read(request.query, now.astimezone(UTC).date())
        return await console.sla_reports.report(f, now=now), raw, errors

    def group_name(report: SlaReport, group: str | None) -> str:
        gettext = console.locales.gettext
        if group is None:
            return gettext(N_("(none)"))
        if report.group_by in ("channel", "type"):
            return gettext(label(group))
        return group

    @requires(Role.MANAGER)
    async def page(request: web.Request) -> web.StreamResponse:
        report, raw, errors = await build(request)
        gettext = console.locales.gettext
        names = [group_name(report, r.group) for r in report.rows]
        chart = {
            "groups": names,
            "achieved": {t: [r.target(t).achieved_percent for r in report.rows] for t in ("first_response", "resolution")},
            "minutes": {f"{t}_{q}": [getattr(r.target(t), f"{q}_minutes") for r in report.rows]
                        for t in ("first_response", "resolution") for q in ("median", "p90")},
            "labels": {"first_response": gettext(label("first_response")), "resolution": gettext(label("resolution")),
                       "first_response_median": gettext(N_("First response, median")),
                       "first_response_p90": gettext(N_("First response, p90")),
                       "resolution_median": gettext(N_("Resolution, median")),
                       "resolution_p90": gettext(N_("Resolution, p90")),
                       "percent": gettext(N_("Achieved")) + " (%)", "minutes": gettext(N_("Business minutes"))},
        }
        shown = {"from": report.since.isoformat(), "to": report.until.isoformat(), "group_by": report.group_by or ""}
        return console.render("sla_report.html", request, {
            "report": report, "rows": list(zip(names, report.rows, strict=True)), "chart": chart,
            "raw": {**shown, **{k: v for k, v in raw.items() if k in errors}},
            "errors": {k: gettext(v) for k, v in errors.items()},
            "groupings": GROUPING_LABELS,
            "csv_query": urlencode({k: v for k, v in shown.items() if v})})

    @requires(Role.MANAGER)
    async def csv_export(request: web.Request) -> web.StreamResponse:
        report, _raw, errors = await build(request)
        if errors:
            raise web.HTTPBadRequest(text="; ".join(f"{k}: {v}" for k, v in errors.items()))
        # A byte-order mark so spreadsheet programs read the UTF-8 (ñ, ç, ã) correctly.
        return web.Response(body=("\ufeff" + report_csv(report)).encode(), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="sla-report-{report.since}-'
                                                            f'{report.until}.csv"', "Cache-Control": "no-store"})

    router.add_get("/reports/sla", page)
    router.add_get("/exports/sla-report.csv", csv_export)
