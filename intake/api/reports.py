"""/api/v1/reports/sla: SLA achievement, median and p90 first-response and resolution
times (core/sla_report.py says what each figure counts), as JSON or CSV."""

from __future__ import annotations

from datetime import UTC

from aiohttp import web

from posventa.core.sla_report import DEFAULT_DAYS, GROUPINGS, MAX_DAYS, SlaReportFilter, SlaReports, report_csv, report_dict
from posventa.core.ports import Clock
from posventa.intake.api.openapi import DATE, ApiRegistry, enum, query, query_param

SLA_REPORT_DOC = f"""Cases opened from `from` to `to` (UTC days, both included; by default the last
{DEFAULT_DAYS} days, at most {MAX_DAYS}) under an SLA policy. Per target: `met` and `missed` (a target
still running past its due time is missed; one within its time is pending, in neither),
`achieved_percent` = met / (met + missed) × 100, and the median and 90th percentile
(linear interpolation) of the time taken, in **business minutes** of the case's policy
calendar less the time waiting for the customer — the measure the targets count in.
`group_by` splits the figures per assigned agent, sector, channel, case type or ISO week
(named by its Monday, UTC); `total` covers every case. `format=csv` (or
`Accept: text/csv`) answers the same figures as CSV, one line per group and a last
`total` line."""

_FIGURES = {
    "type": "object",
    "required": ["met", "missed", "achieved_percent", "timed", "median_minutes", "p90_minutes"],
    "properties": {
        "met": {"type": "integer", "minimum": 0},
        "missed": {"type": "integer", "minimum": 0},
        "achieved_percent": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "timed": {"type": "integer", "minimum": 0, "description": "durations the median and p90 are over"},
        "median_minutes": {"type": ["number", "null"], "minimum": 0},
        "p90_minutes": {"type": ["number", "null"], "minimum": 0},
    },
}
_ROW = {
    "type": "object",
    "required": ["group", "cases", "first_response", "resolution"],
    "properties": {
        "group": {"type": ["string", "null"], "description": "the agent, sector, channel, type or week; "
                                                            "null for none (and in the total)"},
        "cases": {"type": "integer", "minimum": 0},
        "first_response": {"$ref": "#/components/schemas/SlaFigures"},
        "resolution": {"$ref": "#/components/schemas/SlaFigures"},
    },
}
SLA_REPORT = {
    "type": "object",
    "required": ["group_by", "from", "to", "generated_at", "rows", "total"],
    "properties": {
        "group_by": {"anyOf": [enum(GROUPINGS), {"type": "null"}]},
        "from": {"type": "string", "format": "date"},
        "to": {"type": "string", "format": "date"},
        "generated_at": {"type": "string", "format": "date-time"},
        "rows": {"type": "array", "items": {"$ref": "#/components/schemas/SlaReportRow"}},
        "total": {"$ref": "#/components/schemas/SlaReportRow"},
    },
}


def wants_csv(request: web.Request, fmt: str | None) -> bool:
    """``format`` wins; without it, an Accept that names text/csv and not JSON."""
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("Accept", "").lower()
    return "text/csv" in accept and "application/json" not in accept


def register(api: ApiRegistry, *, reports: SlaReports, clock: Clock) -> None:
    api.schemas["SlaFigures"] = _FIGURES
    api.schemas["SlaReportRow"] = _ROW
    api.schemas["SlaReport"] = SLA_REPORT

    async def sla_report(request: web.Request) -> web.StreamResponse:
        q = query(request)
        now = clock.now()
        f = SlaReportFilter.default(now.astimezone(UTC).date(), since=q.get("from"), until=q.get("to"),
                                    group_by=q.get("group_by"))
        report = await reports.report(f, now=now)
        if wants_csv(request, q.get("format")):
            return web.Response(text=report_csv(report), content_type="text/csv", charset="utf-8",
                                headers={"Content-Disposition": 'attachment; filename="sla-report.csv"'})
        return web.json_response(report_dict(report))

    api.add("GET", "/reports/sla", sla_report, tag="reports",
            summary="SLA achievement and first-response / resolution times, per agent, sector, channel, type or week",
            description=SLA_REPORT_DOC, response={"$ref": "#/components/schemas/SlaReport"},
            alternatives={"text/csv": {"type": "string"}},
            params=[query_param("from", DATE, "first day (UTC), included"),
                    query_param("to", DATE, "last day (UTC), included"),
                    query_param("group_by", enum(GROUPINGS)),
                    query_param("format", enum(["json", "csv"]))],
            errors={422: f"`to` is before `from`, or the period is longer than {MAX_DAYS} days"})
