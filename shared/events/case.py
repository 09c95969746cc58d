"""Events of the case aggregate (owned by routing)."""

from __future__ import annotations

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
