"""Station activity figures and report-back score distributions."""

from __future__ import annotations

from datetime import date

import pytest

from services.evaluation.stations import (
    ActivityReport,
    StationActivity,
    advanced_stations,
    distribution,
    months_between,
    parse_month,
)


def _station(i: int, batches: int) -> StationActivity:
    return StationActivity(f"s{i:02d}", "zeguo", batches + 1, batches, 3 * batches, batches)


def test_months() -> None:
    assert parse_month("2017-01") == date(2017, 1, 1)
    assert months_between(date(2017, 1, 1), date(2019, 12, 1)) == 36
    with pytest.raises(ValueError, match="2025-03"):
        parse_month("2017-1")


def test_stations_under_one_batch_a_month() -> None:
    report = ActivityReport(
        months=12, stations=[_station(i, b) for i, b in enumerate([0, 11, 12, 30])]
    )
    assert [s.station_id for s in report.under_one_batch_a_month()] == ["s00", "s01"]
    assert report.reception_batches == 53


def test_top_30_percent_of_47_stations_is_14() -> None:
    stations = [_station(i, i) for i in range(47)]
    top = advanced_stations(stations)
    assert len(top) == 14
    assert [s.reception_batches for s in top] == list(range(46, 32, -1))
    assert len(advanced_stations(stations[:10])) == 3


def test_score_distribution() -> None:
    d = distribution([95, 90, 85, 72, 60, 40])
    assert d.count == 6
    assert d.mean == 73.67
    assert (d.minimum, d.maximum) == (40, 95)
    assert d.bands == {"0-59": 1, "60-69": 1, "70-79": 1, "80-89": 1, "90-100": 2}
    assert distribution([]).mean is None
