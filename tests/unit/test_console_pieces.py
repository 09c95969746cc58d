"""The console's pure pieces: metrics parsing, the SVG chart, masking, role → sections,
the session cookie and the numbers the pages show."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import pytest

from console.access import (
    Section,
    mask_name,
    mask_text,
    may_view_department,
    may_view_station,
    sees_work_contacts,
    visible_sections,
)
from console.charts import _nice_max, bar_chart_svg
from console.metrics import parse_metrics
from console.session import Session, decode_session, encode_session, unverified_claims
from console.settings import ConsoleSettings
from console.views import case_timeline, kpi_rates, opinion_stats, percent, queue_counts

METRICS = """\
# HELP minyi_consumer_lag Messages not yet processed
# TYPE minyi_consumer_lag gauge
minyi_consumer_lag{group="minyi.routing.opinion",service="routing",topic="t.minyi.opinion"} 7.0
minyi_consumer_lag{group="minyi.routing.reference",service="routing",topic="t.minyi.reference"} 2.0
# HELP minyi_outbox_backlog Outbox rows not yet published
# TYPE minyi_outbox_backlog gauge
minyi_outbox_backlog{service="routing"} 3.0
# HELP minyi_dead_lettered_total Messages sent to a dead-letter topic.
# TYPE minyi_dead_lettered_total counter
minyi_dead_lettered_total{service="routing",topic="t.minyi.opinion"} 4.0
minyi_dead_lettered_created{service="routing",topic="t.minyi.opinion"} 1.7e+09
# HELP minyi_events_consumed_total Events handled
# TYPE minyi_events_consumed_total counter
minyi_events_consumed_total{outcome="processed",service="routing",topic="t.minyi.opinion"} 10.0
minyi_events_consumed_total{outcome="failed",service="routing",topic="t.minyi.opinion"} 1.0
# HELP minyi_handler_seconds Time
# TYPE minyi_handler_seconds histogram
minyi_handler_seconds_bucket{le="0.005",service="routing",topic="t"} 1.0
minyi_handler_seconds_count{service="routing",topic="t"} 1.0
minyi_handler_seconds_sum{service="routing",topic="t"} 0.002
"""


def test_metrics_parsing_picks_the_pipeline_numbers():
    m = parse_metrics(METRICS)
    assert m.consumer_lag == {
        "minyi.routing.opinion / t.minyi.opinion": 7.0,
        "minyi.routing.reference / t.minyi.reference": 2.0,
    }
    assert m.total_lag == 9.0
    assert m.outbox_backlog == 3.0
    assert m.dead_lettered == {"t.minyi.opinion": 4.0}  # not the _created sample
    assert m.consumed == {"processed": 10.0, "failed": 1.0}
    assert m.provider_errors is None  # no such metric exported
    assert m.as_dict()["total_dead_lettered"] == 4.0


def test_metrics_without_pipeline_families_and_provider_errors():
    empty = parse_metrics("")
    assert empty.total_lag is None
    assert empty.outbox_backlog is None
    assert empty.total_dead_lettered == 0
    text = (
        "# TYPE minyi_sms_provider_errors_total counter\n"
        'minyi_sms_provider_errors_total{provider="aliyun"} 2.0\n'
        'minyi_sms_provider_errors_total{provider="tencent"} 1.0\n'
    )
    assert parse_metrics(text).provider_errors == 3.0


def test_bar_chart_is_valid_svg_with_one_bar_per_day():
    start = date(2025, 3, 1)
    points = [(start + timedelta(days=i), i % 4) for i in range(30)]
    svg = bar_chart_svg(points, title="近 30 天 <意见>")
    root = ElementTree.fromstring(svg)  # well-formed XML, title escaped
    ns = "{http://www.w3.org/2000/svg}"
    bars = root.findall(f"{ns}rect")
    assert len(bars) == 30
    assert bars[3].get("data-value") == "3"
    tallest = max(float(b.get("height", "0")) for b in bars)
    zero = [b for b in bars if b.get("data-value") == "0"]
    assert all(float(b.get("height", "1")) == 0 for b in zero)
    assert tallest == pytest.approx(220 - 24 - 28 - 0 * 1, rel=0.5)
    assert "&lt;意见&gt;" in svg
    labels = [t.text for t in root.findall(f"{ns}text")]
    assert "3/1" in labels
    assert "3/30" in labels


def test_bar_chart_empty_and_axis_top():
    root = ElementTree.fromstring(bar_chart_svg([], title="空"))
    assert root.findall("{http://www.w3.org/2000/svg}rect") == []
    assert [_nice_max(v) for v in (0, 1, 3, 10, 11, 75, 101)] == [1, 1, 5, 10, 20, 100, 200]


def test_masking_never_shows_a_full_phone_number():
    assert mask_text("请联系 13912345678 或 +86 13800138000") == (
        "请联系 139****5678 或 138****8000"
    )
    assert mask_text("电话 0576-86123456") == "电话 057****3456"
    assert "13912345678" not in mask_text("+8613912345678")
    assert mask_text("no digits, 2025 年 12 月") == "no digits, 2025 年 12 月"
    assert mask_text(None) == ""
    assert mask_name("王小明") == "王**"


@pytest.mark.parametrize("role", ["operator", "committee", "admin"])
def test_wide_roles_see_everything(role: str):
    assert visible_sections(role) == {
        Section.OVERVIEW,
        Section.DEPARTMENTS,
        Section.STATIONS,
        Section.CASES,
        Section.PIPELINE,
    }
    assert may_view_department(role, None, "transport")
    assert may_view_station(role, None, "zeguo-1")
    assert sees_work_contacts(role)


def test_departments_and_stations_see_their_own():
    assert visible_sections("department") == {Section.OWN_DEPARTMENT, Section.CASES}
    assert may_view_department("department", "transport", "transport")
    assert not may_view_department("department", "transport", "housing")
    assert not may_view_station("department", None, "zeguo-1")
    assert visible_sections("station") == {Section.OWN_STATION, Section.CASES}
    assert may_view_station("station", "zeguo-1", "zeguo-1")
    assert not may_view_station("station", "zeguo-1", "zeguo-2")
    assert not may_view_department("station", None, "transport")
    assert not sees_work_contacts("station")
    assert visible_sections("voter") == frozenset()
    assert visible_sections("anonymous") == frozenset()


def test_session_cookie_round_trip_and_tampering():
    s = Session("tok.en.x", "operator", "operator", None, None, expires_at=2_000_000_000)
    value = encode_session("k" * 32, s)
    assert decode_session("k" * 32, value, now=1_900_000_000) == s
    assert decode_session("other-secret", value, now=1_900_000_000) is None
    assert decode_session("k" * 32, value, now=2_000_000_001) is None  # expired
    payload, mac = value.split(".")
    assert decode_session("k" * 32, payload[:-2] + "AA." + mac, now=0) is None
    assert decode_session("k" * 32, "garbage", now=0) is None
    assert decode_session("k" * 32, None) is None


def test_unverified_claims():
    import base64
    import json

    body = base64.urlsafe_b64encode(json.dumps({"role": "station"}).encode()).rstrip(b"=")
    assert unverified_claims(f"h.{body.decode()}.s") == {"role": "station"}
    assert unverified_claims("not-a-jwt") == {}
    assert unverified_claims("a.!!!.c") == {}


def test_settings_prefix_and_forbidden_extras(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MINYI_CONSOLE__HTTP__PORT", "9000")
    monkeypatch.setenv("MINYI_CONSOLE__SERVICES__ROUTING", "http://routing:8002/")
    settings = ConsoleSettings()
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 9000
    assert settings.services.as_dict()["routing"] == "http://routing:8002"
    monkeypatch.setenv("MINYI_CONSOLE__HTTP__PROT", "1")
    with pytest.raises(ValueError, match="prot"):
        ConsoleSettings()
    monkeypatch.delenv("MINYI_CONSOLE__HTTP__PROT")
    monkeypatch.setenv("MINYI_CONSOLE__SERVICE__INTAKE", "http://x")
    with pytest.raises(ValueError, match="minyi_console__service__intake"):
        ConsoleSettings()


def test_opinion_stats_today_month_and_30_days():
    today = date(2025, 3, 10)
    body = {
        "days": [
            {"date": "2025-02-20", "total": 2, "by_channel": {"online": 2}},
            {"date": "2025-03-01", "total": 1, "by_channel": {"hotline": 1}},
            {"date": "2025-03-09", "total": 0, "by_channel": {}},
            {"date": "2025-03-10", "total": 3, "by_channel": {"online": 1, "wechat": 2}},
        ]
    }
    stats = opinion_stats(body, today)
    assert stats is not None
    assert stats.today == {"online": 1, "wechat": 2}
    assert stats.today_total == 3
    assert stats.month == {"hotline": 1, "online": 1, "wechat": 2}
    assert len(stats.daily) == 30
    assert stats.daily[-1] == (today, 3)
    assert stats.daily[0] == (date(2025, 2, 9), 0)
    assert (date(2025, 2, 20), 2) in stats.daily
    assert opinion_stats({"error": "not_found"}, today) is None
    assert opinion_stats(None, today) is None


def test_queue_counts_and_kpi_rates():
    now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    items: list[dict[str, Any]] = [
        {"next_due_at": "2025-03-09T12:00:00+00:00"},  # overdue
        {"next_due_at": "2025-03-11T12:00:00Z"},  # due soon
        {"next_due_at": "2025-03-20T12:00:00+00:00"},
        {"next_due_at": None},
    ]
    c = queue_counts(items, now, timedelta(hours=48))
    assert (c.open, c.due_soon, c.overdue) == (4, 1, 1)

    one = [{"response_rate": 0.5, "completion_rate": None, "on_time_completion_rate": 1,
            "satisfaction_rate": 0.25}]  # fmt: skip
    assert kpi_rates(one) == {
        "response_rate": 0.5,
        "completion_rate": None,
        "on_time_completion_rate": 1.0,
        "satisfaction_rate": 0.25,
    }
    two = [
        {"assigned": 2, "acknowledged_on_time": 1, "completed": 1, "completed_on_time": 1,
         "rated": 1, "satisfied": 1, "basically_satisfied": 0},
        {"assigned": 2, "acknowledged_on_time": 1, "completed": 1, "completed_on_time": 0,
         "rated": 1, "satisfied": 0, "basically_satisfied": 0},
    ]  # fmt: skip
    assert kpi_rates(two) == {
        "response_rate": 0.5,
        "completion_rate": 0.5,
        "on_time_completion_rate": 0.5,
        "satisfaction_rate": 0.5,
    }
    assert kpi_rates([]) is None
    assert percent(0.8125) == "81.2%"
    assert percent(None) == "—"


def test_case_timeline_merges_services_in_time_order_and_masks():
    t0 = datetime(2025, 3, 10, 8, tzinfo=UTC)

    def at(minutes: int) -> str:
        return (t0 + timedelta(minutes=minutes)).isoformat()

    entries = case_timeline(
        receipt={"history": [{"stage": "submitted", "at": at(0)}]},
        case={
            "transitions": [
                {
                    "from_state": None,
                    "to_state": "assigned",
                    "actor": "system",
                    "at": at(1),
                    "reason": "回电 13912345678",
                }
            ]
        },
        deliveries=[
            {
                "status": "sent",
                "created_at": at(2),
                "sent_at": at(3),
                "recipient_kind": "department",
                "channel": "sms",
                "template": "x",
            }
        ],
        facts={"first_notified_at": at(4), "rated_at": at(9), "rating_level": "satisfied"},
    )
    assert [e.service for e in entries] == [
        "intake",
        "routing",
        "notification",
        "notification",
        "evaluation",
        "evaluation",
    ]
    assert entries[0].title == "受理进度：已受理"
    assert "已交办" in entries[1].title
    assert "13912345678" not in entries[1].detail
    assert "139****5678" in entries[1].detail
    assert entries[-1].title == "群众评价：满意"
    assert case_timeline(receipt=None, case=None, deliveries=None, facts=None) == []
