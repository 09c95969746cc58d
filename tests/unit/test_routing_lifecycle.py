"""The case state machine: every transition, and every illegal one, on the pure domain."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from services.routing.domain import lifecycle
from services.routing.domain.calendar import official_calendar
from services.routing.domain.deadlines import (
    CaseKind,
    DeadlineKind,
    DeadlineSettings,
    TimerAction,
)
from services.routing.domain.lifecycle import (
    TRANSITIONS,
    Action,
    Actor,
    CaseRecord,
    CaseState,
    DueTimer,
    HandlingReport,
    IllegalTransition,
    Outcome,
    RuleViolation,
    timer_event,
)
from services.routing.domain.triage import Classification
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
    Channel,
    InvitationDecidedV1,
    InvitationRequestedV1,
    OpinionSubmittedV1,
)

CAL = official_calendar([2025, 2026])
SETTINGS = DeadlineSettings()
NOW = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)  # Monday 10:00 in China
DEPT = Actor("dept-transport", "department")
COMMITTEE = Actor("committee", "committee")
OPERATOR = Actor("operator", "operator")
REPORT = HandlingReport("调整了配时", "红绿灯延长到45秒", "张三", "0576-8600000", date(2025, 3, 5))


def opinion(content: str = "路口红绿灯时间太短") -> OpinionSubmittedV1:
    return OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.ONLINE,
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
        content=content,
        submitted_at=NOW,
        voter_reachable=True,
    )


def opened(classification: Classification = Classification.INDIVIDUAL) -> Outcome:
    o = opinion()
    return lifecycle.open_case(
        o,
        correlation_id=o.opinion_id,
        department_id="transport",
        category_id="traffic",
        kind=CaseKind.GENERAL,
        classification=classification,
        deadlines=SETTINGS,
        calendar=CAL,
        now=NOW,
    )


def case_in(state: CaseState, **changes: object) -> CaseRecord:
    """A case as it is in `state` (deadlines set, an extension asked when relevant)."""
    base = opened().case
    values: dict[str, object] = {"state": state}
    if state is CaseState.EXTENSION_REQUESTED:
        values["extension_requested_due_at"] = base.due(DeadlineKind.COMPLETE) + timedelta(days=5)
    values.update(changes)
    return dataclasses.replace(base, **values)  # type: ignore[arg-type]


LATER = NOW + timedelta(hours=1)

ACTIONS: dict[Action, Callable[[CaseRecord], Outcome]] = {
    Action.PROPOSE_INVITATION: lambda c: lifecycle.propose_invitation(
        c, actor=OPERATOR, reason="重大", now=LATER
    ),
    Action.APPROVE_INVITATION: lambda c: lifecycle.decide_invitation(
        c,
        approved=True,
        actor=COMMITTEE,
        reason="同意",
        department_id=None,
        deadlines=SETTINGS,
        calendar=CAL,
        now=LATER,
    ),
    Action.REJECT_INVITATION: lambda c: lifecycle.decide_invitation(
        c,
        approved=False,
        actor=COMMITTEE,
        reason="不需要",
        department_id=None,
        deadlines=SETTINGS,
        calendar=CAL,
        now=LATER,
    ),
    Action.ASSIGN: lambda c: lifecycle.assign(
        c,
        department_id="housing",
        actor=OPERATOR,
        reason="改派",
        deadlines=SETTINGS,
        calendar=CAL,
        now=LATER,
    ),
    Action.ACKNOWLEDGE: lambda c: lifecycle.acknowledge(
        c,
        actor=DEPT,
        responsible_person="张三",
        contact="0576-8600000",
        planned_completion_date=date(2025, 3, 7),
        now=LATER,
    ),
    Action.REQUEST_EXTENSION: lambda c: lifecycle.request_extension(
        c,
        actor=DEPT,
        reason="需要协调多个部门",
        requested_complete_due_at=NOW + timedelta(days=30),
        deadlines=SETTINGS,
        now=LATER,
    ),
    Action.GRANT_EXTENSION: lambda c: lifecycle.decide_extension(
        c,
        granted=True,
        actor=COMMITTEE,
        reason="同意",
        deadlines=SETTINGS,
        calendar=CAL,
        now=LATER,
    ),
    Action.DENY_EXTENSION: lambda c: lifecycle.decide_extension(
        c,
        granted=False,
        actor=COMMITTEE,
        reason="不同意",
        deadlines=SETTINGS,
        calendar=CAL,
        now=LATER,
    ),
    Action.RETURN: lambda c: lifecycle.return_case(c, actor=DEPT, reason="不属于本部门", now=LATER),
    Action.COMPLETE: lambda c: lifecycle.complete(c, actor=DEPT, report=REPORT, now=LATER),
}
RATING_ACTIONS = {Action.EVALUATE, Action.CLOSE, Action.REOPEN}


def rate(c: CaseRecord, level: str) -> Outcome:
    return lifecycle.rate(
        c,
        level=level,
        reopen_requested=level == "unsatisfied",
        actor=Actor("voter", "voter"),
        deadlines=SETTINGS,
        calendar=CAL,
        now=LATER,
    )


def event_types(outcome: Outcome) -> list[type]:
    return [type(e) for e in outcome.events]


# ---- the table ------------------------------------------------------------------------------


def test_every_action_has_a_row_and_every_state_is_reachable():
    assert set(TRANSITIONS) == set(Action)
    targets = {target for _, target in TRANSITIONS.values()}
    assert targets | {CaseState.TRIAGED} == set(CaseState)


ILLEGAL = [
    (action, state)
    for action, (sources, _) in TRANSITIONS.items()
    for state in CaseState
    if state not in sources
]


@pytest.mark.parametrize(("action", "state"), ILLEGAL, ids=lambda v: str(v))
def test_an_illegal_transition_is_refused_with_the_current_state(action, state):
    with pytest.raises(IllegalTransition) as refused:
        lifecycle.next_state(state, action)
    assert refused.value.state is state
    case = case_in(state)
    if action in (Action.ASSIGN, Action.REROUTE):
        # One entry point, `assign`, takes both rows: re-route when assigned, else assign.
        if state in TRANSITIONS[Action.ASSIGN][0] | TRANSITIONS[Action.REROUTE][0]:
            return
        action = Action.ASSIGN
    if action in RATING_ACTIONS:
        if state is CaseState.COMPLETED:
            pytest.skip("a rating of a completed case is always legal")
        level = "unsatisfied" if action is Action.REOPEN else "satisfied"
        attempt: Callable[[CaseRecord], Outcome] = lambda c: rate(c, level)  # noqa: E731
    else:
        attempt = ACTIONS[action]
    with pytest.raises(IllegalTransition) as refused_by_rule:
        attempt(case)
    assert refused_by_rule.value.state is state


# ---- each transition ------------------------------------------------------------------------


def test_an_individual_opinion_is_assigned_at_once_with_deadlines_and_timers():
    outcome = opened()
    case = outcome.case
    assert case.state is CaseState.ASSIGNED
    assert [(s.from_state, s.to_state) for s in outcome.steps] == [(None, CaseState.ASSIGNED)]
    assert event_types(outcome) == [CaseAssignedV1]
    # 1 working day to acknowledge, 7 to complete (Mon 3 Mar 2025 → Tue 4, Wed 12 Mar).
    assert case.acknowledge_due_at == datetime(2025, 3, 4, 2, 0, tzinfo=UTC)
    assert case.complete_due_at == datetime(2025, 3, 12, 2, 0, tzinfo=UTC)
    kinds = {(t.deadline, t.action) for t in outcome.plan}
    assert (DeadlineKind.ACKNOWLEDGE, TimerAction.REMINDER) in kinds
    assert (DeadlineKind.COMPLETE, TimerAction.ESCALATION) in kinds
    assert outcome.cancel_timers == frozenset(DeadlineKind)


def test_a_major_opinion_becomes_an_invitation_pending_review():
    outcome = opened(Classification.MAJOR)
    assert outcome.case.state is CaseState.PENDING_REVIEW
    assert outcome.case.is_invitation
    assert [(s.from_state, s.to_state) for s in outcome.steps] == [
        (None, CaseState.TRIAGED),
        (CaseState.TRIAGED, CaseState.PENDING_REVIEW),
    ]
    assert event_types(outcome) == [CaseTriagedV1, InvitationRequestedV1]
    assert outcome.plan == ()


def test_an_approved_invitation_is_assigned():
    outcome = ACTIONS[Action.APPROVE_INVITATION](case_in(CaseState.PENDING_REVIEW))
    assert [(s.from_state, s.to_state) for s in outcome.steps] == [
        (CaseState.PENDING_REVIEW, CaseState.APPROVED),
        (CaseState.APPROVED, CaseState.ASSIGNED),
    ]
    assert event_types(outcome) == [InvitationDecidedV1, CaseAssignedV1]
    decided = outcome.events[0]
    assert isinstance(decided, InvitationDecidedV1)
    assert decided.approved
    assert outcome.plan


def test_a_rejected_invitation_waits_for_an_operator():
    outcome = ACTIONS[Action.REJECT_INVITATION](case_in(CaseState.PENDING_REVIEW))
    assert outcome.case.state is CaseState.REJECTED
    decided = outcome.events[0]
    assert isinstance(decided, InvitationDecidedV1)
    assert not decided.approved
    reassigned = ACTIONS[Action.ASSIGN](outcome.case)
    assert reassigned.case.state is CaseState.ASSIGNED


def test_propose_invitation_from_an_assigned_case_cancels_its_timers():
    outcome = ACTIONS[Action.PROPOSE_INVITATION](case_in(CaseState.ASSIGNED))
    assert outcome.case.state is CaseState.PENDING_REVIEW
    assert outcome.cancel_timers == frozenset(DeadlineKind)
    assert event_types(outcome) == [InvitationRequestedV1]


def test_acknowledge_names_the_responsible_person_and_cancels_acknowledge_timers():
    outcome = ACTIONS[Action.ACKNOWLEDGE](case_in(CaseState.ASSIGNED))
    assert outcome.case.state is CaseState.ACKNOWLEDGED
    assert outcome.case.responsible_person == "张三"
    assert outcome.cancel_timers == frozenset({DeadlineKind.ACKNOWLEDGE})
    event = outcome.events[0]
    assert isinstance(event, CaseAcknowledgedV1)
    assert event.on_time
    assert "0576" not in event.model_dump_json()  # the contact stays in routing


def test_a_late_acknowledgement_is_marked_late():
    late = NOW + timedelta(days=3)
    outcome = lifecycle.acknowledge(
        case_in(CaseState.ASSIGNED),
        actor=DEPT,
        responsible_person="张三",
        contact="0576-8600000",
        planned_completion_date=date(2025, 3, 7),
        now=late,
    )
    event = outcome.events[0]
    assert isinstance(event, CaseAcknowledgedV1)
    assert not event.on_time


def test_extension_granted_moves_the_deadline_keeps_the_original_and_replans():
    acked = ACTIONS[Action.ACKNOWLEDGE](case_in(CaseState.ASSIGNED)).case
    original = acked.due(DeadlineKind.COMPLETE)
    requested = ACTIONS[Action.REQUEST_EXTENSION](acked)
    assert requested.case.state is CaseState.EXTENSION_REQUESTED
    assert event_types(requested) == [CaseExtensionRequestedV1]
    granted = ACTIONS[Action.GRANT_EXTENSION](requested.case)
    case = granted.case
    assert case.state is CaseState.ACKNOWLEDGED
    assert case.complete_due_at == NOW + timedelta(days=30)
    assert case.original_complete_due_at == original
    assert case.extensions_granted == 1
    assert granted.cancel_timers == frozenset({DeadlineKind.COMPLETE})
    assert {t.deadline for t in granted.plan} == {DeadlineKind.COMPLETE}
    assert all(t.deadline_due_at == case.complete_due_at for t in granted.plan)
    assert all(f":g{case.generation}:" in t.dedupe_key for t in granted.plan)
    event = granted.events[0]
    assert isinstance(event, CaseExtensionDecidedV1)
    assert event.granted
    assert event.original_complete_due_at == original
    # No second extension (max_extensions = 1).
    with pytest.raises(RuleViolation):
        ACTIONS[Action.REQUEST_EXTENSION](case)


def test_extension_denied_keeps_the_deadline():
    asked = case_in(CaseState.EXTENSION_REQUESTED)
    denied = ACTIONS[Action.DENY_EXTENSION](asked)
    assert denied.case.state is CaseState.ACKNOWLEDGED
    assert denied.case.complete_due_at == asked.complete_due_at
    assert denied.plan == ()
    assert denied.cancel_timers == frozenset()
    event = denied.events[0]
    assert isinstance(event, CaseExtensionDecidedV1)
    assert not event.granted


def test_an_extension_must_be_later_than_the_current_deadline():
    acked = case_in(CaseState.ACKNOWLEDGED)
    with pytest.raises(RuleViolation):
        lifecycle.request_extension(
            acked,
            actor=DEPT,
            reason="x" * 5,
            requested_complete_due_at=acked.due(DeadlineKind.COMPLETE),
            deadlines=SETTINGS,
            now=LATER,
        )


@pytest.mark.parametrize("state", [CaseState.ASSIGNED, CaseState.ACKNOWLEDGED])
def test_return_then_reroute_to_another_department(state):
    returned = ACTIONS[Action.RETURN](case_in(state))
    assert returned.case.state is CaseState.RETURNED
    assert returned.cancel_timers == frozenset(DeadlineKind)
    assert event_types(returned) == [CaseReturnedV1]
    with pytest.raises(RuleViolation):  # not back to the department that returned it
        lifecycle.assign(
            returned.case,
            department_id="transport",
            actor=OPERATOR,
            reason="x",
            deadlines=SETTINGS,
            calendar=CAL,
            now=LATER,
        )
    rerouted = ACTIONS[Action.ASSIGN](returned.case)
    assert rerouted.case.state is CaseState.ASSIGNED
    assert rerouted.case.department_id == "housing"
    assert rerouted.case.generation == returned.case.generation + 1
    assert rerouted.case.assigned_at == LATER
    assert event_types(rerouted) == [CaseAssignedV1]


def test_operator_reroutes_an_assigned_case():
    outcome = ACTIONS[Action.ASSIGN](case_in(CaseState.ASSIGNED))
    assert [(s.from_state, s.to_state) for s in outcome.steps] == [
        (CaseState.ASSIGNED, CaseState.ASSIGNED)
    ]
    assert outcome.case.department_id == "housing"


@pytest.mark.parametrize(
    "state", [CaseState.ACKNOWLEDGED, CaseState.EXTENSION_REQUESTED, CaseState.REOPENED]
)
def test_complete_files_the_handling_report(state):
    outcome = ACTIONS[Action.COMPLETE](case_in(state))
    case = outcome.case
    assert case.state is CaseState.COMPLETED
    assert (case.handling_situation, case.handling_result) == ("调整了配时", "红绿灯延长到45秒")
    assert (case.responsible_person, case.responsible_contact) == ("张三", "0576-8600000")
    assert case.completion_date == date(2025, 3, 5)
    assert outcome.cancel_timers == frozenset(DeadlineKind)
    event = outcome.events[0]
    assert isinstance(event, CaseCompletedV1)
    assert event.on_time
    assert event.result_summary == "红绿灯延长到45秒"


@pytest.mark.parametrize("level", ["satisfied", "basically_satisfied"])
def test_a_satisfied_rating_evaluates_and_closes(level):
    outcome = rate(case_in(CaseState.COMPLETED), level)
    assert [(s.from_state, s.to_state) for s in outcome.steps] == [
        (CaseState.COMPLETED, CaseState.EVALUATED),
        (CaseState.EVALUATED, CaseState.CLOSED),
    ]
    assert event_types(outcome) == [CaseClosedV1]
    assert outcome.case.satisfaction == level


def test_unsatisfied_reopens_once_then_closes():
    first = rate(case_in(CaseState.COMPLETED), "unsatisfied")
    assert first.case.state is CaseState.REOPENED
    assert first.case.reopen_count == 1
    assert event_types(first) == [CaseReopenedV1]
    assert {t.deadline for t in first.plan} == {DeadlineKind.COMPLETE}
    completed_again = ACTIONS[Action.COMPLETE](first.case).case
    second = rate(completed_again, "unsatisfied")
    assert second.case.state is CaseState.CLOSED
    assert [(s.from_state, s.to_state) for s in second.steps] == [
        (CaseState.COMPLETED, CaseState.CLOSED)
    ]
    assert event_types(second) == [CaseClosedV1]
    with pytest.raises(IllegalTransition):
        rate(second.case, "unsatisfied")


def test_common_opinions_open_one_triaged_suggestion():
    ids = [uuid4() for _ in range(3)]
    where = {
        "department_id": "transport",
        "station_id": "zeguo-1",
        "town_id": "zeguo",
        "category_id": "traffic",
    }
    outcome = lifecycle.open_aggregate(opinion_ids=ids, kind=CaseKind.GENERAL, now=NOW, **where)
    assert outcome.case.state is CaseState.TRIAGED
    assert outcome.case.classification is Classification.COMMON
    event = outcome.events[0]
    assert isinstance(event, CaseTriagedV1)
    assert event.opinion_ids == ids
    # A case of its own: its own reference code (not a receipt code) and its own story.
    code = outcome.case.receipt_code
    assert re.fullmatch(r"JY-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code)
    assert outcome.case.correlation_id == outcome.case.id
    again = lifecycle.open_aggregate(opinion_ids=ids, kind=CaseKind.GENERAL, now=NOW, **where)
    assert again.case.receipt_code != code
    assigned = ACTIONS[Action.ASSIGN](outcome.case)
    assert assigned.case.state is CaseState.ASSIGNED
    assert isinstance(assigned.events[0], CaseAssignedV1)
    assert assigned.events[0].opinion_id == ids[0]


# ---- timers ---------------------------------------------------------------------------------


def due_timer(state: CaseState, deadline: DeadlineKind, action: str) -> DueTimer:
    case = case_in(state)
    return DueTimer(
        case_id=case.id,
        deadline=deadline,
        action=action,
        deadline_due_at=case.due(deadline),
        case_state=state,
        case_deadline_due_at=case.due(deadline),
        department_id="transport",
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
    )


def test_a_due_timer_publishes_its_event():
    at = NOW + timedelta(days=1)
    assert isinstance(
        timer_event(due_timer(CaseState.ASSIGNED, DeadlineKind.ACKNOWLEDGE, "reminder"), at),
        CaseDeadlineApproachingV1,
    )
    assert isinstance(
        timer_event(due_timer(CaseState.ACKNOWLEDGED, DeadlineKind.COMPLETE, "overdue"), at),
        CaseOverdueV1,
    )
    assert isinstance(
        timer_event(due_timer(CaseState.REOPENED, DeadlineKind.COMPLETE, "escalation"), at),
        CaseEscalatedV1,
    )


def test_a_timer_of_a_case_that_moved_on_is_skipped():
    at = NOW + timedelta(days=1)
    assert (
        timer_event(due_timer(CaseState.ACKNOWLEDGED, DeadlineKind.ACKNOWLEDGE, "overdue"), at)
        is None
    )
    assert (
        timer_event(due_timer(CaseState.COMPLETED, DeadlineKind.COMPLETE, "reminder"), at) is None
    )
    stale = dataclasses.replace(
        due_timer(CaseState.ACKNOWLEDGED, DeadlineKind.COMPLETE, "reminder"),
        deadline_due_at=NOW,  # planned for a deadline since extended
    )
    assert timer_event(stale, at) is None
