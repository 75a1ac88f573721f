"""Business-hours calendars and business-time arithmetic. Pure: no database, no clock.

A calendar has a time zone, weekly hours (each day zero or more ``[start, end)`` spans,
e.g. 09:00–13:00 and 14:00–18:00), public holidays from the ``holidays`` package by
country and subdivision, custom closed days, and custom open days with hours of their
own (which win over a weekend or a holiday).

Spans are in the calendar's wall-clock time; each is turned into UTC on its own day, so
a span across a DST change is as long as the clock on the wall says it is not, but every
instant is placed correctly. All inputs and outputs are aware datetimes; outputs are UTC.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

from posventa.core.errors import ValidationError, explain

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: How far a search for open hours goes before deciding a calendar is (almost) never open.
MAX_SEARCH_DAYS = 3 * 366

_SPAN = re.compile(r"^\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")


class CalendarError(ValidationError):
    """A calendar definition that cannot work; ``field`` names what is wrong (a config key
    at start-up, a form field in the console)."""


#: A span of the day in minutes since midnight, end exclusive (1440 = midnight after).
Span = tuple[int, int]


def parse_spans(values: Sequence[str], *, field: str) -> tuple[Span, ...]:
    """``["09:00-13:00", "14:00-18:00"]`` → ``((540, 780), (840, 1080))``, sorted.

    Refuses malformed, inverted, empty and overlapping spans, naming ``field``."""
    spans: list[Span] = []
    for value in values:
        if not isinstance(value, str):
            raise CalendarError(explain("span_not_text", "each span must be a string like \"09:00-18:00\""), field=field)
        m = _SPAN.match(value)
        if not m:
            raise CalendarError(explain("span_invalid", "%(value)r is not a span like \"09:00-18:00\"", value=value),
                                field=field)
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise CalendarError(explain("span_time_invalid", "%(value)r is not a valid time of day", value=value),
                                field=field)
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise CalendarError(explain("span_inverted", "%(value)r ends before it starts (inverted hours)",
                                        value=value), field=field)
        spans.append((start, end))
    spans.sort()
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        if s2 < e1:
            raise CalendarError(explain("spans_overlap", "spans %(first)s and %(second)s overlap",
                                        first=f"{_fmt(s1)}-{_fmt(e1)}", second=f"{_fmt(s2)}-{_fmt(e2)}"),
                                field=field)
    return tuple(spans)


def _fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_date(value: str, *, field: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise CalendarError(explain("date_invalid", "%(value)r is not a date like 2026-12-24", value=value),
                            field=field) from None


def zone(name: str, *, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # OSError: a directory name ("America") or an over-long name, see core.config.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CalendarError(explain("timezone_unknown", "unknown time zone %(name)r", name=name), field=field) from None


def holiday_source(country: str, subdivision: str, *, field: str) -> holidays_lib.HolidayBase | None:
    """The ``holidays`` package's calendar for a country (and subdivision), checked now so
    that an unknown code stops start-up instead of failing on the first case."""
    if not country:
        if subdivision:
            raise CalendarError(explain("subdivision_without_country", "a subdivision needs a country"),
                                field=f"{field}.subdivision")
        return None
    try:
        return holidays_lib.country_holidays(country.upper(), subdiv=subdivision or None)
    except NotImplementedError:
        if subdivision and country.upper() in holidays_lib.list_supported_countries():
            raise CalendarError(explain("subdivision_unknown", "country %(country)r has no subdivision %(subdivision)r",
                                        country=country, subdivision=subdivision),
                                field=f"{field}.subdivision") from None
        raise CalendarError(explain("country_unknown", "unknown country code %(country)r (ISO 3166-1 alpha-2, e.g. "
                                    "AR, BR, ES)", country=country), field=f"{field}.country") from None


@dataclass(frozen=True)
class BusinessCalendar:
    name: str
    tz: ZoneInfo
    #: Spans per weekday, Monday first.
    weekly: tuple[tuple[Span, ...], ...]
    closed_days: frozenset[date] = frozenset()
    #: Days open with hours of their own, whatever the weekday or a holiday says.
    open_days: Mapping[date, tuple[Span, ...]] = field(default_factory=dict)
    country: str = ""
    subdivision: str = ""
    #: The ``holidays`` package's calendar (it computes each year when first asked).
    holiday_source: holidays_lib.HolidayBase | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise CalendarError(explain("weekly_incomplete", "weekly hours need the seven weekdays"),
                                field=f"calendars.{self.name}")
        if not any(self.weekly) and not self.open_days:
            raise CalendarError(explain("calendar_never_open", "the calendar is never open: give hours for at least "
                                        "one weekday"), field=f"calendars.{self.name}")

    # --- one day -------------------------------------------------------------------------

    def is_holiday(self, day: date) -> bool:
        return day in self.closed_days or (self.holiday_source is not None and day in self.holiday_source)

    def spans_on(self, day: date) -> tuple[Span, ...]:
        """The open spans of a local date, after custom open days, closed days and holidays."""
        custom = self.open_days.get(day)
        if custom is not None:
            return custom
        if self.is_holiday(day):
            return ()
        return self.weekly[day.weekday()]

    def _utc_spans(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        for start, end in self.spans_on(day):
            yield _local_to_utc(day, start, self.tz), _local_to_utc(day, end, self.tz)

    # --- arithmetic ----------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        local_day = at.astimezone(self.tz).date()
        # A span's UTC bounds may fall on the neighbouring local day around DST changes.
        return any(s <= at < e for d in (local_day - timedelta(days=1), local_day) for s, e in self._utc_spans(d))

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself when open, else the start of the next open span (UTC)."""
        for s, e in self._spans_from(at):
            if at < e:
                return max(s, at).astimezone(UTC)
        raise CalendarError(explain("calendar_no_hours", "no open hours within %(days)s days", days=MAX_SEARCH_DAYS),
                            field=f"calendars.{self.name}")

    def add_minutes(self, start: datetime, minutes: float) -> datetime:
        """The instant ``minutes`` business minutes after ``start`` (UTC).

        Counting starts at ``start`` if it is open, else at the next opening; a target
        that ends exactly at a closing time is due then, not at the next opening."""
        if minutes < 0:
            raise ValueError("minutes must not be negative")
        remaining = timedelta(minutes=minutes)
        for s, e in self._spans_from(start):
            if start >= e:
                continue
            begin = max(s, start)
            if begin + remaining <= e:
                return (begin + remaining).astimezone(UTC)
            remaining -= e - begin
        raise CalendarError(explain("calendar_no_hours", "no open hours within %(days)s days", days=MAX_SEARCH_DAYS),
                            field=f"calendars.{self.name}")

    def minutes_between(self, start: datetime, end: datetime) -> float:
        """Business minutes from ``start`` to ``end`` (0 when end is not after start)."""
        if end <= start:
            return 0.0
        total = timedelta()
        last_day = end.astimezone(self.tz).date() + timedelta(days=1)
        for s, e in self._spans_from(start, until=last_day):
            if s >= end:
                break
            lo, hi = max(s, start), min(e, end)
            if hi > lo:
                total += hi - lo
        return total.total_seconds() / 60

    def _spans_from(self, at: datetime, *, until: date | None = None) -> Iterator[tuple[datetime, datetime]]:
        """Open spans in UTC, in order, from the local day before ``at`` (DST edges)."""
        day = at.astimezone(self.tz).date() - timedelta(days=1)
        stop = until if until is not None else day + timedelta(days=MAX_SEARCH_DAYS)
        while day <= stop:
            yield from self._utc_spans(day)
            day += timedelta(days=1)


