"""The monthly report of a town or the whole city: its KPIs, a breakdown (towns and departments
for the city, stations for a town) and station activity; rendered as XLSX and PDF."""

from __future__ import annotations

from dataclasses import dataclass

from services.evaluation.domain import CITY_KEY, METRICS, Dimension, Kpi, zero
from services.evaluation.stations import ActivityReport, parse_month
from services.evaluation.store import EvaluationStore
from shared.reference import wenling

COUNT_LABELS: dict[str, str] = {
    "assigned": "交办件数",
    "acknowledged": "已响应",
    "acknowledged_on_time": "按时响应",
    "completed": "已办结",
    "completed_on_time": "按时办结",
    "rated": "已评价",
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "unsatisfied": "不满意",
    "returned": "退回",
    "reopened": "重办",
    "overdue": "超期",
}
RATE_LABELS: dict[str, str] = {
    "response_rate": "响应率",
    "completion_rate": "办结率",
    "on_time_completion_rate": "按时办结率",
    "satisfaction_rate": "满意率",
    "return_rate": "退回率",
}


@dataclass(frozen=True)
class MonthlyReport:
    month: str
    scope: str  # "city" or a town id
    title: str
    total: Kpi
    breakdown_title: str
    breakdown: list[Kpi]
    departments: list[Kpi]
    activity: ActivityReport

    @property
    def file_stem(self) -> str:
        return f"minyi-{self.scope}-{self.month}"


def names() -> dict[str, str]:
    ref = wenling()
    found = {t.id: t.name for t in ref.towns}
    found.update({s.id: s.name for s in ref.stations})
    found.update({d.id: d.name for d in ref.departments})
    found[CITY_KEY] = "温岭市"
    return found


def label(key: str) -> str:
    return names().get(key, key)


def format_rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


async def build_report(store: EvaluationStore, month: str, town_id: str | None) -> MonthlyReport:
    first = parse_month(month)  # ValueError on a bad month
    if town_id is None:
        totals = await store.kpis(dimension=Dimension.CITY.value, key=CITY_KEY, month=month)
        breakdown = await store.kpis(dimension=Dimension.TOWN.value, month=month)
        departments = await store.kpis(dimension=Dimension.DEPARTMENT.value, month=month)
        scope, title, breakdown_title = "city", f"温岭市 {month} 民意办理月报", "各镇（街道）"
    else:
        totals = await store.kpis(dimension=Dimension.TOWN.value, key=town_id, month=month)
        stations = await store.stations_of_town(town_id)
        breakdown = (
            await store.kpis(dimension=Dimension.STATION.value, month=month, keys=stations)
            if stations
            else []
        )
        departments = []
        scope, title = town_id, f"{label(town_id)} {month} 民意办理月报"
        breakdown_title = "各代表联络站"
    total = totals[0] if totals else Kpi(Dimension.CITY.value, scope, month, zero())
    activity = await store.station_activity(first, first, town_id=town_id)
    return MonthlyReport(
        month, scope, title, total, breakdown_title, breakdown, departments, activity
    )


def kpi_header() -> list[str]:
    return ["名称", *COUNT_LABELS.values(), *RATE_LABELS.values()]


def kpi_cells(kpi: Kpi, name: str) -> list[str | int | float | None]:
    d = kpi.as_dict()
    return [name, *(kpi.counts[m] for m in METRICS), *(d[r] for r in RATE_LABELS)]
