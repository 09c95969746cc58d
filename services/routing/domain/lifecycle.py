"""The case's life (交办 → 督办 → 反馈 → 评价), table-driven. Pure: no I/O, no clock reads.

Every action is a row of `TRANSITIONS` (from which states, to which state); an action asked of
a case in any other state raises `IllegalTransition` (HTTP 409 with the current state). Guards
that depend on more than the state (a second extension, re-routing to the same department)
raise `RuleViolation` (also 409). Each action returns an `Outcome`: the updated case, the audit
steps (each with the event it publishes) and the timer changes, for the store to write in one
transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from services.routing.domain.calendar import WorkCalendar
from services.routing.domain.deadlines import (
    CaseKind,
    DeadlineKind,
    DeadlineSettings,
    TimerSpec,
    plan_timers,
)
from services.routing.domain.triage import Classification
from shared.codes import new_code
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseClosedV1,
    CaseCompletedV1,
    CaseDeadlineApproachingV1,
    CaseEscalatedV1,
    CaseExtensionDecidedV1,
    CaseExtensionRequestedV1,
    CaseOverdueV1,
    CaseReopenedV1,
    CaseReturnedV1,
    CaseTriagedV1,
    Event,
    InvitationDecidedV1,
    InvitationRequestedV1,
    OpinionSubmittedV1,
)


class CaseState(StrEnum):
    TRIAGED = "triaged"
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    ASSIGNED = "assigned"
    RETURNED = "returned"
    ACKNOWLEDGED = "acknowledged"
    EXTENSION_REQUESTED = "extension_requested"
    COMPLETED = "completed"
    EVALUATED = "evaluated"
    REOPENED = "reopened"
    CLOSED = "closed"


class Action(StrEnum):
    PROPOSE_INVITATION = "propose_invitation"
    APPROVE_INVITATION = "approve_invitation"
    REJECT_INVITATION = "reject_invitation"
    ASSIGN = "assign"
    REROUTE = "reroute"
    ACKNOWLEDGE = "acknowledge"
    REQUEST_EXTENSION = "request_extension"
    GRANT_EXTENSION = "grant_extension"
    DENY_EXTENSION = "deny_extension"
    RETURN = "return"
    COMPLETE = "complete"
    EVALUATE = "evaluate"
    CLOSE = "close"
    REOPEN = "reopen"


S = CaseState
TRANSITIONS: Mapping[Action, tuple[frozenset[CaseState], CaseState]] = {
    Action.PROPOSE_INVITATION: (frozenset({S.TRIAGED, S.ASSIGNED}), S.PENDING_REVIEW),
    Action.APPROVE_INVITATION: (frozenset({S.PENDING_REVIEW}), S.APPROVED),
    Action.REJECT_INVITATION: (frozenset({S.PENDING_REVIEW}), S.REJECTED),
    Action.ASSIGN: (frozenset({S.TRIAGED, S.APPROVED, S.REJECTED, S.RETURNED}), S.ASSIGNED),
    Action.REROUTE: (frozenset({S.ASSIGNED}), S.ASSIGNED),
    Action.ACKNOWLEDGE: (frozenset({S.ASSIGNED}), S.ACKNOWLEDGED),
    Action.REQUEST_EXTENSION: (frozenset({S.ACKNOWLEDGED}), S.EXTENSION_REQUESTED),
    Action.GRANT_EXTENSION: (frozenset({S.EXTENSION_REQUESTED}), S.ACKNOWLEDGED),
    Action.DENY_EXTENSION: (frozenset({S.EXTENSION_REQUESTED}), S.ACKNOWLEDGED),
    Action.RETURN: (frozenset({S.ASSIGNED, S.ACKNOWLEDGED}), S.RETURNED),
    Action.COMPLETE: (
        frozenset({S.ACKNOWLEDGED, S.EXTENSION_REQUESTED, S.REOPENED}),
        S.COMPLETED,
    ),
    Action.EVALUATE: (frozenset({S.COMPLETED}), S.EVALUATED),
    Action.CLOSE: (frozenset({S.EVALUATED, S.COMPLETED}), S.CLOSED),
    Action.REOPEN: (frozenset({S.COMPLETED}), S.REOPENED),
}

# States a department sees its cases in (not before the case is its to handle).
DEPARTMENT_VISIBLE: frozenset[CaseState] = frozenset(
    {
        S.ASSIGNED,
        S.RETURNED,
        S.ACKNOWLEDGED,
        S.EXTENSION_REQUESTED,
        S.COMPLETED,
        S.EVALUATED,
        S.REOPENED,
        S.CLOSED,
    }
)
OPEN_FOR_DEPARTMENT: frozenset[CaseState] = frozenset(
    {S.ASSIGNED, S.ACKNOWLEDGED, S.EXTENSION_REQUESTED, S.REOPENED}
)


class IllegalTransition(Exception):
    def __init__(self, action: Action, state: CaseState) -> None:
        super().__init__(
            f"A case in state {state.value!r} cannot {action.value.replace('_', ' ')}."
        )
        self.action = action
        self.state = state


class RuleViolation(Exception):
    """The state allows the action, a rule of the case does not."""

    def __init__(self, message: str, state: CaseState) -> None:
        super().__init__(message)
        self.state = state


def next_state(state: CaseState, action: Action) -> CaseState:
    sources, target = TRANSITIONS[action]
    if state not in sources:
        raise IllegalTransition(action, state)
    return target


def allowed_actions(state: CaseState) -> list[Action]:
    return [a for a, (sources, _) in TRANSITIONS.items() if state in sources]


@dataclass(frozen=True)
class Actor:
    subject: str
    role: str

    @classmethod
    def routing(cls) -> Actor:
        return cls("routing", "system")


@dataclass(frozen=True)
class CaseRecord:
    """A case as routing keeps it (one row of `cases`)."""

    id: UUID
    lead_opinion_id: UUID
    opinion_id: UUID | None  # None for an aggregated suggestion (see case_links)
    receipt_code: str
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None
    kind: CaseKind
    state: CaseState
    classification: Classification
    correlation_id: UUID
    is_invitation: bool = False
    generation: int = 0
    assigned_at: datetime | None = None
    acknowledge_due_at: datetime | None = None
    complete_due_at: datetime | None = None
    original_complete_due_at: datetime | None = None
    acknowledged_at: datetime | None = None
    responsible_person: str | None = None
    responsible_contact: str | None = None
    planned_completion_date: date | None = None
    extension_reason: str | None = None
    extension_requested_due_at: datetime | None = None
    extensions_granted: int = 0
    completed_at: datetime | None = None
    handling_situation: str | None = None
    handling_result: str | None = None
    completion_date: date | None = None
    reopen_count: int = 0
    closed_at: datetime | None = None
    satisfaction: str | None = None

    def due(self, deadline: DeadlineKind) -> datetime:
        value = (
            self.acknowledge_due_at
            if deadline is DeadlineKind.ACKNOWLEDGE
            else self.complete_due_at
        )
        assert value is not None, f"case {self.id} has no {deadline.value} deadline"
        return value


@dataclass(frozen=True)
class Step:
    """One audit row: from → to, by whom, why, and the event it publishes."""

    from_state: CaseState | None
    to_state: CaseState
    reason: str | None
    event: Event


@dataclass(frozen=True)
class Outcome:
    case: CaseRecord
    steps: tuple[Step, ...]
    actor: Actor
    cancel_timers: frozenset[DeadlineKind] = frozenset()
    plan: tuple[TimerSpec, ...] = ()
    extra_events: tuple[Event, ...] = field(default=())

    @property
    def events(self) -> list[Event]:
        seen: list[Event] = []
        for event in [*(s.event for s in self.steps), *self.extra_events]:
            if not any(e is event for e in seen):
                seen.append(event)
        return seen


ALL_DEADLINES = frozenset(DeadlineKind)


# ---- opening a case -------------------------------------------------------------------------


def open_case(
    opinion: OpinionSubmittedV1,
    *,
    correlation_id: UUID,
    department_id: str,
    category_id: str | None,
    kind: CaseKind,
    classification: Classification,
    deadlines: DeadlineSettings,
    calendar: WorkCalendar,
    now: datetime,
) -> Outcome:
    """A case for one opinion: an individual (or common) one is assigned at once (triage and
    assignment in one step, the thin path); a major one becomes an invitation proposal."""
    case = CaseRecord(
        id=uuid4(),
        lead_opinion_id=opinion.opinion_id,
        opinion_id=opinion.opinion_id,
        receipt_code=opinion.receipt_code,
        department_id=department_id,
        station_id=opinion.station_id,
        town_id=opinion.town_id,
        category_id=category_id,
        kind=kind,
        state=S.TRIAGED,
        classification=classification,
        correlation_id=correlation_id,
    )
    actor = Actor.routing()
    if classification is Classification.MAJOR:
        triaged = _triaged_event(case, [opinion.opinion_id], actor, now)
        opened = Step(None, S.TRIAGED, "triaged major by keyword rules", triaged)
        proposed = propose_invitation(
            case, actor=actor, reason="a major problem (keyword rules)", now=now
        )
        return dataclasses.replace(proposed, steps=(opened, *proposed.steps))
    assigned = assign(
        case,
        department_id=department_id,
        actor=actor,
        reason="triaged individual; assigned by routing rules",
        deadlines=deadlines,
        calendar=calendar,
        now=now,
    )
    step = dataclasses.replace(assigned.steps[0], from_state=None)
    return dataclasses.replace(assigned, steps=(step,))


SUGGESTION_PREFIX = "JY"  # 建议: a suggestion's reference code, never a voter's receipt code


def new_suggestion_code() -> str:
    """A suggestion case's own reference code, e.g. JY-7K3QD-M2XPA: a receipt code has no
    prefix (XXXXX-XXXXX), so the two never coincide."""
    return new_code(SUGGESTION_PREFIX)


def open_aggregate(
    *,
    opinion_ids: list[UUID],
    department_id: str,
    station_id: str,
    town_id: str,
    category_id: str | None,
    kind: CaseKind,
    now: datetime,
) -> Outcome:
    """One suggestion case (闭会期间意见建议) for a common problem, linking its opinions;
    it waits, triaged, for an operator to assign it. It is a case of its own: its own
    reference code and its own correlation id (its events are not any member's story); each
    member opinion keeps its own case, and learns of the grouping from `case.triaged`."""
    case_id = uuid4()
    case = CaseRecord(
        id=case_id,
        lead_opinion_id=opinion_ids[0],
        opinion_id=None,
        receipt_code=new_suggestion_code(),
        department_id=department_id,
        station_id=station_id,
        town_id=town_id,
        category_id=category_id,
        kind=kind,
        state=S.TRIAGED,
        classification=Classification.COMMON,
        correlation_id=case_id,
    )
    actor = Actor.routing()
    event = _triaged_event(case, opinion_ids, actor, now)
    reason = f"common problem: {len(opinion_ids)} opinions of one category in one town"
    return Outcome(case=case, steps=(Step(None, S.TRIAGED, reason, event),), actor=actor)


def join_aggregate(suggestion: CaseRecord, opinion_id: UUID, now: datetime) -> Outcome:
    """One more opinion joins an open suggestion: `case.triaged` of the suggestion naming
    just that opinion (so its receipt shows the grouping); the suggestion itself is unchanged
    and no audit step is written (the link row is the record)."""
    event = _triaged_event(suggestion, [opinion_id], Actor.routing(), now)
    return Outcome(case=suggestion, steps=(), actor=Actor.routing(), extra_events=(event,))


def _triaged_event(
    case: CaseRecord, opinion_ids: list[UUID], actor: Actor, now: datetime
) -> CaseTriagedV1:
    return CaseTriagedV1(
        case_id=case.id,
        opinion_ids=opinion_ids,
        classification=case.classification.value,
        category_id=case.category_id,
        town_id=case.town_id,
        station_id=case.station_id,
        proposed_department_id=case.department_id,
        triaged_at=now,
        triaged_by=actor.subject,
    )


# ---- assignment -----------------------------------------------------------------------------


def assign(
    case: CaseRecord,
    *,
    department_id: str,
    actor: Actor,
    reason: str | None,
    deadlines: DeadlineSettings,
    calendar: WorkCalendar,
    now: datetime,
) -> Outcome:
    """Assign (or re-route) to `department_id` with fresh deadlines and timers."""
    action = Action.REROUTE if case.state is S.ASSIGNED else Action.ASSIGN
    target = next_state(case.state, action)
    if case.state in (S.ASSIGNED, S.RETURNED) and department_id == case.department_id:
        raise RuleViolation(
            f"The case is already with {department_id!r}; re-route it to another department.",
            case.state,
        )
    periods = deadlines.for_kind(case.kind)
    generation = case.generation + 1
    updated = dataclasses.replace(
        case,
        state=target,
        department_id=department_id,
        generation=generation,
        assigned_at=now,
        acknowledge_due_at=periods.acknowledge.due_from(now, calendar),
        complete_due_at=periods.complete.due_from(now, calendar),
        original_complete_due_at=None,
        acknowledged_at=None,
        responsible_person=None,
        responsible_contact=None,
        planned_completion_date=None,
        extension_reason=None,
        extension_requested_due_at=None,
        extensions_granted=0,
    )
    event = CaseAssignedV1(
        case_id=updated.id,
        opinion_id=updated.opinion_id or updated.lead_opinion_id,
        receipt_code=updated.receipt_code,
        department_id=department_id,
        station_id=updated.station_id,
        town_id=updated.town_id,
        category_id=updated.category_id,
        kind=updated.kind.value,
        assigned_at=now,
        acknowledge_due_at=updated.due(DeadlineKind.ACKNOWLEDGE),
        complete_due_at=updated.due(DeadlineKind.COMPLETE),
    )
    plan = [
        *_plan(updated, DeadlineKind.ACKNOWLEDGE, now, deadlines, calendar),
        *_plan(updated, DeadlineKind.COMPLETE, now, deadlines, calendar),
    ]
    return Outcome(
        case=updated,
        steps=(Step(case.state, target, reason, event),),
        actor=actor,
        cancel_timers=ALL_DEADLINES,
        plan=tuple(plan),
    )


def _plan(
    case: CaseRecord,
    deadline: DeadlineKind,
    start: datetime,
    deadlines: DeadlineSettings,
    calendar: WorkCalendar,
) -> list[TimerSpec]:
    return plan_timers(
        case_id=case.id,
        deadline=deadline,
        start=start,
        due_at=case.due(deadline),
        generation=case.generation,
        settings=deadlines,
        calendar=calendar,
    )


# ---- invitations (约请: 上报 → 审定) ---------------------------------------------------------


def propose_invitation(case: CaseRecord, *, actor: Actor, reason: str, now: datetime) -> Outcome:
    target = next_state(case.state, Action.PROPOSE_INVITATION)
    updated = dataclasses.replace(
        case, state=target, is_invitation=True, classification=Classification.MAJOR
    )
    event = InvitationRequestedV1(
        case_id=case.id,
        station_id=case.station_id,
        department_id=case.department_id,
        reason=reason,
        requested_at=now,
        requested_by=actor.subject,
    )
    return Outcome(
        case=updated,
        steps=(Step(case.state, target, reason, event),),
        actor=actor,
        cancel_timers=ALL_DEADLINES,
    )


def decide_invitation(
    case: CaseRecord,
    *,
    approved: bool,
    actor: Actor,
    reason: str | None,
    department_id: str | None,
    deadlines: DeadlineSettings,
    calendar: WorkCalendar,
    now: datetime,
) -> Outcome:
    """Approved: pending_review → approved → assigned (the invitation letter goes out).
    Rejected: pending_review → rejected (an operator may still assign it as an ordinary case)."""
    action = Action.APPROVE_INVITATION if approved else Action.REJECT_INVITATION
    target = next_state(case.state, action)
    department = department_id or case.department_id
    decided = InvitationDecidedV1(
        case_id=case.id,
        approved=approved,
        department_id=department,
        station_id=case.station_id,
        decided_by=actor.subject,
        reason=reason,
        decided_at=now,
    )
    step = Step(case.state, target, reason, decided)
    updated = dataclasses.replace(case, state=target, department_id=department)
    if not approved:
        return Outcome(case=updated, steps=(step,), actor=actor)
    assigned = assign(
        updated,
        department_id=department,
        actor=actor,
        reason="invitation approved: letter sent",
        deadlines=deadlines,
        calendar=calendar,
        now=now,
    )
    return dataclasses.replace(assigned, steps=(step, *assigned.steps))


# ---- the department's part ------------------------------------------------------------------


def acknowledge(
    case: CaseRecord,
    *,
    actor: Actor,
    responsible_person: str,
    contact: str,
    planned_completion_date: date,
    now: datetime,
) -> Outcome:
    target = next_state(case.state, Action.ACKNOWLEDGE)
    due = case.due(DeadlineKind.ACKNOWLEDGE)
    updated = dataclasses.replace(
        case,
        state=target,
        acknowledged_at=now,
        responsible_person=responsible_person,
        responsible_contact=contact,
        planned_completion_date=planned_completion_date,
    )
    event = CaseAcknowledgedV1(
        case_id=case.id,
        department_id=case.department_id,
        station_id=case.station_id,
        town_id=case.town_id,
        category_id=case.category_id,
        responsible_person=responsible_person,
        planned_completion_date=planned_completion_date,
        acknowledged_at=now,
        acknowledge_due_at=due,
        on_time=now <= due,
    )
    reason = f"accepted; responsible person named, planned for {planned_completion_date}"
    return Outcome(
        case=updated,
        steps=(Step(case.state, target, reason, event),),
        actor=actor,
        cancel_timers=frozenset({DeadlineKind.ACKNOWLEDGE}),
    )


def request_extension(
    case: CaseRecord,
    *,
    actor: Actor,
    reason: str,
    requested_complete_due_at: datetime,
    deadlines: DeadlineSettings,
    now: datetime,
) -> Outcome:
    target = next_state(case.state, Action.REQUEST_EXTENSION)
    if case.extensions_granted >= deadlines.max_extensions:
        raise RuleViolation(
            f"This case already had {case.extensions_granted} extension(s); no more.", case.state
        )
    if requested_complete_due_at <= case.due(DeadlineKind.COMPLETE):
        raise RuleViolation(
            "The requested deadline must be later than the current one.", case.state
        )
    updated = dataclasses.replace(
        case,
        state=target,
        extension_reason=reason,
        extension_requested_due_at=requested_complete_due_at,
    )
    event = CaseExtensionRequestedV1(
        case_id=case.id,
        department_id=case.department_id,
        reason=reason,
        requested_complete_due_at=requested_complete_due_at,
        requested_at=now,
    )
    return Outcome(case=updated, steps=(Step(case.state, target, reason, event),), actor=actor)


def decide_extension(
    case: CaseRecord,
    *,
    granted: bool,
    actor: Actor,
    reason: str | None,
    deadlines: DeadlineSettings,
    calendar: WorkCalendar,
    now: datetime,
) -> Outcome:
    """Granted: the complete deadline moves (the original one is kept) and its timers are
    re-planned. Denied: the deadline stands. Either way the case is back in hand."""
    action = Action.GRANT_EXTENSION if granted else Action.DENY_EXTENSION
    target = next_state(case.state, action)
    current = case.due(DeadlineKind.COMPLETE)
    original = case.original_complete_due_at or current
    if granted:
        assert case.extension_requested_due_at is not None
        updated = dataclasses.replace(
            case,
            state=target,
            complete_due_at=case.extension_requested_due_at,
            original_complete_due_at=original,
            extensions_granted=case.extensions_granted + 1,
            generation=case.generation + 1,
            extension_requested_due_at=None,
        )
    else:
        updated = dataclasses.replace(case, state=target, extension_requested_due_at=None)
    event = CaseExtensionDecidedV1(
        case_id=case.id,
        department_id=case.department_id,
        granted=granted,
        decided_by=actor.subject,
        original_complete_due_at=original,
        complete_due_at=updated.due(DeadlineKind.COMPLETE),
        decided_at=now,
    )
    why = f"extension {'granted' if granted else 'denied'}" + (f": {reason}" if reason else "")
    outcome = Outcome(case=updated, steps=(Step(case.state, target, why, event),), actor=actor)
    if not granted:
        return outcome
    plan = _plan(updated, DeadlineKind.COMPLETE, now, deadlines, calendar)
    return dataclasses.replace(
        outcome, cancel_timers=frozenset({DeadlineKind.COMPLETE}), plan=tuple(plan)
    )


def return_case(case: CaseRecord, *, actor: Actor, reason: str, now: datetime) -> Outcome:
    """The department disputes jurisdiction: back to an operator, who re-routes it."""
    target = next_state(case.state, Action.RETURN)
    updated = dataclasses.replace(case, state=target)
    event = CaseReturnedV1(
        case_id=case.id,
        department_id=case.department_id,
        station_id=case.station_id,
        town_id=case.town_id,
        category_id=case.category_id,
        reason=reason,
        returned_at=now,
    )
    return Outcome(
        case=updated,
        steps=(Step(case.state, target, reason, event),),
        actor=actor,
        cancel_timers=ALL_DEADLINES,
    )


@dataclass(frozen=True)
class HandlingReport:
    """《约请事项办理情况表》: 办理情况, 办理结果, 责任人, 联系方式, 完成日期."""

    handling_situation: str
    handling_result: str
    responsible_person: str
    contact: str
    completion_date: date


def complete(case: CaseRecord, *, actor: Actor, report: HandlingReport, now: datetime) -> Outcome:
    target = next_state(case.state, Action.COMPLETE)
    due = case.due(DeadlineKind.COMPLETE)
    updated = dataclasses.replace(
        case,
        state=target,
        completed_at=now,
        handling_situation=report.handling_situation,
        handling_result=report.handling_result,
        responsible_person=report.responsible_person,
        responsible_contact=report.contact,
        completion_date=report.completion_date,
        extension_requested_due_at=None,
    )
    event = CaseCompletedV1(
        case_id=case.id,
        opinion_id=case.opinion_id or case.lead_opinion_id,
        department_id=case.department_id,
        station_id=case.station_id,
        town_id=case.town_id,
        category_id=case.category_id,
        completed_at=now,
        complete_due_at=due,
        on_time=now <= due,
        result_summary=report.handling_result,
        is_invitation=case.is_invitation,
    )
    return Outcome(
        case=updated,
        steps=(Step(case.state, target, "handling report filed", event),),
        actor=actor,
        cancel_timers=ALL_DEADLINES,
    )


# ---- the voter's rating ---------------------------------------------------------------------

UNSATISFIED = "unsatisfied"
RATING_LEVELS = frozenset({"satisfied", "basically_satisfied", UNSATISFIED})


def rate(
    case: CaseRecord,
    *,
    level: str,
    reopen_requested: bool,
    actor: Actor,
    deadlines: DeadlineSettings,
    calendar: WorkCalendar,
    now: datetime,
) -> Outcome:
    """Satisfied / basically satisfied: evaluated, closed. Unsatisfied: reopened with a new
    complete deadline — once; unsatisfied again after that: closed."""
    if case.state is not S.COMPLETED:
        raise IllegalTransition(Action.EVALUATE, case.state)
    closed_event = CaseClosedV1(case_id=case.id, department_id=case.department_id, closed_at=now)
    unsatisfied = level == UNSATISFIED or reopen_requested
    if unsatisfied and case.reopen_count < 1:
        target = next_state(case.state, Action.REOPEN)
        period = deadlines.for_kind(case.kind).complete
        updated = dataclasses.replace(
            case,
            state=target,
            satisfaction=level,
            reopen_count=case.reopen_count + 1,
            generation=case.generation + 1,
            complete_due_at=period.due_from(now, calendar),
            completed_at=None,
        )
        reason = "the voter was not satisfied: reopened"
        reopened = CaseReopenedV1(
            case_id=case.id,
            department_id=case.department_id,
            reason=reason,
            reopened_at=now,
            complete_due_at=updated.due(DeadlineKind.COMPLETE),
        )
        return Outcome(
            case=updated,
            steps=(Step(case.state, target, reason, reopened),),
            actor=actor,
            cancel_timers=ALL_DEADLINES,
            plan=tuple(_plan(updated, DeadlineKind.COMPLETE, now, deadlines, calendar)),
        )
    closed = dataclasses.replace(case, state=S.CLOSED, satisfaction=level, closed_at=now)
    if unsatisfied:
        next_state(case.state, Action.CLOSE)
        reason = "the voter was not satisfied again; reopened once already: closed"
        return Outcome(
            case=closed, steps=(Step(case.state, S.CLOSED, reason, closed_event),), actor=actor
        )
    evaluated = next_state(case.state, Action.EVALUATE)
    final = next_state(evaluated, Action.CLOSE)
    return Outcome(
        case=closed,
        steps=(
            Step(case.state, evaluated, f"rated {level}", closed_event),
            Step(evaluated, final, "closed after a satisfied rating", closed_event),
        ),
        actor=actor,
    )


# ---- firing a deadline timer ----------------------------------------------------------------

_HOLDING: Mapping[DeadlineKind, frozenset[CaseState]] = {
    DeadlineKind.ACKNOWLEDGE: frozenset({S.ASSIGNED}),
    DeadlineKind.COMPLETE: frozenset(
        {S.ASSIGNED, S.ACKNOWLEDGED, S.EXTENSION_REQUESTED, S.REOPENED}
    ),
}


@dataclass(frozen=True)
class DueTimer:
    """A claimed timer and what the claim query read of its case."""

    case_id: UUID
    deadline: DeadlineKind
    action: str
    deadline_due_at: datetime
    case_state: CaseState
    case_deadline_due_at: datetime | None
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None


def timer_event(timer: DueTimer, now: datetime) -> Event | None:
    """The event a due timer publishes, or None when the case has moved on (acknowledged,
    completed, re-planned): the timer is then marked skipped. Cancelled timers are deleted
    in the transition's own transaction, so this is a second line of defence."""
    if timer.case_state not in _HOLDING[timer.deadline]:
        return None
    if timer.case_deadline_due_at != timer.deadline_due_at:
        return None
    common: dict[str, Any] = {
        "case_id": timer.case_id,
        "department_id": timer.department_id,
        "deadline": timer.deadline.value,
        "due_at": timer.deadline_due_at,
        "fired_at": now,
    }
    if timer.action == "reminder":
        return CaseDeadlineApproachingV1(**common)
    if timer.action == "overdue":
        return CaseOverdueV1(
            **common,
            station_id=timer.station_id,
            town_id=timer.town_id,
            category_id=timer.category_id,
        )
    return CaseEscalatedV1(**common)
