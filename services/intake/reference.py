"""Reference data kinds intake maintains and publishes: their shapes and tables. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from pydantic import BaseModel

from shared.events import EventEnvelope, ReferenceDataChangedV1
from shared.reference import Category, Department, Deputy, ReferenceData, Station, Town


@dataclass(frozen=True)
class Kind:
    name: str
    table: str
    model: type[BaseModel]
    columns: tuple[str, ...]  # besides id
    parents: tuple[tuple[str, str], ...] = ()  # (column, table) that must exist, live


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("town", "towns", Town, ("name",)),
        Kind(
            "station",
            "stations",
            Station,
            ("town_id", "name", "online", "head", "liaison_officer", "reception_day"),
            (("town_id", "towns"),),
        ),
        Kind("category", "categories", Category, ("name", "case_kind")),
        Kind("department", "departments", Department, ("name", "contact_name", "contact_phone")),
        Kind(
            "deputy",
            "deputies",
            Deputy,
            ("name", "level", "station_id"),
            (("station_id", "stations"),),
        ),
    )
}
ORDER = ("town", "station", "category", "department", "deputy")  # parents first


def records(ref: ReferenceData) -> list[tuple[str, BaseModel]]:
    rows: list[tuple[str, BaseModel]] = []
    rows += [("town", t) for t in ref.towns]
    rows += [("station", s) for s in ref.stations]
    rows += [("category", c) for c in ref.categories]
    rows += [("department", d) for d in ref.departments]
    rows += [("deputy", d) for d in ref.deputies]
    return rows


def changed(
    kind: str, record_id: str, data: dict[str, Any], *, retired: bool, at: datetime, by: str
) -> EventEnvelope:
    event = ReferenceDataChangedV1(
        kind=kind, id=record_id, data=data, retired=retired, changed_at=at
    )
    return EventEnvelope.wrap(
        event,
        producer="intake",
        correlation_id=uuid5(NAMESPACE_URL, f"minyi:reference:{kind}:{record_id}:{by}"),
    )
