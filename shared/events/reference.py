"""Reference data and station activity events (owned by intake)."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime

from shared.events.envelope import Event


class ReferenceDataChangedV1(Event):
    """A town, station, deputy, category or department was created, changed or retired.

    Other services keep their own copies from these (no cross-service database reads).
    """

    event_type: ClassVar[str] = "reference.changed"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "reference"

    kind: str  # town | station | deputy | category | department
    id: str
    data: dict[str, Any]  # the record's fields as intake keeps them
    retired: bool = False
    changed_at: AwareDatetime

    def aggregate_id(self) -> str:
        return f"{self.kind}:{self.id}"


class StationActivityRecordedV1(Event):
    """A station's activity (台账): a reception batch, deputies' visit, study session, …"""

    event_type: ClassVar[str] = "station.activity_recorded"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "station"

    activity_id: UUID
    station_id: str
    town_id: str
    kind: str  # reception | visit | joint_session | study | other
    activity_date: date
    deputy_ids: list[str]
    visitor_count: int
    opinion_ids: list[UUID]
    recorded_at: AwareDatetime

    def aggregate_id(self) -> str:
        return self.station_id


class ReceptionDayChangedV1(Event):
    """A station's published reception day (活动日) moved, announced ≥ 3 days ahead."""

    event_type: ClassVar[str] = "station.reception_day_changed"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "station"

    station_id: str
    previous_date: date | None
    new_date: date
    reason: str
    announced_at: AwareDatetime

    def aggregate_id(self) -> str:
        return self.station_id
