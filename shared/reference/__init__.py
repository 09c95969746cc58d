"""The default reference data (Wenling: towns, stations, categories, departments, deputies).

Data, not rules: each service's `seed` command loads the part it keeps in its own schema.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Town(_Row):
    id: str
    name: str


class Station(_Row):
    id: str
    town_id: str
    name: str
    online: bool = False
    head: str | None = None  # 站长
    liaison_officer: str | None = None  # 联络员
    reception_day: str | None = None  # the published monthly reception day, e.g. "每月15日"


class Category(_Row):
    id: str
    name: str
    case_kind: str  # emergency | utilities | general | complex


class Department(_Row):
    id: str
    name: str
    contact_name: str
    contact_phone: str  # E.164; a department clerk's work phone, not a voter's


class Deputy(_Row):
    id: str
    name: str
    level: str
    station_id: str


class RoutingRule(_Row):
    category_id: str
    town_id: str | None = None
    department_id: str
    priority: int = 100


class ReferenceData(_Row):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    note: str | None = Field(
        default=None, alias="_note", description="Where the data comes from (placeholders)."
    )
    towns: list[Town]
    stations: list[Station]
    categories: list[Category]
    departments: list[Department]
    deputies: list[Deputy]
    routing_rules: list[RoutingRule]
    fallback_department_id: str


@cache
def wenling() -> ReferenceData:
    text = (resources.files("shared.reference") / "wenling.json").read_text("utf-8")
    return ReferenceData.model_validate_json(text)
