"""Business-hours calendars: business-time arithmetic, holidays, custom days, and the
refusal of calendars that cannot work (naming the field)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posventa.core.business_hours import CalendarError, build_calendar, opening_notice
from posventa.core.config import load_config
from posventa.core.errors import ConfigError

BA = ZoneInfo("America/Argentina/Buenos_Aires")
WEEKDAYS_9_18 = {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def local(y, m, d, hh, mm, tz=BA):
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def test_friday_1730_plus_two_hours_with_monday_holiday_is_tuesday_1030():
    # 2026-12-04 is a Friday; Monday 2026-12-07 is a custom closed day.
    cal = build_calendar(name="ba", timezone=BA.key, weekly=WEEKDAYS_9_18, closed_days=["2026-12-07"])
    due = cal.add_minutes(local(2026, 12, 4, 17, 30), 120)
    assert due == local(2026, 12, 8, 10, 30).astimezone(UTC)
    assert cal.minutes_between(local(2026, 12, 4, 17, 30), due) == 120


def test_holidays_come_from_the_holidays_package_by_country():
    # 2026-07-09 (Thursday) is Argentina's Independence Day, and Friday 10 a bridge holiday.
    cal = build_calendar(name="ar", timezone=BA.key, weekly=WEEKDAYS_9_18, country="AR")
    assert cal.spans_on(local(2026, 7, 9, 0, 0).date()) == ()
    assert cal.add_minutes(local(2026, 7, 8, 17, 0), 120) == local(2026, 7, 13, 10, 0).astimezone(UTC)


def test_subdivision_holidays():
    # 9 July is a holiday in São Paulo state only (Revolução Constitucionalista).
    sp = build_calendar(name="sp", timezone="America/Sao_Paulo", weekly=WEEKDAYS_9_18, country="BR",
                        subdivision="SP")
    rj = build_calendar(name="rj", timezone="America/Sao_Paulo", weekly=WEEKDAYS_9_18, country="BR",
                        subdivision="RJ")
    day = datetime(2026, 7, 9).date()
    assert sp.spans_on(day) == () and rj.spans_on(day) == ((540, 1080),)


def test_split_hours_skip_the_lunch_break():
    cal = build_calendar(name="split", timezone=BA.key, weekly={"mon": ["14:00-18:00", "09:00-13:00"]})
    start = local(2026, 12, 7, 12, 30)  # a Monday
    assert cal.add_minutes(start, 60) == local(2026, 12, 7, 14, 30).astimezone(UTC)
    assert not cal.is_open(local(2026, 12, 7, 13, 30)) and cal.is_open(local(2026, 12, 7, 14, 0))
    assert cal.minutes_between(local(2026, 12, 7, 8, 0), local(2026, 12, 7, 19, 0)) == 8 * 60


def test_custom_open_day_wins_over_weekend_and_holiday():
    cal = build_calendar(name="c", timezone=BA.key, weekly=WEEKDAYS_9_18, country="AR",
                         open_days=["2026-12-05 10:00-12:00", "2026-07-09 09:00-10:00"])
    assert cal.add_minutes(local(2026, 12, 4, 17, 30), 60) == local(2026, 12, 5, 10, 30).astimezone(UTC)
    assert cal.is_open(local(2026, 7, 9, 9, 30))


def test_a_target_ending_at_closing_time_is_due_then():
    cal = build_calendar(name="c", timezone=BA.key, weekly=WEEKDAYS_9_18)
    assert cal.add_minutes(local(2026, 12, 4, 17, 0), 60) == local(2026, 12, 4, 18, 0).astimezone(UTC)
    assert cal.add_minutes(local(2026, 12, 5, 11, 0), 0) == local(2026, 12, 7, 9, 0).astimezone(UTC)


def test_daylight_saving_change_is_placed_correctly():
    # Madrid moves to summer time on 2026-03-29 (Sunday): Monday 09:00 is 07:00 UTC, Friday's 09:00 was 08:00.
    cal = build_calendar(name="es", timezone="Europe/Madrid", weekly=WEEKDAYS_9_18)
    due = cal.add_minutes(datetime(2026, 3, 27, 16, 0, tzinfo=UTC), 120)  # Friday 17:00 Madrid
    assert due == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # Monday 10:00 Madrid (summer)


@settings(max_examples=60, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
       minutes=st.integers(min_value=0, max_value=20_000))
def test_adding_then_measuring_gives_back_the_minutes(start, minutes):
    cal = build_calendar(name="p", timezone="Europe/Madrid", weekly={"mon": ["09:00-13:00", "14:00-18:00"],
                                                                      "wed": ["22:00-24:00"],
                                                                      "thu": ["00:00-02:00"]},
                         country="ES", subdivision="MD")
    start = start.replace(tzinfo=UTC)
    due = cal.add_minutes(start, minutes)
    assert due >= start
    assert cal.minutes_between(start, due) == pytest.approx(minutes, abs=1e-6)


@pytest.mark.parametrize("kwargs,field,words", [
    ({"weekly": {"mon": ["09:00-13:00", "12:00-18:00"]}}, "calendars.x.mon", "overlap"),
    ({"weekly": {"tue": ["18:00-09:00"]}}, "calendars.x.tue", "inverted"),
    ({"weekly": {"wed": ["9-18"]}}, "calendars.x.wed", "not a span"),
    ({"weekly": {"thu": ["09:00-25:00"]}}, "calendars.x.thu", "valid time"),
    ({"weekly": WEEKDAYS_9_18, "country": "XX"}, "calendars.x.country", "unknown country"),
    ({"weekly": WEEKDAYS_9_18, "country": "BR", "subdivision": "ZZ"}, "calendars.x.subdivision", "subdivision"),
    ({"weekly": WEEKDAYS_9_18, "timezone": "Mars/Olympus"}, "calendars.x.timezone", "time zone"),
    ({"weekly": {}}, "calendars.x", "never open"),
    ({"weekly": WEEKDAYS_9_18, "closed_days": ["24/12/2026"]}, "calendars.x.closed_days", "not a date"),
    ({"weekly": WEEKDAYS_9_18, "open_days": ["2026-12-05"]}, "calendars.x.open_days", "no hours"),
])
def test_bad_calendars_are_refused_naming_the_field(kwargs, field, words):
    kwargs = {"timezone": BA.key, **kwargs}
    with pytest.raises(CalendarError) as info:
        build_calendar(name="x", **kwargs)
    assert info.value.field == field and words in str(info.value)


@pytest.mark.parametrize("body,key,words", [
    ('[[calendars]]\nname = "a"\nmon = ["09:00-13:00", "12:30-18:00"]\n', "calendars[0].mon", "overlap"),
    ('[[calendars]]\nname = "a"\nmon = ["18:00-09:00"]\n', "calendars[0].mon", "inverted"),
    ('[[calendars]]\nname = "a"\ncountry = "QQ"\n[sla]\ncalendar = "a"\n', "calendars[0].country", "unknown country"),
    ('[sla]\nfirst_response_minutes = -5\n', "sla.first_response_minutes", "positive"),
    ('[sla]\ncalendar = "nope"\n', "sla.calendar", "no calendar named"),
    ('[[sla.policies]]\nname = "p"\nresolution_minutes = -1\n', "sla.policies[0].resolution_minutes", "positive"),
    ('[[sla.policies]]\nname = "p"\ntypes = ["urgent"]\n', "sla.policies[0].types", "not a case type"),
    ('[[sla.policies]]\nname = "p"\ncalendar = "x"\n', "sla.policies[0].calendar", "no calendar named"),
    ('[[calendars]]\nname = "a"\nbogus = 1\n', "calendars[0].bogus", "unknown key"),
    ('calendars = ["a"]\n', "calendars", "list of tables"),
    ('[assignment]\ndefault_capacity = 0\n', "assignment.default_capacity", "from 1"),
    ('[assignment]\nstrategy = "random"\n', "assignment.strategy", "round_robin"),
])
def test_bad_sla_config_stops_start_up_naming_the_key(tmp_path, body, key, words):
    p = tmp_path / "posventa.toml"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(p, env={})
    assert info.value.key == key and words in str(info.value)


def test_opening_notice_in_the_customers_language_and_time_zone():
    cal = build_calendar(name="ba", timezone=BA.key, weekly=WEEKDAYS_9_18)
    saturday = local(2026, 12, 5, 11, 0)
    assert opening_notice(cal, local(2026, 12, 4, 11, 0), "es") is None
    assert "lunes 7 a las 09:00" in opening_notice(cal, saturday, "es")
    assert "segunda-feira, dia 7, às 09:00" in opening_notice(cal, saturday, "pt")
    madrid = opening_notice(cal, saturday, "en", customer_tz=ZoneInfo("Europe/Madrid"))
    assert "Monday 7 at 13:00 (Europe/Madrid)" in madrid


def test_search_is_bounded_for_a_calendar_open_only_once():
    cal = build_calendar(name="once", timezone=BA.key, weekly={}, open_days=["2026-12-05 10:00-11:00"])
    assert cal.add_minutes(local(2026, 12, 1, 0, 0), 30) == local(2026, 12, 5, 10, 30).astimezone(UTC)
    with pytest.raises(CalendarError, match="no open hours"):
        cal.add_minutes(local(2026, 12, 5, 12, 0) + timedelta(days=1), 30)
