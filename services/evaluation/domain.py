"""Evaluation's rules for the figures it keeps. No I/O, no clock reads.

A case's *facts* are folded from its events so that any order, and any duplicate, gives the
same facts: the dated handling events (assignments, acknowledgements, extensions, returns,
completions, reopenings, overdue marks) are kept as a set of `Mark`s and everything about the
case's assignments is derived from that set; the rest is first/last by the event's own
timestamp and booleans by OR. The case *contributes* 0/1 per metric to counter rows (see
ARCHITECTURE.md, "KPI definitions"): its own figures, on the clock of its latest assignment,
to the city, station, town and category of the month it was first assigned; each assignment's
figures to the department that held it, in the month of that assignment; each return to the
department that returned it (and the case's city, station, town, category) in the month of the
return. An event changes the counters by the difference between the case's contribution after
and before it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
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


class MarkKind(StrEnum):
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    EXTENDED = "extended"  # an extension granted: the complete-by date moves
    RETURNED = "returned"
    COMPLETED = "completed"
    REOPENED = "reopened"  # the voter was not satisfied: a new complete-by date
    OVERDUE_ACKNOWLEDGE = "overdue_acknowledge"
    OVERDUE_COMPLETE = "overdue_complete"


@dataclass(frozen=True)
class Mark:
    """One dated handling event of a case, as much of it as the figures need.

    `due_at`: the complete-by date an assignment, extension or reopening sets;
    `acknowledge_due_at`: an assignment's acknowledge-by date.
    """

    kind: MarkKind
    at: datetime
    department_id: str = ""
    on_time: bool = False
    due_at: datetime | None = None
    acknowledge_due_at: datetime | None = None

    def sort_key(self) -> tuple[Any, ...]:
        return (
            self.at,
            self.kind.value,
            self.department_id,
            self.on_time,
            self.due_at or self.at,
            self.acknowledge_due_at or self.at,
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "at": self.at.isoformat()}
        if self.department_id:
            out["department_id"] = self.department_id
        if self.on_time:
            out["on_time"] = True
        if self.due_at is not None:
            out["due_at"] = self.due_at.isoformat()
        if self.acknowledge_due_at is not None:
            out["acknowledge_due_at"] = self.acknowledge_due_at.isoformat()
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Mark:
        def when(name: str) -> datetime | None:
            value = raw.get(name)
            return None if value is None else datetime.fromisoformat(value)

        at = when("at")
        assert at is not None
        return cls(
            kind=MarkKind(raw["kind"]),
            at=at,
            department_id=raw.get("department_id") or "",
            on_time=bool(raw.get("on_time", False)),
            due_at=when("due_at"),
            acknowledge_due_at=when("acknowledge_due_at"),
        )


def _completed(last_completed_at: datetime | None, last_reopened_at: datetime | None) -> bool:
    if last_completed_at is None:
        return False
    return last_reopened_at is None or last_reopened_at < last_completed_at


def month_of(at: datetime) -> str:
    """The month (YYYY-MM) of an instant, in China's time."""
    return at.astimezone(CHINA).strftime("%Y-%m")


@dataclass(frozen=True)
class Assignment:
    """One assignment of a case to a department, until the next one: its own clock (the
    acknowledge-by and complete-by dates in force) and what that department did with it."""

    department_id: str
    assigned_at: datetime
    acknowledge_due_at: datetime | None
    complete_due_at: datetime | None  # moved by a granted extension or a reopening
    acknowledged_at: datetime | None
    acknowledged_on_time: bool
    completions: int
    last_completed_at: datetime | None
    last_completed_on_time: bool
    reopens: int
    last_reopened_at: datetime | None
    overdue_acknowledge: bool
    overdue_complete: bool

    @property
    def month(self) -> str:
        return month_of(self.assigned_at)

    @property
    def completed(self) -> bool:
        """Completed, and not reopened since its last completion."""
        return _completed(self.last_completed_at, self.last_reopened_at)


