"""Deadlines in working days on the calendar table, and the timers planned for them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from services.routing.domain.calendar import CHINA, WorkCalendar, official_calendar
from services.routing.domain.deadlines import (
    CaseKind,
    DeadlineKind,
    DeadlineSettings,
    Period,
    ReminderSettings,
    TimerAction,
    plan_timers,
)

CAL_2025 = official_calendar([2025])


def china(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=CHINA)


def test_the_calendar_knows_spring_festival_2025_and_its_working_saturday():
    assert not any(CAL_2025.is_working_day(date(2025, 1, d)) for d in range(28, 32))
    assert not any(CAL_2025.is_working_day(date(2025, 2, d)) for d in range(1, 5))
    assert CAL_2025.is_working_day(date(2025, 1, 26))  # Sunday, adjusted working day
    assert CAL_2025.is_working_day(date(2025, 2, 8))  # Saturday, adjusted working day
    assert not CAL_2025.is_working_day(date(2025, 2, 9))


def test_a_deadline_spanning_spring_festival_and_a_working_saturday():
    # Assigned Monday 27 Jan 2025, 10:00. 7 working days: Jan 28–Feb 4 are off; then
    # Wed 5, Thu 6, Fri 7, Sat 8 (working), Mon 10, Tue 11, Wed 12.
    start = china(2025, 1, 27, 10, 0)
    assert Period(working_days=7).due_from(start, CAL_2025) == china(2025, 2, 12, 10, 0)
    # 4 working days from Tue 4 Feb (a holiday) lands on the working Saturday.
    assert Period(working_days=4).due_from(china(2025, 2, 4, 9, 0), CAL_2025) == china(
        2025, 2, 8, 9, 0
    )
    # Without the table (plain Mon–Fri) the answer would differ: the table matters.
    assert Period(working_days=7).due_from(start, WorkCalendar()) == china(2025, 2, 5, 10, 0)


def test_a_year_the_package_does_not_know_uses_the_table_then_monday_to_friday():
    # 2031: nothing known. An admin marks Mon 3 Feb 2031 a holiday and Sat 8 Feb working.
    table = WorkCalendar({date(2031, 2, 3): False, date(2031, 2, 8): True})
    start = china(2031, 1, 31, 9, 0)  # a Friday
    # Sat 1 off, Sun 2 off, Mon 3 holiday, Tue 4 (1), Wed 5 (2), Thu 6 (3), Fri 7 (4), Sat 8 (5)
    assert Period(working_days=5).due_from(start, table) == china(2031, 2, 8, 9, 0)


def test_clock_periods_ignore_the_calendar():
    start = china(2025, 1, 28, 23, 30)  # a holiday night
    assert Period(hours=2).due_from(start, CAL_2025) == china(2025, 1, 29, 1, 30)
    assert Period(hours=24).due_from(start, CAL_2025) == china(2025, 1, 29, 23, 30)


def test_the_default_periods():
    s = DeadlineSettings()
    assert s.for_kind(CaseKind.EMERGENCY).complete == Period(hours=2)
    assert s.for_kind(CaseKind.UTILITIES).complete == Period(hours=24)
    assert s.for_kind(CaseKind.GENERAL).complete == Period(working_days=7)
    assert s.for_kind(CaseKind.COMPLEX).complete == Period(working_days=15)


def test_periods_are_configurable_from_the_environment(monkeypatch):
    from services.routing.settings import RoutingSettings

    monkeypatch.setenv("MINYI_ROUTING__DEADLINES__GENERAL__COMPLETE__WORKING_DAYS", "5")
    monkeypatch.setenv("MINYI_ROUTING__DEADLINES__REMINDERS__MINUTES_BEFORE", "[120, 30]")
    settings = RoutingSettings()
    assert settings.deadlines.general.complete == Period(working_days=5)
    assert settings.deadlines.reminders.minutes_before == (120, 30)


def test_timers_reminders_at_half_and_an_hour_before_then_overdue_and_escalation():
    case_id = uuid4()
    start = china(2025, 1, 27, 10, 0)
    due = china(2025, 2, 12, 10, 0)
    specs = plan_timers(
        case_id=case_id,
        deadline=DeadlineKind.COMPLETE,
        start=start,
        due_at=due,
        generation=1,
        settings=DeadlineSettings(),
        calendar=CAL_2025,
    )
    assert [(s.action, s.due_at) for s in specs] == [
        (TimerAction.REMINDER, start + (due - start) / 2),
        (TimerAction.REMINDER, due - timedelta(hours=1)),
        (TimerAction.OVERDUE, due),
        (TimerAction.ESCALATION, china(2025, 2, 13, 10, 0)),  # one working day later
    ]
    assert len({s.dedupe_key for s in specs}) == 4
    assert len({s.event_id for s in specs}) == 4
    assert all(s.deadline_due_at == due for s in specs)
    # Planning again gives the same keys (idempotent); a new generation, new ones.
    again = plan_timers(
        case_id=case_id,
        deadline=DeadlineKind.COMPLETE,
        start=start,
        due_at=due,
        generation=1,
        settings=DeadlineSettings(),
        calendar=CAL_2025,
    )
    assert [s.dedupe_key for s in again] == [s.dedupe_key for s in specs]
    replanned = plan_timers(
        case_id=case_id,
        deadline=DeadlineKind.COMPLETE,
        start=start,
        due_at=due,
        generation=2,
        settings=DeadlineSettings(),
        calendar=CAL_2025,
    )
    assert not {s.dedupe_key for s in replanned} & {s.dedupe_key for s in specs}


def test_reminder_points_before_the_start_are_skipped():
    start = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
    specs = plan_timers(
        case_id=uuid4(),
        deadline=DeadlineKind.COMPLETE,
        start=start,
        due_at=start + timedelta(minutes=30),
        generation=1,
        settings=DeadlineSettings(
            reminders=ReminderSettings(fractions=(0.5,), minutes_before=(60,))
        ),
        calendar=CAL_2025,
    )
    assert [s.action for s in specs] == [
        TimerAction.REMINDER,
        TimerAction.OVERDUE,
        TimerAction.ESCALATION,
    ]


def test_reminder_fractions_must_lie_inside_the_period():
    with pytest.raises(ValueError, match="between 0 and 1"):
        ReminderSettings(fractions=(1.5,))