@functools.lru_cache(maxsize=4096)
def _local_to_utc(day: date, minute: int, tz: ZoneInfo) -> datetime:
    # 24:00 is midnight of the next day; a wall time skipped by DST maps forward (fold=0).
    local = datetime.combine(day, time()) + timedelta(minutes=minute)
    return local.replace(tzinfo=tz).astimezone(UTC)


def build_calendar(
    *,
    name: str,
    timezone: str,
    weekly: Mapping[str, Sequence[str]],
    country: str = "",
    subdivision: str = "",
    closed_days: Sequence[str] = (),
    open_days: Sequence[str] = (),
    field_prefix: str | None = None,
) -> BusinessCalendar:
    """A calendar from its config values, refusing anything wrong with the field named.

    ``open_days`` entries are ``"2026-12-26 09:00-13:00"`` (one or more spans)."""
    prefix = field_prefix or f"calendars.{name}"
    tz = zone(timezone, field=f"{prefix}.timezone")
    week = tuple(parse_spans(weekly.get(d, ()), field=f"{prefix}.{d}") for d in WEEKDAYS)
    closed = frozenset(parse_date(v, field=f"{prefix}.closed_days") for v in closed_days)
    opened: dict[date, tuple[Span, ...]] = {}
    for value in open_days:
        if not isinstance(value, str) or not value.strip():
            raise CalendarError(explain("open_day_shape", "each open day is \"YYYY-MM-DD HH:MM-HH:MM\""),
                                field=f"{prefix}.open_days")
        day_text, *span_texts = value.split()
        day = parse_date(day_text, field=f"{prefix}.open_days")
        if not span_texts:
            raise CalendarError(explain("open_day_no_hours", "%(value)r gives no hours (\"%(day)s 09:00-13:00\")",
                                        value=value, day=day_text), field=f"{prefix}.open_days")
        if day in opened:
            raise CalendarError(explain("open_day_twice", "%(day)s is listed twice", day=day_text),
                                field=f"{prefix}.open_days")
        opened[day] = parse_spans(span_texts, field=f"{prefix}.open_days")
    both = closed & opened.keys()
    if both:
        raise CalendarError(explain("day_closed_and_open", "%(day)s is both closed and open",
                                    day=min(both).isoformat()), field=f"{prefix}.open_days")
    source = holiday_source(country, subdivision, field=prefix)
    return BusinessCalendar(name=name, tz=tz, weekly=week, closed_days=closed, open_days=opened,
                            country=country.upper(), subdivision=subdivision, holiday_source=source)


