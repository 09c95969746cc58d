"""Deadlines (by when) and the timers that supervise them (督办): reminders before a
deadline, overdue at it, escalation to the committee some time after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.routing.domain.calendar import WorkCalendar, default_calendar


class CaseKind(StrEnum):
    EMERGENCY = "emergency"
    UTILITIES = "utilities"
    GENERAL = "general"
    COMPLEX = "complex"


class DeadlineKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    COMPLETE = "complete"


class TimerAction(StrEnum):
    REMINDER = "reminder"
    OVERDUE = "overdue"
    ESCALATION = "escalation"


class Period(BaseModel):
    """A deadline period: hours and minutes on the clock, then working days on the calendar."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hours: int = Field(default=0, ge=0)
    minutes: int = Field(default=0, ge=0)
    working_days: int = Field(default=0, ge=0)

    def due_from(self, start: datetime, calendar: WorkCalendar | None = None) -> datetime:
        due = start + timedelta(hours=self.hours, minutes=self.minutes)
        if not self.working_days:
            return due
        return (calendar or default_calendar()).add_working_days(due, self.working_days)


class KindDeadlines(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    acknowledge: Period
    complete: Period


class ReminderSettings(BaseModel):
    """When reminders fire before a deadline: at fractions of the period, and fixed times
    before the deadline. A point at or before the period's start is skipped."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fractions: tuple[float, ...] = (0.5,)
    minutes_before: tuple[int, ...] = (60,)

    @field_validator("fractions")
    @classmethod
    def _fractions_inside(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in value):
            raise ValueError("reminder fractions lie strictly between 0 and 1")
        return value


class EmergencyDeadlines(KindDeadlines):
    acknowledge: Period = Period(hours=1)
    complete: Period = Period(hours=2)


class UtilitiesDeadlines(KindDeadlines):
    acknowledge: Period = Period(hours=4)
    complete: Period = Period(hours=24)


class GeneralDeadlines(KindDeadlines):
    acknowledge: Period = Period(working_days=1)
    complete: Period = Period(working_days=7)


class ComplexDeadlines(KindDeadlines):
    acknowledge: Period = Period(working_days=2)
    complete: Period = Period(working_days=15)


class DeadlineSettings(BaseModel):
    """Defaults from common practice in Chinese government hotlines; all configurable, one
    field at a time (e.g. `MINYI_ROUTING__DEADLINES__GENERAL__COMPLETE__WORKING_DAYS=5`)."""

    model_config = ConfigDict(extra="forbid")
    emergency: EmergencyDeadlines = Field(default_factory=EmergencyDeadlines)
    utilities: UtilitiesDeadlines = Field(default_factory=UtilitiesDeadlines)
    general: GeneralDeadlines = Field(default_factory=GeneralDeadlines)
    complex: ComplexDeadlines = Field(default_factory=ComplexDeadlines)
    reminders: ReminderSettings = ReminderSettings()
    escalate_after: Period = Field(
        default=Period(working_days=1),
        description="How long past a deadline an unanswered case is escalated to the committee.",
    )
    max_extensions: int = Field(default=1, ge=0, description="Granted extensions per case.")

    def for_kind(self, kind: CaseKind) -> KindDeadlines:
        deadlines: KindDeadlines = getattr(self, kind.value)
        return deadlines


TIMER_NAMESPACE = UUID("6f0c1b52-8a51-4d8e-9d43-4f3b1c9f2a10")


@dataclass(frozen=True)
class TimerSpec:
    """One planned firing. `dedupe_key` is unique: planning twice plans once."""

    case_id: UUID
    deadline: DeadlineKind
    action: TimerAction
    deadline_due_at: datetime
    due_at: datetime
    dedupe_key: str

    @property
    def event_id(self) -> UUID:
        """The id of the event this timer publishes: the same on any re-fire."""
        return uuid5(TIMER_NAMESPACE, self.dedupe_key)


def plan_timers(
    *,
    case_id: UUID,
    deadline: DeadlineKind,
    start: datetime,
    due_at: datetime,
    generation: int,
    settings: DeadlineSettings,
    calendar: WorkCalendar,
) -> list[TimerSpec]:
    """Reminders, overdue and escalation for one deadline running from `start` to `due_at`.

    `generation` counts the case's re-plans (re-route, extension, reopen): a new plan gets new
    dedupe keys, a replayed plan the same ones."""
    prefix = f"{case_id}:{deadline.value}:g{generation}"
    points: dict[datetime, str] = {}
    for fraction in settings.reminders.fractions:
        points.setdefault(start + (due_at - start) * fraction, f"f{fraction:g}")
    for minutes in settings.reminders.minutes_before:
        points.setdefault(due_at - timedelta(minutes=minutes), f"m{minutes}")
    specs = [
        TimerSpec(case_id, deadline, TimerAction.REMINDER, due_at, at, f"{prefix}:reminder:{tag}")
        for at, tag in sorted(points.items())
        if start < at < due_at
    ]
    specs.append(
        TimerSpec(case_id, deadline, TimerAction.OVERDUE, due_at, due_at, f"{prefix}:overdue")
    )
    escalate_at = settings.escalate_after.due_from(due_at, calendar)
    specs.append(
        TimerSpec(
            case_id, deadline, TimerAction.ESCALATION, due_at, escalate_at, f"{prefix}:escalation"
        )
    )
    return specs
