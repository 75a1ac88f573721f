"""When a survey may run: whole local days in the configured time zone.

A rule says "start N days after the deal closed, stay available M days". Days are
calendar days where the business is, not multiples of 24 hours: a day that loses or
gains an hour to daylight saving is still one day, so every window starts at a local
midnight and ends at a local midnight.

The convention (used everywhere, tested at the exact instants)::

    start = first instant of local date (closed_at's local date + start_after_days)
    end   = first instant of local date (start's local date + expires_after_days)
    open  ⇔ start <= now < end          (half-open: at ``end`` it has expired)

So a rule with start_after_days=7, expires_after_days=3 for a sale closed any time on
Monday 1st opens at 00:00 on Monday 8th and is available on the 8th, 9th and 10th; at
00:00 on the 11th it is expired. Both instants are stored as aware UTC.

"First instant" rather than "00:00": where a DST change skips midnight (Brazil until
2019 moved clocks from 00:00 to 01:00), the day begins at 01:00 local; where midnight
repeats, the earlier one counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: Bounds that keep a window's end representable and a typo (36500 days) visible.
MAX_DAYS = 3650
MIN_YEAR, MAX_YEAR = 1970, 9000


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    def is_open(self, now: datetime) -> bool:
        return self.start <= now < self.end

    def is_expired(self, now: datetime) -> bool:
        return now >= self.end


def start_of_local_day(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz``, as aware UTC.

    ``fold=0`` makes a non-existent local midnight resolve with the offset in force
    before the jump, which lands exactly on the first real instant of the day; an
    ambiguous midnight resolves to its earlier occurrence.
    """
    local = datetime.combine(day, time(0), tzinfo=tz)
    return local.astimezone(UTC)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    if instant.tzinfo is None:
        raise ValueError("naive datetime: give an aware instant")
    return instant.astimezone(tz).date()


def window_for(closed_at: datetime, *, start_after_days: int, expires_after_days: int, tz: ZoneInfo) -> Window:
    """The window of one rule for a deal closed at ``closed_at`` (aware)."""
    if not 0 <= start_after_days <= MAX_DAYS:
        raise ValueError(f"start_after_days must be between 0 and {MAX_DAYS}")
    if not 1 <= expires_after_days <= MAX_DAYS:
        raise ValueError(f"expires_after_days must be between 1 and {MAX_DAYS}")
    first = local_date(closed_at, tz) + timedelta(days=start_after_days)
    return Window(start_of_local_day(first, tz), start_of_local_day(first + timedelta(days=expires_after_days), tz))


def day_range(first: date | None, last: date | None, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """Local dates ``first..last`` (both inclusive) as a half-open UTC interval, for filters.

    At the ends of the calendar (0001-01-01, 9999-12-31) the bounding instant does not
    exist in ``datetime`` (OverflowError, a 500 from a filter); such a bound is no bound."""
    try:
        lo = start_of_local_day(first, tz) if first else None
    except OverflowError:
        lo = None
    try:
        hi = start_of_local_day(last + timedelta(days=1), tz) if last else None
    except OverflowError:
        hi = None
    return lo, hi


def parse_instant(value: str, tz: ZoneInfo) -> datetime:
    """A deal's closing time from outside: ``2026-03-01`` (a local date: its first
    instant), a local ``2026-03-01T15:30`` or an ISO instant with an offset."""
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    if len(text) > 40:
        raise ValueError("is too long for a date")
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), time(0), tzinfo=tz)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (use YYYY-MM-DD or an ISO 8601 date-time)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        # Far dates overflow window arithmetic; no deal closed then.
        raise ValueError(f"{value!r} is not between {MIN_YEAR} and {MAX_YEAR}")
    return parsed.astimezone(UTC)