# --- telling a customer when the team answers ----------------------------------------------

_WEEKDAY_NAMES: Mapping[str, tuple[str, ...]] = {
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "pt": ("segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira", "sábado", "domingo"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_WHEN: Mapping[str, str] = {
    "es": "Estamos fuera de horario: abrimos el {weekday} {day} a las {time} ({zone}).",
    "pt": "Estamos fora do horário: abrimos {weekday}, dia {day}, às {time} ({zone}).",
    "en": "We are closed right now: we open {weekday} {day} at {time} ({zone}).",
}


#: The contact attribute holding the customer's time zone (an IANA name, e.g. "Europe/Lisbon").
CONTACT_TIMEZONE_ATTRIBUTE = "timezone"
#: A customer's time zone as given (a browser's IANA name, a contact attribute): at most this long.
MAX_ZONE_NAME = 64


def customer_zone(name: object) -> ZoneInfo | None:
    """The customer's time zone from an untrusted name (``Intl`` in a browser, a contact
    attribute), or None when it is missing or no zone we know: the notice then shows the
    calendar's time."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_ZONE_NAME or name.startswith(("/", ".")) \
            or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def opening_notice(calendar: BusinessCalendar, at: datetime, language: str, *,
                   customer_tz: ZoneInfo | None = None) -> str | None:
    """None while the calendar is open; else "we open Monday 7 at 09:00", in ``language``,
    in the customer's time zone when known, else the calendar's."""
    if calendar.is_open(at):
        return None
    opening = calendar.next_open(at)
    shown_tz = customer_tz or calendar.tz
    local = opening.astimezone(shown_tz)
    names = _WEEKDAY_NAMES.get(language) or _WEEKDAY_NAMES["es"]
    template = _WHEN.get(language) or _WHEN["es"]
    return template.format(weekday=names[local.weekday()], day=local.day, time=local.strftime("%H:%M"),
                           zone=shown_tz.key)
