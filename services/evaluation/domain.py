"""Evaluation's rules for the figures it keeps. No I/O, no clock reads.

A case's *facts* are folded from its events so that any order, and any duplicate, gives the
same facts: first/last by the event's own timestamp, booleans by OR, counts of distinct events
(the inbox makes each event count once). A case *contributes* 0/1 per metric to one counter row
per dimension for the month it was assigned; an event changes the counters by the difference
between the case's contribution after and before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseClosedV1,
    CaseCompletedV1,
    CaseExtensionDecidedV1,
    CaseOverdueV1,
    CaseReopenedV1,
    CaseReturnedV1,
    Event,
    InvitationDecidedV1,
    NotificationSentV1,
    SatisfactionRatedV1,
)

CHINA = ZoneInfo("Asia/Shanghai")
CITY_KEY = "wenling"
UNCATEGORIZED = "uncategorized"


class Dimension(StrEnum):
    DEPARTMENT = "department"
    STATION = "station"
    TOWN = "town"
    CATEGORY = "category"
    CITY = "city"


class Level(StrEnum):
    """The three-level satisfaction scale (满意 / 基本满意 / 不满意)."""

    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    UNSATISFIED = "unsatisfied"

    @property
    def chinese(self) -> str:
        return {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}[
            self.value
        ]


METRICS: tuple[str, ...] = (
    "assigned",
    "acknowledged",
    "acknowledged_on_time",
    "completed",
    "completed_on_time",
    "rated",
    "satisfied",
    "basically_satisfied",
    "unsatisfied",
    "returned",
    "reopened",
    "overdue",
)

CounterKey = tuple[str, str, str]  # (dimension, key, month)
Counts = dict[str, int]


@dataclass(frozen=True)
class CaseFacts:
    """What evaluation knows of one case; the columns of `case_facts` (but `updated_at`)."""

    case_id: UUID
    opinion_id: UUID | None = None
    department_id: str | None = None
    station_id: str | None = None
    town_id: str | None = None
    category_id: str | None = None
    dims_at: datetime | None = None
    kind: str | None = None
    is_invitation: bool = False
    assigned_at: datetime | None = None
    acknowledge_due_at: datetime | None = None
    complete_due_at: datetime | None = None
    first_notified_at: datetime | None = None
    notifications_sent: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_on_time: bool = False
    extension_granted: bool = False
    extension_decided_at: datetime | None = None
    extended_due_at: datetime | None = None
    returns: int = 0
    last_returned_at: datetime | None = None
    completions: int = 0
    first_completed_at: datetime | None = None
    last_completed_at: datetime | None = None
    last_completed_on_time: bool = False
    reopens: int = 0
    last_reopened_at: datetime | None = None
    overdue_acknowledge: bool = False
    overdue_complete: bool = False
    closed_at: datetime | None = None
    rating_level: str | None = None
    rating_score: int | None = None
    rated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CaseFacts:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # -- derived state ---------------------------------------------------------------------

    @property
    def completed(self) -> bool:
        """Completed, and not reopened since its last completion."""
        if self.last_completed_at is None:
            return False
        return self.last_reopened_at is None or self.last_reopened_at < self.last_completed_at

    @property
    def month(self) -> str | None:
        """The month the case counts in: that of its (first) assignment, in China's time."""
        if self.assigned_at is None:
            return None
        return self.assigned_at.astimezone(CHINA).strftime("%Y-%m")


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _max(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _with_dims(
    facts: CaseFacts,
    at: datetime,
    *,
    department_id: str | None,
    station_id: str | None = None,
    town_id: str | None = None,
    category_id: str | None = None,
) -> CaseFacts:
    """The latest event (by its timestamp, then by value) names the case's department etc."""
    new = (at, department_id or "", station_id or "", town_id or "", category_id or "")
    if facts.dims_at is not None:
        old = (
            facts.dims_at,
            facts.department_id or "",
            facts.station_id or "",
            facts.town_id or "",
            facts.category_id or "",
        )
        if new <= old:
            return facts
    return replace(
        facts,
        dims_at=at,
        department_id=department_id,
        station_id=station_id if station_id is not None else facts.station_id,
        town_id=town_id if town_id is not None else facts.town_id,
        category_id=category_id,
    )


def fold(facts: CaseFacts, event: Event) -> CaseFacts:
    """The facts after `event` (pure; commutative over distinct events of one case)."""
    f = facts
    if isinstance(event, CaseAssignedV1):
        f = _with_dims(
            f,
            event.assigned_at,
            department_id=event.department_id,
            station_id=event.station_id,
            town_id=event.town_id,
            category_id=event.category_id,
        )
        if f.assigned_at is None or event.assigned_at < f.assigned_at:
            f = replace(
                f,
                opinion_id=event.opinion_id,
                kind=event.kind,
                assigned_at=event.assigned_at,
                acknowledge_due_at=event.acknowledge_due_at,
                complete_due_at=event.complete_due_at,
            )
    elif isinstance(event, CaseAcknowledgedV1):
        f = _with_dims(
            f,
            event.acknowledged_at,
            department_id=event.department_id,
            station_id=event.station_id,
            town_id=event.town_id,
            category_id=event.category_id,
        )
        f = replace(
            f,
            acknowledged_at=_min(f.acknowledged_at, event.acknowledged_at),
            acknowledged_on_time=f.acknowledged_on_time or event.on_time,
        )
    elif isinstance(event, CaseExtensionDecidedV1):
        if event.granted:
            newer = f.extension_decided_at is None or (
                (event.decided_at, event.complete_due_at)
                > (f.extension_decided_at, f.extended_due_at or event.complete_due_at)
            )
            f = replace(f, extension_granted=True)
            if newer:
                f = replace(
                    f, extension_decided_at=event.decided_at, extended_due_at=event.complete_due_at
                )
    elif isinstance(event, CaseReturnedV1):
        f = _with_dims(
            f,
            event.returned_at,
            department_id=event.department_id,
            station_id=event.station_id,
            town_id=event.town_id,
            category_id=event.category_id,
        )
        f = replace(
            f, returns=f.returns + 1, last_returned_at=_max(f.last_returned_at, event.returned_at)
        )
    elif isinstance(event, CaseCompletedV1):
        f = _with_dims(
            f,
            event.completed_at,
            department_id=event.department_id,
            station_id=event.station_id,
            town_id=event.town_id,
            category_id=event.category_id,
        )
        if f.last_completed_at is None or event.completed_at > f.last_completed_at:
            on_time = event.on_time
        elif event.completed_at == f.last_completed_at:
            on_time = f.last_completed_on_time or event.on_time
        else:
            on_time = f.last_completed_on_time
        f = replace(
            f,
            opinion_id=f.opinion_id or event.opinion_id,
            is_invitation=f.is_invitation or event.is_invitation,
            completions=f.completions + 1,
            first_completed_at=_min(f.first_completed_at, event.completed_at),
            last_completed_at=_max(f.last_completed_at, event.completed_at),
            last_completed_on_time=on_time,
        )
    elif isinstance(event, CaseReopenedV1):
        f = replace(
            f,
            reopens=f.reopens + 1,
            last_reopened_at=_max(f.last_reopened_at, event.reopened_at),
        )
    elif isinstance(event, CaseOverdueV1):
        f = _with_dims(
            f,
            event.fired_at,
            department_id=event.department_id,
            station_id=event.station_id,
            town_id=event.town_id,
            category_id=event.category_id,
        )
        f = replace(
            f,
            overdue_acknowledge=f.overdue_acknowledge or event.deadline == "acknowledge",
            overdue_complete=f.overdue_complete or event.deadline != "acknowledge",
        )
    elif isinstance(event, CaseClosedV1):
        f = replace(f, closed_at=_max(f.closed_at, event.closed_at))
    elif isinstance(event, SatisfactionRatedV1):
        new = (event.rated_at, event.level, event.score or 0)
        old = (f.rated_at, f.rating_level or "", f.rating_score or 0) if f.rated_at else None
        if old is None or new > old:
            f = replace(
                f,
                opinion_id=f.opinion_id or event.opinion_id,
                rating_level=event.level,
                rating_score=event.score,
                rated_at=event.rated_at,
            )
    elif isinstance(event, InvitationDecidedV1):
        f = replace(f, is_invitation=f.is_invitation or event.approved)
    elif isinstance(event, NotificationSentV1):
        f = replace(
            f,
            first_notified_at=_min(f.first_notified_at, event.sent_at),
            notifications_sent=f.notifications_sent + 1,
        )
    return f


def zero() -> Counts:
    return dict.fromkeys(METRICS, 0)


def case_counts(f: CaseFacts) -> Counts:
    """The case's 0/1 per metric."""
    completed = f.completed
    level = f.rating_level
    return {
        "assigned": 1,
        "acknowledged": int(f.acknowledged_at is not None),
        "acknowledged_on_time": int(f.acknowledged_at is not None and f.acknowledged_on_time),
        "completed": int(completed),
        "completed_on_time": int(completed and f.last_completed_on_time),
        "rated": int(level is not None),
        "satisfied": int(level == Level.SATISFIED),
        "basically_satisfied": int(level == Level.BASICALLY_SATISFIED),
        "unsatisfied": int(level == Level.UNSATISFIED),
        "returned": int(f.returns > 0),
        "reopened": int(f.reopens > 0),
        "overdue": int(f.overdue_acknowledge or f.overdue_complete),
    }


def counter_keys(f: CaseFacts) -> list[CounterKey]:
    month = f.month
    if month is None:
        return []  # not assigned yet (as far as we know): counts nowhere
    keys: list[CounterKey] = [(Dimension.CITY.value, CITY_KEY, month)]
    if f.department_id:
        keys.append((Dimension.DEPARTMENT.value, f.department_id, month))
    if f.station_id:
        keys.append((Dimension.STATION.value, f.station_id, month))
    if f.town_id:
        keys.append((Dimension.TOWN.value, f.town_id, month))
    keys.append((Dimension.CATEGORY.value, f.category_id or UNCATEGORIZED, month))
    return keys


def contribution(f: CaseFacts) -> dict[CounterKey, Counts]:
    counts = case_counts(f)
    return {key: counts for key in counter_keys(f)}


def delta(before: CaseFacts, after: CaseFacts) -> dict[CounterKey, Counts]:
    """What to add to each counter row when a case's facts go from `before` to `after`.

    Rows whose change is all zeros are left out; the result is sorted by key (so concurrent
    writers lock counter rows in one order).
    """
    old, new = contribution(before), contribution(after)
    out: dict[CounterKey, Counts] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        change = {m: (b[m] if b else 0) - (a[m] if a else 0) for m in METRICS}
        if any(change.values()):
            out[key] = change
    return out


def recount(all_facts: Iterable[CaseFacts]) -> dict[CounterKey, Counts]:
    """The counters computed from scratch (to check the incremental ones against)."""
    out: dict[CounterKey, Counts] = {}
    for f in all_facts:
        for key, counts in contribution(f).items():
            row = out.setdefault(key, zero())
            for m in METRICS:
                row[m] += counts[m]
    return {k: v for k, v in out.items() if any(v.values())}


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


@dataclass(frozen=True)
class Kpi:
    dimension: str
    key: str
    month: str
    counts: Counts

    @property
    def response_rate(self) -> float | None:
        """响应率: acknowledged within the deadline / assigned."""
        return _rate(self.counts["acknowledged_on_time"], self.counts["assigned"])

    @property
    def completion_rate(self) -> float | None:
        """办结率: completed (and not reopened since) / assigned."""
        return _rate(self.counts["completed"], self.counts["assigned"])

    @property
    def on_time_completion_rate(self) -> float | None:
        """按时办结率: completed on time / completed."""
        return _rate(self.counts["completed_on_time"], self.counts["completed"])

    @property
    def satisfaction_rate(self) -> float | None:
        """满意率: (satisfied + basically satisfied) / rated."""
        c = self.counts
        return _rate(c["satisfied"] + c["basically_satisfied"], c["rated"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "key": self.key,
            "month": self.month,
            **self.counts,
            "response_rate": self.response_rate,
            "completion_rate": self.completion_rate,
            "on_time_completion_rate": self.on_time_completion_rate,
            "satisfaction_rate": self.satisfaction_rate,
        }


class EvaluationRefused(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def check_may_evaluate(facts: CaseFacts | None, *, role: str, station_id: str | None) -> None:
    """A station (its own cases) or the committee evaluates a completed invitation case."""
    # Another station's case is not there for it (404, as on every read): checked before the
    # case's state, which would tell it what the case is.
    if facts is None or (
        role == "station" and (station_id is None or station_id != facts.station_id)
    ):
        raise EvaluationRefused(404, "not_found", "Evaluation knows no such case.")
    if not facts.is_invitation:
        raise EvaluationRefused(
            409, "not_an_invitation", "Only invitation cases (约请) are evaluated this way."
        )
    if facts.last_completed_at is None:
        raise EvaluationRefused(
            409, "not_completed", "The department has not filed its handling report yet."
        )


@dataclass(frozen=True)
class DepartmentSummary:
    department_id: str
    assigned: int
    notified: int

    @property
    def notified_rate(self) -> float | None:
        """Share of assigned cases whose department has been told (None with no cases)."""
        return None if self.assigned == 0 else self.notified / self.assigned
