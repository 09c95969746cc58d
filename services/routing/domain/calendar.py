"""Working days on China's calendar: holidays and adjusted working days (调休).

The rules compute with a `WorkCalendar` built from routing's `working_calendar` table (seeded
from `chinese-calendar`, editable for years that package does not know); a day the table does
not hold is a working day when it is Monday–Friday.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import chinese_calendar

CHINA = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class WorkCalendar:
    """`days` maps a date to whether it is a working day; other dates: Monday–Friday."""

    days: Mapping[date, bool] = field(default_factory=dict)

    def is_working_day(self, day: date) -> bool:
        known = self.days.get(day)
        return known if known is not None else day.weekday() < 5

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The same time of day `days` working days after `start` (in China's time zone)."""
        local = start.astimezone(CHINA)
        day = local.date()
        remaining = days
        while remaining > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return datetime.combine(day, local.timetz()).astimezone(start.tzinfo)


def chinese_calendar_years() -> range:
    """The years `chinese-calendar` knows the State Council's schedule for."""
    first = min(chinese_calendar.holidays).year
    last = max(max(chinese_calendar.holidays), max(chinese_calendar.workdays)).year
    return range(first, last + 1)


def official_days(year: int) -> Iterator[tuple[date, bool, str | None]]:
    """Every day of `year`: (day, is_working, holiday name or None), from chinese-calendar."""
    day = date(year, 1, 1)
    while day.year == year:
        working = bool(chinese_calendar.is_workday(day))
        _, name = chinese_calendar.get_holiday_detail(day)
        yield day, working, name
        day += timedelta(days=1)


def official_calendar(years: range | list[int]) -> WorkCalendar:
    """A calendar straight from chinese-calendar (for tests and the default of `is_working_day`)."""
    return WorkCalendar({d: w for y in years for d, w, _ in official_days(y)})


def calendar_window(start: datetime, span_days: int = 120) -> tuple[date, date]:
    """The dates a deadline computation from `start` may look at (the store loads these)."""
    first = start.astimezone(CHINA).date() - timedelta(days=1)
    return first, first + timedelta(days=span_days)


@cache
def default_calendar() -> WorkCalendar:
    """chinese-calendar's years, Monday–Friday beyond them (when no table is at hand)."""
    return official_calendar(chinese_calendar_years())


def is_working_day(day: date) -> bool:
    """On the default calendar (chinese-calendar's years, else Monday–Friday)."""
    return default_calendar().is_working_day(day)


def add_working_days(start: datetime, days: int) -> datetime:
    """On the default calendar; the services use the table's calendar instead."""
    return default_calendar().add_working_days(start, days)
