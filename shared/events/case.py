"""Events of the case aggregate (owned by routing)."""

from __future__ import annotations

from datetime import date
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime

from shared.events.envelope import Event


class CaseAssignedV1(Event):
    """A case was created for an opinion and assigned (交办) to a department."""

    event_type: ClassVar[str] = "case.assigned"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "case"

    case_id: UUID
    opinion_id: UUID
    receipt_code: str
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None
    kind: str
    assigned_at: AwareDatetime
    acknowledge_due_at: AwareDatetime
    complete_due_at: AwareDatetime

    def aggregate_id(self) -> str:
        return str(self.case_id)


class _CaseEvent(Event):
    aggregate_type: ClassVar[str] = "case"
    event_version: ClassVar[int] = 1

    case_id: UUID

    def aggregate_id(self) -> str:
        return str(self.case_id)


class CaseTriagedV1(_CaseEvent):
    """Routing classified an opinion: individual, common (aggregated) or major (invitation)."""

    event_type: ClassVar[str] = "case.triaged"
    opinion_ids: list[UUID]
    classification: str  # individual | common | major
    category_id: str | None
    town_id: str
    station_id: str
    proposed_department_id: str | None
    triaged_at: AwareDatetime
    triaged_by: str  # "routing" (rules) or an operator's subject


class InvitationRequestedV1(_CaseEvent):
    """A station reports an invitation need to the committee (上报)."""

    event_type: ClassVar[str] = "invitation.requested"
    station_id: str
    department_id: str
    reason: str
    requested_at: AwareDatetime
    requested_by: str


class InvitationDecidedV1(_CaseEvent):
    """The committee reviewed an invitation (审定)."""

    event_type: ClassVar[str] = "invitation.decided"
    approved: bool
    department_id: str
    station_id: str
    decided_by: str
    reason: str | None
    decided_at: AwareDatetime


class CaseAcknowledgedV1(_CaseEvent):
    """The department accepted the case (收函反馈): who is responsible, contact, planned date."""

    event_type: ClassVar[str] = "case.acknowledged"
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None
    responsible_person: str
    planned_completion_date: date
    acknowledged_at: AwareDatetime
    acknowledge_due_at: AwareDatetime
    on_time: bool


class CaseExtensionRequestedV1(_CaseEvent):
    event_type: ClassVar[str] = "case.extension_requested"
    department_id: str
    reason: str
    requested_complete_due_at: AwareDatetime
    requested_at: AwareDatetime


class CaseExtensionDecidedV1(_CaseEvent):
    event_type: ClassVar[str] = "case.extension_decided"
    department_id: str
    granted: bool
    decided_by: str
    original_complete_due_at: AwareDatetime
    complete_due_at: AwareDatetime  # the deadline in force after the decision
    decided_at: AwareDatetime


class CaseReturnedV1(_CaseEvent):
    """The department disputes jurisdiction; the case goes back to an operator."""

    event_type: ClassVar[str] = "case.returned"
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None
    reason: str
    returned_at: AwareDatetime


class CaseCompletedV1(_CaseEvent):
    """The department finished and filed its handling report (《约请事项办理情况表》)."""

    event_type: ClassVar[str] = "case.completed"
    opinion_id: UUID
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None
    completed_at: AwareDatetime
    complete_due_at: AwareDatetime
    on_time: bool
    result_summary: str  # what was done, as the voter may read it
    is_invitation: bool = False


class CaseReopenedV1(_CaseEvent):
    event_type: ClassVar[str] = "case.reopened"
    department_id: str
    reason: str
    reopened_at: AwareDatetime
    complete_due_at: AwareDatetime


class CaseClosedV1(_CaseEvent):
    event_type: ClassVar[str] = "case.closed"
    department_id: str
    closed_at: AwareDatetime


class CaseDeadlineApproachingV1(_CaseEvent):
    """A reminder: `deadline` (acknowledge | complete) falls due at `due_at`."""

    event_type: ClassVar[str] = "case.deadline_approaching"
    department_id: str
    deadline: str
    due_at: AwareDatetime
    fired_at: AwareDatetime


class CaseOverdueV1(_CaseEvent):
    event_type: ClassVar[str] = "case.overdue"
    department_id: str
    station_id: str
    town_id: str
    category_id: str | None
    deadline: str
    due_at: AwareDatetime
    fired_at: AwareDatetime


class CaseEscalatedV1(_CaseEvent):
    """Past its deadline for the escalation period: the committee supervises (督办)."""

    event_type: ClassVar[str] = "case.escalated"
    department_id: str
    deadline: str
    due_at: AwareDatetime
    fired_at: AwareDatetime
