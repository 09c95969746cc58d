"""Station activity (台账) figures and report-back (述职评议) score distributions. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

RECEPTION = "reception"
ADVANCED_SHARE = 0.30  # 每年评选30%联络站为先进代表联络站
SCORE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("0-59", 0, 59),
    ("60-69", 60, 69),
    ("70-79", 70, 79),
    ("80-89", 80, 89),
    ("90-100", 90, 100),
)


def parse_month(text: str) -> date:
    """'2025-03' → date(2025, 3, 1); ValueError otherwise."""
    year, _, month = text.partition("-")
    if len(year) != 4 or len(month) != 2:
        raise ValueError(f"month must look like 2025-03, not {text!r}")
    return date(int(year), int(month), 1)


def months_between(first: date, last: date) -> int:
    """Months from `first`'s month to `last`'s month, both included."""
    return (last.year - first.year) * 12 + last.month - first.month + 1


def next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


@dataclass(frozen=True)
class StationActivity:
    station_id: str
    town_id: str
    activities: int
    reception_batches: int
    visitors: int
    issues: int

    def monthly_batches(self, months: int) -> float:
        return self.reception_batches / months if months else 0.0


@dataclass(frozen=True)
class ActivityReport:
    months: int
    stations: list[StationActivity]

    @property
    def activities(self) -> int:
        return sum(s.activities for s in self.stations)

    @property
    def reception_batches(self) -> int:
        return sum(s.reception_batches for s in self.stations)

    @property
    def visitors(self) -> int:
        return sum(s.visitors for s in self.stations)

    @property
    def issues(self) -> int:
        return sum(s.issues for s in self.stations)

    def under_one_batch_a_month(self) -> list[StationActivity]:
        """Stations whose reception batches average under one a month over the period."""
        return [s for s in self.stations if s.reception_batches < self.months]


def advanced_stations(stations: Sequence[StationActivity]) -> list[StationActivity]:
    """The top 30% of stations (rounded half up) by reception batches, then activities,
    visitors and issues; ties at the cut-off broken by station id."""
    ranked = sorted(
        stations,
        key=lambda s: (-s.reception_batches, -s.activities, -s.visitors, -s.issues, s.station_id),
    )
    return ranked[: int(len(ranked) * ADVANCED_SHARE + 0.5)]


@dataclass(frozen=True)
class ScoreDistribution:
    count: int
    mean: float | None
    minimum: int | None
    maximum: int | None
    bands: dict[str, int]


def distribution(scores: Iterable[int]) -> ScoreDistribution:
    values = list(scores)
    bands = {name: sum(1 for v in values if lo <= v <= hi) for name, lo, hi in SCORE_BANDS}
    if not values:
        return ScoreDistribution(0, None, None, None, bands)
    return ScoreDistribution(
        count=len(values),
        mean=round(sum(values) / len(values), 2),
        minimum=min(values),
        maximum=max(values),
        bands=bands,
    )
