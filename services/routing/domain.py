"""Routing's rules: which department answers, and by when. Pure: no I/O, no clock reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field

from shared.events import CaseAssignedV1, OpinionSubmittedV1

CHINA = ZoneInfo("Asia/Shanghai")


class CaseKind(StrEnum):
    EMERGENCY = "emergency"
    UTILITIES = "utilities"
    GENERAL = "general"
    COMPLEX = "complex"


class CaseState(StrEnum):
    ASSIGNED = "assigned"


class Period(BaseModel):
    """A deadline period: hours on the clock, or working days on China's calendar."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hours: int = Field(default=0, ge=0)
    working_days: int = Field(default=0, ge=0)

    def due_from(self, start: datetime) -> datetime:
        due = start + timedelta(hours=self.hours)
        return add_working_days(due, self.working_days) if self.working_days else due


class KindDeadlines(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    acknowledge: Period
    complete: Period


class DeadlineSettings(BaseModel):
    """Defaults from common practice in Chinese government hotlines; all configurable."""

    model_config = ConfigDict(extra="forbid")
    emergency: KindDeadlines = KindDeadlines(acknowledge=Period(hours=1), complete=Period(hours=2))
    utilities: KindDeadlines = KindDeadlines(acknowledge=Period(hours=4), complete=Period(hours=24))
    general: KindDeadlines = KindDeadlines(
        acknowledge=Period(working_days=1), complete=Period(working_days=7)
    )
    complex: KindDeadlines = KindDeadlines(
        acknowledge=Period(working_days=2), complete=Period(working_days=15)
    )

    def for_kind(self, kind: CaseKind) -> KindDeadlines:
        deadlines: KindDeadlines = getattr(self, kind.value)
        return deadlines


def is_working_day(day: date) -> bool:
    """China's calendar (holidays and adjusted working days, 调休) where known, else Mon–Fri."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5


def add_working_days(start: datetime, days: int) -> datetime:
    """The same time of day `days` working days after `start` (in China's time zone)."""
    local = start.astimezone(CHINA)
    day = local.date()
    remaining = days
    while remaining > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            remaining -= 1
    return datetime.combine(day, local.timetz()).astimezone(start.tzinfo)


@dataclass(frozen=True)
class RoutingRule:
    category_id: str
    town_id: str | None
    department_id: str
    priority: int


def choose_department(
    rules: Iterable[RoutingRule], *, category_id: str | None, town_id: str, fallback: str
) -> str:
    """A rule for this category in this town beats one for the category anywhere;
    then the lower priority number wins; with no rule, the fallback department."""
    matching = [
        r
        for r in rules
        if r.category_id == category_id and (r.town_id is None or r.town_id == town_id)
    ]
    if not matching:
        return fallback
    best = min(matching, key=lambda r: (r.town_id is None, r.priority, r.department_id))
    return best.department_id


@dataclass(frozen=True)
class Case:
    case_id: UUID
    opinion_id: UUID
    receipt_code: str
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None
    kind: CaseKind
    state: CaseState
    assigned_at: datetime
    acknowledge_due_at: datetime
    complete_due_at: datetime

    def assigned_event(self) -> CaseAssignedV1:
        return CaseAssignedV1(
            case_id=self.case_id,
            opinion_id=self.opinion_id,
            receipt_code=self.receipt_code,
            department_id=self.department_id,
            station_id=self.station_id,
            town_id=self.town_id,
            category_id=self.category_id,
            kind=self.kind.value,
            assigned_at=self.assigned_at,
            acknowledge_due_at=self.acknowledge_due_at,
            complete_due_at=self.complete_due_at,
        )


def assign(
    opinion: OpinionSubmittedV1,
    *,
    department_id: str,
    kind: CaseKind,
    deadlines: DeadlineSettings,
    now: datetime,
) -> Case:
    periods = deadlines.for_kind(kind)
    return Case(
        case_id=uuid4(),
        opinion_id=opinion.opinion_id,
        receipt_code=opinion.receipt_code,
        department_id=department_id,
        station_id=opinion.station_id,
        town_id=opinion.town_id,
        category_id=opinion.category_id,
        kind=kind,
        state=CaseState.ASSIGNED,
        assigned_at=now,
        acknowledge_due_at=periods.acknowledge.due_from(now),
        complete_due_at=periods.complete.due_from(now),
    )