def _assignment(start: Mark, marks: Sequence[Mark]) -> Assignment:
    """An assignment's figures from its own marks (`marks`: those after it, by time)."""
    ack_due, complete_due = start.acknowledge_due_at, start.due_at
    acks = [m for m in marks if m.kind is MarkKind.ACKNOWLEDGED]
    done = [m for m in marks if m.kind is MarkKind.COMPLETED]
    reopens = [m for m in marks if m.kind is MarkKind.REOPENED]
    for m in marks:
        if m.kind in (MarkKind.EXTENDED, MarkKind.REOPENED) and m.due_at is not None:
            complete_due = m.due_at  # the latest by time is in force (marks are sorted)
    last_done = max((m.at for m in done), default=None)
    first_ack = min((m.at for m in acks), default=None)
    return Assignment(
        department_id=start.department_id,
        assigned_at=start.at,
        acknowledge_due_at=ack_due,
        complete_due_at=complete_due,
        acknowledged_at=first_ack,
        acknowledged_on_time=any(m.on_time for m in acks if m.at == first_ack),
        completions=len(done),
        last_completed_at=last_done,
        last_completed_on_time=any(m.on_time for m in done if m.at == last_done),
        reopens=len(reopens),
        last_reopened_at=max((m.at for m in reopens), default=None),
        overdue_acknowledge=any(m.kind is MarkKind.OVERDUE_ACKNOWLEDGE for m in marks),
        overdue_complete=any(m.kind is MarkKind.OVERDUE_COMPLETE for m in marks),
    )


def assignments(marks: Iterable[Mark]) -> list[Assignment]:
    """The case's assignments in time order. A mark belongs to the latest assignment made at
    or before it (one made earlier than every assignment, e.g. by clock skew, to the first)."""
    ordered = sorted(marks, key=Mark.sort_key)
    starts = [m for m in ordered if m.kind is MarkKind.ASSIGNED]
    if not starts:
        return []
    owned: list[list[Mark]] = [[] for _ in starts]
    for m in ordered:
        if m.kind in (MarkKind.ASSIGNED, MarkKind.RETURNED):
            continue
        index = 0
        for i, start in enumerate(starts):
            if start.at <= m.at:
                index = i
        owned[index].append(m)
    return [_assignment(s, own) for s, own in zip(starts, owned, strict=True)]


