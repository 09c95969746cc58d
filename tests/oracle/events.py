"""Turn a case history (steps, as routing and the voter would produce them) into the events
evaluation consumes. This is the *generator* side of the oracle: it builds the wire events the
way routing does (the `on_time` flags and the complete-by date in force on each event) and says
nothing about KPIs. The expected figures are written elsewhere, by hand or by a naive function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from shared import topics
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseCompletedV1,
    CaseExtensionDecidedV1,
    CaseOverdueV1,
    CaseReopenedV1,
    CaseReturnedV1,
    Event,
    EventEnvelope,
    HandlingEvaluatedV1,
    SatisfactionRatedV1,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Step:
    """One thing that happens to a case. `at` is an aware datetime.

    kind: assign (dept, ack_due, complete_due) | ack | extend (due, granted) | return |
    complete | rate (level) | reopen (due) | overdue (deadline) | evaluate
    """

    kind: str
    at: datetime
    dept: str | None = None
    ack_due: datetime | None = None
    due: datetime | None = None
    granted: bool = True
    level: str | None = None
    deadline: str | None = None


@dataclass
class Place:
    station_id: str
    town_id: str
    category_id: str


@dataclass
class _Clock:
    dept: str
    ack_due: datetime
    complete_due: datetime


@dataclass
class Built:
    envelopes: list[tuple[str, EventEnvelope]] = field(default_factory=list)  # (topic, env)

    def add(self, topic: str, event: Event, at: datetime, correlation: UUID) -> None:
        self.envelopes.append(
            (
                topic,
                EventEnvelope.wrap(
                    event, producer="oracle", correlation_id=correlation, occurred_at=at
                ),
            )
        )


def case_events(steps: list[Step], place: Place, out: Built) -> None:
    """The events of one case's `steps`, appended to `out` (topics without prefix)."""
    case_id, opinion_id = uuid4(), uuid4()
    correlation = opinion_id
    where = {
        "station_id": place.station_id,
        "town_id": place.town_id,
        "category_id": place.category_id,
    }
    clock: _Clock | None = None
    for step in steps:
        if step.kind == "assign":
            assert step.dept is not None
            assert step.ack_due is not None
            assert step.due is not None
            clock = _Clock(step.dept, step.ack_due, step.due)
            out.add(
                topics.CASE,
                CaseAssignedV1(
                    case_id=case_id,
                    opinion_id=opinion_id,
                    receipt_code="ABCDE-FGHJK",
                    department_id=step.dept,
                    kind="general",
                    assigned_at=step.at,
                    acknowledge_due_at=step.ack_due,
                    complete_due_at=step.due,
                    **where,
                ),
                step.at,
                correlation,
            )
            continue
        assert clock is not None, "a case starts with its assignment"
        dept = clock.dept
        if step.kind == "ack":
            out.add(
                topics.CASE,
                CaseAcknowledgedV1(
                    case_id=case_id,
                    department_id=dept,
                    responsible_person="王科长",
                    planned_completion_date=clock.complete_due.date(),
                    acknowledged_at=step.at,
                    acknowledge_due_at=clock.ack_due,
                    on_time=step.at <= clock.ack_due,
                    **where,
                ),
                step.at,
                correlation,
            )
        elif step.kind == "extend":
            assert step.due is not None
            original = clock.complete_due
            if step.granted:
                clock.complete_due = step.due
            out.add(
                topics.CASE,
                CaseExtensionDecidedV1(
                    case_id=case_id,
                    department_id=dept,
                    granted=step.granted,
                    decided_by="committee-1",
                    original_complete_due_at=original,
                    complete_due_at=clock.complete_due,
                    decided_at=step.at,
                ),
                step.at,
                correlation,
            )
        elif step.kind == "return":
            out.add(
                topics.CASE,
                CaseReturnedV1(
                    case_id=case_id,
                    department_id=dept,
                    reason="不属本部门",
                    returned_at=step.at,
                    **where,
                ),
                step.at,
                correlation,
            )
        elif step.kind == "complete":
            out.add(
                topics.CASE,
                CaseCompletedV1(
                    case_id=case_id,
                    opinion_id=opinion_id,
                    department_id=dept,
                    completed_at=step.at,
                    complete_due_at=clock.complete_due,
                    on_time=step.at <= clock.complete_due,
                    result_summary="已办结",
                    **where,
                ),
                step.at,
                correlation,
            )
        elif step.kind == "rate":
            assert step.level is not None
            out.add(
                topics.EVALUATION,
                SatisfactionRatedV1(
                    case_id=case_id,
                    opinion_id=opinion_id,
                    department_id=dept,
                    level=step.level,
                    score=None,
                    rated_at=step.at,
                    reopen_requested=step.level == "unsatisfied",
                ),
                step.at,
                correlation,
            )
        elif step.kind == "reopen":
            assert step.due is not None
            clock.complete_due = step.due
            out.add(
                topics.CASE,
                CaseReopenedV1(
                    case_id=case_id,
                    department_id=dept,
                    reason="选民不满意",
                    reopened_at=step.at,
                    complete_due_at=step.due,
                ),
                step.at,
                correlation,
            )
        elif step.kind == "overdue":
            assert step.deadline in ("acknowledge", "complete")
            due = clock.ack_due if step.deadline == "acknowledge" else clock.complete_due
            out.add(
                topics.CASE,
                CaseOverdueV1(
                    case_id=case_id,
                    department_id=dept,
                    deadline=step.deadline,
                    due_at=due,
                    fired_at=step.at,
                    **where,
                ),
                step.at,
                correlation,
            )
        elif step.kind == "evaluate":
            out.add(
                topics.EVALUATION,
                HandlingEvaluatedV1(
                    case_id=case_id,
                    department_id=dept,
                    evaluator_kind="committee",
                    evaluator_id="committee-1",
                    score=80,
                    evaluated_at=step.at,
                ),
                step.at,
                correlation,
            )
        else:
            raise ValueError(step.kind)


def local(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A moment in China's time (Asia/Shanghai)."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


DAY = timedelta(days=1)
