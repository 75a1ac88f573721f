"""Window arithmetic at its edges: first and last day, the exact instant of expiry,
and days that are 23 or 25 hours long (DST), in real time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from posventa.core.surveys.windows import day_range, parse_instant, start_of_local_day, window_for

BA = ZoneInfo("America/Argentina/Buenos_Aires")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")
MADRID = ZoneInfo("Europe/Madrid")


def test_window_is_whole_local_days_and_half_open():
    # Closed late on Monday 2 March 2026 (23:30 in Buenos Aires = 02:30 UTC on Tuesday).
    closed = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)
    w = window_for(closed, start_after_days=7, expires_after_days=3, tz=BA)
    assert w.start == datetime(2026, 3, 9, 3, 0, tzinfo=UTC)  # 00:00 on the 9th, UTC-3
    assert w.end == datetime(2026, 3, 12, 3, 0, tzinfo=UTC)  # 00:00 on the 12th
    # First day: not a microsecond before midnight, open at midnight.
    assert not w.is_open(w.start - timedelta(microseconds=1))
    assert w.is_open(w.start)
    # Last day (the 11th) is still open up to its last instant ...
    assert w.is_open(datetime(2026, 3, 12, 2, 59, 59, 999999, tzinfo=UTC))
    # ... and at exactly `end` the window has expired.
    assert not w.is_open(w.end) and w.is_expired(w.end)
    assert not w.is_expired(w.end - timedelta(microseconds=1))


def test_the_local_date_decides_not_the_utc_date():
    # 01:00 UTC on the 10th is still the 9th in Buenos Aires.
    w = window_for(datetime(2026, 3, 10, 1, 0, tzinfo=UTC), start_after_days=0, expires_after_days=1, tz=BA)
    assert w.start == datetime(2026, 3, 9, 3, 0, tzinfo=UTC)
    assert w.end - w.start == timedelta(days=1)


def test_start_after_zero_days_opens_on_the_closing_day():
    closed = datetime(2026, 5, 4, 18, 0, tzinfo=BA)
    w = window_for(closed, start_after_days=0, expires_after_days=1, tz=BA)
    assert w.is_open(closed) and w.start.astimezone(BA).date() == date(2026, 5, 4)


def test_madrid_spring_forward_day_is_23_hours():
    # Clocks go 02:00 → 03:00 on Sunday 29 March 2026 in Madrid.
    closed = datetime(2026, 3, 20, 10, 0, tzinfo=MADRID)
    w = window_for(closed, start_after_days=8, expires_after_days=2, tz=MADRID)  # 28th and 29th
    assert w.start == datetime(2026, 3, 27, 23, 0, tzinfo=UTC)  # 00:00 CET
    assert w.end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 00:00 CEST on the 30th
    assert w.end - w.start == timedelta(hours=47)
    assert w.end.astimezone(MADRID).hour == 0


def test_madrid_fall_back_day_is_25_hours():
    closed = datetime(2026, 10, 24, 12, 0, tzinfo=MADRID)  # Saturday; Sunday 25th has 25 hours
    w = window_for(closed, start_after_days=1, expires_after_days=1, tz=MADRID)
    assert w.end - w.start == timedelta(hours=25)
    assert w.start.astimezone(MADRID).hour == 0 and w.end.astimezone(MADRID).hour == 0


def test_sao_paulo_midnight_that_did_not_exist():
    # On 4 November 2018 Brazil jumped from 00:00 to 01:00: the day began at 01:00 (-02).
    day_start = start_of_local_day(date(2018, 11, 4), SAO_PAULO)
    assert day_start == datetime(2018, 11, 4, 3, 0, tzinfo=UTC)
    assert day_start.astimezone(SAO_PAULO).isoformat() == "2018-11-04T01:00:00-02:00"
    w = window_for(datetime(2018, 11, 1, 15, 0, tzinfo=SAO_PAULO), start_after_days=3, expires_after_days=1,
                   tz=SAO_PAULO)
    assert w.start == day_start
    assert w.end == datetime(2018, 11, 5, 2, 0, tzinfo=UTC)  # 00:00 -02 on the 5th
    assert w.end - w.start == timedelta(hours=23)
    # The instant before is still the 3rd (23:59:59 -03).
    assert (day_start - timedelta(seconds=1)).astimezone(SAO_PAULO).date() == date(2018, 11, 3)


def test_sao_paulo_fall_back_repeats_the_last_hour_of_the_day():
    # On 16 February 2019 at 24:00 (-02) clocks went back to 23:00 (-03): the 16th had 25 hours.
    w = window_for(datetime(2019, 2, 15, 9, 0, tzinfo=SAO_PAULO), start_after_days=1, expires_after_days=1,
                   tz=SAO_PAULO)
    assert w.start == datetime(2019, 2, 16, 2, 0, tzinfo=UTC)
    assert w.end == datetime(2019, 2, 17, 3, 0, tzinfo=UTC)
    assert w.end - w.start == timedelta(hours=25)
    # A sale at 23:30 of the repeated hour (second pass, -03) is still on the 16th.
    late = datetime(2019, 2, 17, 2, 30, tzinfo=UTC)
    assert late.astimezone(SAO_PAULO).date() == date(2019, 2, 16)
    assert window_for(late, start_after_days=0, expires_after_days=1, tz=SAO_PAULO).start == w.start


@pytest.mark.parametrize("start,expires", [(-1, 1), (0, 0), (3651, 1), (0, 3651)])
def test_days_out_of_range_are_refused(start, expires):
    with pytest.raises(ValueError):
        window_for(datetime(2026, 1, 1, tzinfo=UTC), start_after_days=start, expires_after_days=expires, tz=BA)


def test_naive_instants_are_refused():
    with pytest.raises(ValueError):
        window_for(datetime(2026, 1, 1), start_after_days=0, expires_after_days=1, tz=BA)


def test_parse_instant_forms():
    assert parse_instant("2026-03-01", BA) == datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    assert parse_instant("2026-03-01T15:30", BA) == datetime(2026, 3, 1, 18, 30, tzinfo=UTC)
    assert parse_instant("2026-03-01T15:30:00Z", BA) == datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    assert parse_instant("2026-03-01T15:30:00+01:00", BA) == datetime(2026, 3, 1, 14, 30, tzinfo=UTC)
    for bad in ("", "yesterday", "2026-13-01", "01/03/2026", "x" * 100, "0001-01-01", "9999-12-31T23:59+14:00"):
        with pytest.raises(ValueError):
            parse_instant(bad, BA)


def test_day_range_is_inclusive_local_days():
    lo, hi = day_range(date(2026, 3, 1), date(2026, 3, 31), BA)
    assert lo == datetime(2026, 3, 1, 3, 0, tzinfo=UTC) and hi == datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
    assert day_range(None, None, BA) == (None, None)