@dataclass(frozen=True)
class CaseFacts:
    """What evaluation knows of one case; the columns of `case_facts` (but `updated_at`).

    `marks` is the record everything about assignments is derived from; the columns after
    `assigned_at` (due dates, acknowledgement, completion, reopening, overdue) describe the
    case on the clock of its latest assignment (returns: all of them)."""

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
    marks: tuple[Mark, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CaseFacts:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        raw = values.get("marks") or ()
        if isinstance(raw, str):  # a connection without the jsonb codec (tools, bench)
            raw = json.loads(raw)
        values["marks"] = tuple(Mark.from_json(m) for m in raw)
        return cls(**values)

    def as_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["marks"] = [m.as_json() for m in self.marks]
        return row

    # -- derived state ---------------------------------------------------------------------

    @property
    def assignments(self) -> list[Assignment]:
        return assignments(self.marks)

    @property
    def completed(self) -> bool:
        """Completed, and not reopened since its last completion."""
        return _completed(self.last_completed_at, self.last_reopened_at)

    @property
    def month(self) -> str | None:
        """The month the case counts in: that of its (first) assignment, in China's time."""
        return None if self.assigned_at is None else month_of(self.assigned_at)


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


_DIMENSIONED = (
    CaseAssignedV1,
    CaseAcknowledgedV1,
    CaseReturnedV1,
    CaseCompletedV1,
    CaseOverdueV1,
)


def _mark_of(event: Event) -> Mark | None:
    """The handling mark an event leaves, if any."""
    if isinstance(event, CaseAssignedV1):
        return Mark(
            MarkKind.ASSIGNED,
            event.assigned_at,
            event.department_id,
            due_at=event.complete_due_at,
            acknowledge_due_at=event.acknowledge_due_at,
        )
    if isinstance(event, CaseAcknowledgedV1):
        return Mark(
            MarkKind.ACKNOWLEDGED, event.acknowledged_at, event.department_id, event.on_time
        )
    if isinstance(event, CaseExtensionDecidedV1) and event.granted:
        return Mark(
            MarkKind.EXTENDED, event.decided_at, event.department_id, due_at=event.complete_due_at
        )
    if isinstance(event, CaseReturnedV1):
        return Mark(MarkKind.RETURNED, event.returned_at, event.department_id)
    if isinstance(event, CaseCompletedV1):
        return Mark(MarkKind.COMPLETED, event.completed_at, event.department_id, event.on_time)
    if isinstance(event, CaseReopenedV1):
        return Mark(
            MarkKind.REOPENED, event.reopened_at, event.department_id, due_at=event.complete_due_at
        )
    if isinstance(event, CaseOverdueV1):
        kind = (
            MarkKind.OVERDUE_ACKNOWLEDGE
            if event.deadline == "acknowledge"
            else MarkKind.OVERDUE_COMPLETE
        )
        return Mark(kind, event.fired_at, event.department_id, due_at=event.due_at)
    return None


def _event_at(event: Event) -> datetime | None:
    for name in ("assigned_at", "acknowledged_at", "returned_at", "completed_at", "fired_at"):
        value = getattr(event, name, None)
        if isinstance(value, datetime):
            return value
    return None


def _derive(f: CaseFacts) -> CaseFacts:
    """The columns that follow from the marks: the latest assignment's clock and handling."""
    by_kind = {k: [m for m in f.marks if m.kind is k] for k in MarkKind}
    done = by_kind[MarkKind.COMPLETED]
    returned = by_kind[MarkKind.RETURNED]
    history = f.assignments
    latest = history[-1] if history else None
    return replace(
        f,
        acknowledge_due_at=latest.acknowledge_due_at if latest else None,
        complete_due_at=latest.complete_due_at if latest else None,
        acknowledged_at=latest.acknowledged_at if latest else None,
        acknowledged_on_time=bool(latest and latest.acknowledged_on_time),
        returns=len(returned),
        last_returned_at=max((m.at for m in returned), default=None),
        completions=len(done),
        first_completed_at=min((m.at for m in done), default=None),
        last_completed_at=latest.last_completed_at if latest else None,
        last_completed_on_time=bool(latest and latest.last_completed_on_time),
        reopens=len(by_kind[MarkKind.REOPENED]),
        last_reopened_at=latest.last_reopened_at if latest else None,
        overdue_acknowledge=bool(latest and latest.overdue_acknowledge),
        overdue_complete=bool(latest and latest.overdue_complete),
    )


def fold(facts: CaseFacts, event: Event) -> CaseFacts:
    """The facts after `event` (pure; commutative over distinct events of one case)."""
    f = facts
    if isinstance(event, _DIMENSIONED):
        at = _event_at(event)
        assert at is not None
        f = _with_dims(
            f,
            at,
            department_id=event.department_id,
            station_id=event.station_id,
            town_id=event.town_id,
            category_id=event.category_id,
        )
    if isinstance(event, CaseAssignedV1):
        if f.assigned_at is None or event.assigned_at < f.assigned_at:
            f = replace(
                f, opinion_id=event.opinion_id, kind=event.kind, assigned_at=event.assigned_at
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
    elif isinstance(event, CaseCompletedV1):
        f = replace(
            f,
            opinion_id=f.opinion_id or event.opinion_id,
            is_invitation=f.is_invitation or event.is_invitation,
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
    mark = _mark_of(event)
    if mark is not None and mark not in f.marks:
        f = _derive(replace(f, marks=tuple(sorted({*f.marks, mark}, key=Mark.sort_key))))
    return f


def zero() -> Counts:
    return dict.fromkeys(METRICS, 0)


def _handling_counts(a: Assignment) -> Counts:
    """An assignment's 0/1 for the handling metrics, on its own clock."""
    completed = a.completed
    return zero() | {
        "assigned": 1,
        "acknowledged": int(a.acknowledged_at is not None),
        "acknowledged_on_time": int(a.acknowledged_at is not None and a.acknowledged_on_time),
        "completed": int(completed),
        "completed_on_time": int(completed and a.last_completed_on_time),
        "reopened": int(a.reopens > 0),
        "overdue": int(a.overdue_acknowledge or a.overdue_complete),
    }


def _rating_counts(f: CaseFacts) -> Counts:
    level = f.rating_level
    return zero() | {
        "rated": int(level is not None),
        "satisfied": int(level == Level.SATISFIED),
        "basically_satisfied": int(level == Level.BASICALLY_SATISFIED),
        "unsatisfied": int(level == Level.UNSATISFIED),
    }


def _add(a: Counts, b: Counts) -> Counts:
    return {m: a[m] + b[m] for m in METRICS}


def case_counts(f: CaseFacts) -> Counts:
    """The case's own 0/1 per metric (city, station, town, category; month of its first
    assignment): handling on the clock of its latest assignment, its rating. Returns are
    not here: each counts in the month it was made (`contribution`)."""
    history = f.assignments
    if not history:
        return zero()
    return _add(_handling_counts(history[-1]), _rating_counts(f))


def _place_keys(f: CaseFacts, month: str) -> list[CounterKey]:
    """The city, station, town and category rows of a month for this case."""
    keys: list[CounterKey] = [(Dimension.CITY.value, CITY_KEY, month)]
    if f.station_id:
        keys.append((Dimension.STATION.value, f.station_id, month))
    if f.town_id:
        keys.append((Dimension.TOWN.value, f.town_id, month))
    keys.append((Dimension.CATEGORY.value, f.category_id or UNCATEGORIZED, month))
    return keys


def counter_keys(f: CaseFacts) -> list[CounterKey]:
    """The rows the case's own figures go to: its places in the month of its first
    assignment, and each department that held it in the month it was assigned there."""
    month = f.month
    if month is None:
        return []  # not assigned yet (as far as we know): counts nowhere
    keys = _place_keys(f, month)
    for a in f.assignments:
        key = (Dimension.DEPARTMENT.value, a.department_id, a.month)
        if key not in keys:
            keys.append(key)
    return keys


def contribution(f: CaseFacts) -> dict[CounterKey, Counts]:
    out: dict[CounterKey, Counts] = {}

    def add(key: CounterKey, counts: Counts) -> None:
        out[key] = _add(out.get(key, zero()), counts)

    history = f.assignments
    if history and f.month is not None:
        for key in _place_keys(f, f.month):
            add(key, case_counts(f))
        for i, a in enumerate(history):
            counts = _handling_counts(a)
            if i == len(history) - 1:
                counts = _add(counts, _rating_counts(f))  # the department that completed it
            add((Dimension.DEPARTMENT.value, a.department_id, a.month), counts)
    returned = zero() | {"returned": 1}
    for m in f.marks:
        if m.kind is MarkKind.RETURNED:
            month = month_of(m.at)
            for key in _place_keys(f, month):
                add(key, returned)
            if m.department_id:
                add((Dimension.DEPARTMENT.value, m.department_id, month), returned)
    return out


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
    """The counters computed from scratch (to check the incremental ones against, and to
    rebuild them: `recount-kpis`)."""
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
    def return_rate(self) -> float | None:
        """退单率: returns made / assigned (a department's: cases it received)."""
        return _rate(self.counts["returned"], self.counts["assigned"])

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
            "return_rate": self.return_rate,
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
