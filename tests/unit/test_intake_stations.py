"""Intake's station rules: activity records, the 3-day notice of a reception day change, the
month's reception date, the console's daily counts. Pure."""

from datetime import UTC, date, datetime
from uuid import uuid4

from services.intake.domain import (
    ActivityKind,
    ReceptionDayChange,
    StationActivity,
    activity_problems,
    china_today,
    daily_counts,
    monthly_reception_day,
    reception_day_problems,
    scheduled_reception_date,
    stats_range_problems,
)
from shared import topics
from shared.reference import wenling

# 2026-03-01 17:00 UTC is already 2026-03-02 01:00 in Wenling.
LATE_EVENING_UTC = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)


def test_today_is_wenlings_day() -> None:
    assert china_today(LATE_EVENING_UTC) == date(2026, 3, 2)
    assert china_today(datetime(2026, 3, 1, 15, 59, tzinfo=UTC)) == date(2026, 3, 1)


def test_a_reception_day_change_needs_three_days_notice_in_wenling() -> None:
    today = china_today(LATE_EVENING_UTC)  # 2026-03-02
    for days_ahead, refused in ((-1, True), (0, True), (1, True), (2, True), (3, False)):
        new_date = date(2026, 3, 2 + days_ahead) if days_ahead >= 0 else date(2026, 3, 1)
        problems = reception_day_problems(new_date, today)
        assert bool(problems) is refused, (days_ahead, problems)
    [problem] = reception_day_problems(date(2026, 3, 4), today)
    assert problem.field == "new_date"
    assert "at least 3 days ahead" in problem.message
    assert "Asia/Shanghai" in problem.message
    # In UTC it would still be 03-01 and 03-04 would pass: the rule counts Wenling's days.
    assert reception_day_problems(date(2026, 3, 4), date(2026, 3, 1)) == []


def test_the_months_reception_date_follows_the_published_rule() -> None:
    assert monthly_reception_day("每月15日") == 15
    assert monthly_reception_day("每月 8 号上午") == 8
    assert monthly_reception_day("逢周三") is None
    assert monthly_reception_day(None) is None
    assert scheduled_reception_date("每月15日", 2026, 2) == date(2026, 2, 15)
    assert scheduled_reception_date("每月31日", 2026, 2) == date(2026, 2, 28)
    assert scheduled_reception_date(None, 2026, 2) is None


def test_an_activity_is_refused_for_a_future_day_unknown_deputies_or_foreign_opinions() -> None:
    mine, foreign = uuid4(), uuid4()
    ok = activity_problems(
        activity_date=date(2026, 3, 2),
        today=date(2026, 3, 2),
        deputy_ids=["dep-001"],
        known_deputies=frozenset({"dep-001"}),
        opinion_ids=[mine],
        station_opinions=frozenset({mine}),
    )
    assert ok == []
    problems = activity_problems(
        activity_date=date(2026, 3, 3),
        today=date(2026, 3, 2),
        deputy_ids=["dep-001", "dep-999"],
        known_deputies=frozenset({"dep-001"}),
        opinion_ids=[mine, foreign],
        station_opinions=frozenset({mine}),
    )
    assert [p.field for p in problems] == ["activity_date", "deputy_ids.1", "opinion_ids.1"]


def test_station_events_are_keyed_by_station_on_the_station_topic() -> None:
    activity = StationActivity(
        activity_id=uuid4(),
        station_id="zeguo-1",
        town_id="zeguo",
        kind=ActivityKind.RECEPTION,
        activity_date=date(2026, 3, 2),
        deputy_ids=("dep-002",),
        visitor_count=12,
        opinion_ids=(),
        notes=None,
        recorded_at=LATE_EVENING_UTC,
        recorded_by="clerk-1",
    )
    envelope = activity.envelope()
    assert envelope.event_type == "station.activity_recorded"
    assert envelope.aggregate_id == "zeguo-1"
    assert topics.for_aggregate(envelope.aggregate_type) == topics.STATION
    assert envelope.payload["kind"] == "reception"
    assert envelope.payload["visitor_count"] == 12
    change = ReceptionDayChange(
        change_id=uuid4(),
        station_id="zeguo-1",
        month="2026-03",
        previous_date=date(2026, 3, 15),
        new_date=date(2026, 3, 18),
        reason="与镇人代会冲突",
        announced_at=LATE_EVENING_UTC,
        announced_by="clerk-1",
    ).envelope()
    assert change.event_type == "station.reception_day_changed"
    assert change.aggregate_id == "zeguo-1"
    assert change.payload["previous_date"] == "2026-03-15"


def test_daily_counts_cover_every_day_and_total_by_channel() -> None:
    rows = [
        (date(2026, 3, 1), "online", 2),
        (date(2026, 3, 1), "wechat", 1),
        (date(2026, 3, 3), "online", 4),
    ]
    days, totals = daily_counts(rows, date(2026, 3, 1), date(2026, 3, 3))
    assert [d["day"] for d in days] == [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
    assert [d["total"] for d in days] == [3, 0, 4]
    assert days[1]["by_channel"] == {}
    assert totals == {"online": 6, "wechat": 1}
    assert stats_range_problems(date(2026, 3, 2), date(2026, 3, 1))[0].field == "to"
    assert stats_range_problems(date(2025, 1, 1), date(2026, 1, 1)) == []
    assert stats_range_problems(date(2025, 1, 1), date(2026, 1, 2))[0].field == "to"


def test_the_reference_data_has_47_physical_and_17_online_stations() -> None:
    ref = wenling()
    physical = [s for s in ref.stations if not s.online]
    online = [s for s in ref.stations if s.online]
    assert (len(physical), len(online), len(ref.towns)) == (47, 17, 16)
    towns = {t.id for t in ref.towns}
    assert {s.town_id for s in physical} == towns  # every town has a physical station
    assert {s.town_id for s in online if s.id != "wenling-online"} == towns
    assert len({s.id for s in ref.stations}) == 64
    for s in ref.stations:
        assert s.town_id in towns
        assert s.head
        assert s.liaison_officer
        assert monthly_reception_day(s.reception_day) is not None, s.id
    # The ids the first data set had stay.
    first = {"taiping-1", "taiping-2", "zeguo-1", "daxi-1", "songmen-1", "chengdong-1"}
    assert first | {"shitang-1", "xinhe-1", "taiping-online"} <= {s.id for s in ref.stations}
    assert ref.note is not None
    assert "placeholder" in ref.note
