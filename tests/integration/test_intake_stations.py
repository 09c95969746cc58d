"""Stations against real Kafka and PostgreSQL: activity records (台账), the reception day's
3-day notice (with an injected clock), and the operator console's counts per day and channel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.intake.domain import scheduled_reception_date
from shared import topics
from shared.auth import Role
from shared.reference import wenling
from tests.helpers import read_topic
from tests.integration.intake_support import Intake, running_intake, token

pytestmark = pytest.mark.integration

# 2026-03-01 17:00 UTC is 2026-03-02 01:00 in Wenling: "today" there is the 2nd.
NOW = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
CLERK = token(Role.STATION, station_id="zeguo-1")
OPERATOR = token(Role.OPERATOR, subject="operator-1")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def intake(infra: Any, database_url: str, topic_prefix: str) -> AsyncIterator[Intake]:
    async with running_intake(database_url, topic_prefix, clock=Clock(NOW)) as running:
        yield running


async def station_events(topic_prefix: str, at_least: int) -> list[tuple[bytes, dict[str, Any]]]:
    records = await read_topic(topic_prefix + topics.STATION, at_least=at_least)
    return [(r.key or b"", json.loads(r.value or b"{}")) for r in records]


async def opinion_at(intake: Intake, station_id: str, **extra: Any) -> str:
    answer = await intake.http.post(
        f"/api/v1/stations/{station_id}/opinions",
        json={"channel": "station_reception", "content": "村口路灯坏了一个多月", **extra},
        headers=OPERATOR,
    )
    assert answer.status_code == 201, answer.text
    opinion_id: str = answer.json()["opinion_id"]
    return opinion_id


def activity(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "reception",
        "activity_date": "2026-03-02",
        "deputy_ids": ["dep-002", "dep-001"],  # dep-001 belongs to taiping-1: any station's
        "visitor_count": 15,
        **extra,
    }


async def test_an_activity_is_recorded_once_and_published_with_it(
    intake: Intake, topic_prefix: str
) -> None:
    mine = await opinion_at(intake, "zeguo-1")
    foreign = await opinion_at(intake, "taiping-1")
    path = "/api/v1/stations/zeguo-1/activities"

    body = activity(opinion_ids=[mine], client_id="tablet-7-000001", notes="第三季度接待")
    first = await intake.http.post(path, json=body, headers=CLERK)
    assert first.status_code == 201, first.text
    recorded = first.json()
    assert recorded["town_id"] == "zeguo"
    assert recorded["opinion_ids"] == [mine]
    assert recorded["recorded_by"] == "clerk-1"
    # The same client id again (a tablet's retry): the same record, nothing new.
    again = await intake.http.post(path, json=body, headers=CLERK)
    assert again.status_code == 201
    assert again.json() == recorded
    assert again.headers["Idempotent-Replayed"] == "true"
    reused = await intake.http.post(path, json={**body, "visitor_count": 3}, headers=CLERK)
    assert reused.status_code == 409
    # Or an Idempotency-Key (operator entering it for the station).
    keyed = {**OPERATOR, "Idempotency-Key": "visit-2026-03-01-a"}
    visit = activity(kind="visit", activity_date="2026-03-01", visitor_count=0, deputy_ids=[])
    one = await intake.http.post(path, json=visit, headers=keyed)
    two = await intake.http.post(path, json=visit, headers=keyed)
    assert one.status_code == two.status_code == 201
    assert one.json()["activity_id"] == two.json()["activity_id"]
    assert await intake.count("station_activities") == 2

    # Refused, naming each field; nothing written.
    bad = await intake.http.post(
        path,
        json=activity(
            activity_date="2026-03-03",  # tomorrow in Wenling
            deputy_ids=["dep-002", "dep-999"],
            opinion_ids=[mine, foreign],
        ),
        headers=CLERK,
    )
    assert bad.status_code == 422
    assert [f["field"] for f in bad.json()["fields"]] == [
        "activity_date",
        "deputy_ids.1",
        "opinion_ids.1",
    ]
    negative = await intake.http.post(path, json=activity(visitor_count=-1), headers=CLERK)
    assert negative.status_code == 422
    assert negative.json()["fields"][0]["field"] == "visitor_count"
    wrong_kind = await intake.http.post(path, json=activity(kind="party"), headers=CLERK)
    assert wrong_kind.status_code == 422
    other_clerk = token(Role.STATION, station_id="taiping-1")
    assert (await intake.http.post(path, json=activity(), headers=other_clerk)).status_code == 403
    assert (await intake.http.post(path, json=activity())).status_code == 401
    department = token(Role.DEPARTMENT, subject="dept")
    assert (await intake.http.post(path, json=activity(), headers=department)).status_code == 403
    assert await intake.count("station_activities") == 2

    published = await station_events(topic_prefix, 2)
    assert len(published) == 2
    assert {key for key, _ in published} == {b"zeguo-1"}
    by_id = {e["payload"]["activity_id"]: e for _, e in published}
    reception = by_id[recorded["activity_id"]]
    assert reception["event_type"] == "station.activity_recorded"
    assert reception["payload"]["deputy_ids"] == ["dep-002", "dep-001"]
    assert reception["payload"]["visitor_count"] == 15
    assert reception["payload"]["opinion_ids"] == [mine]
    assert reception["payload"]["activity_date"] == "2026-03-02"

    # Staff read them back by activity date.
    listed = await intake.http.get(
        path, params={"from": "2026-03-01", "to": "2026-03-02"}, headers=CLERK
    )
    assert listed.status_code == 200, listed.text
    assert [a["kind"] for a in listed.json()["activities"]] == ["visit", "reception"]
    only_2nd = await intake.http.get(path, params={"from": "2026-03-02"}, headers=CLERK)
    assert only_2nd.json()["count"] == 1
    committee = token(Role.COMMITTEE, subject="committee-1")
    assert (await intake.http.get(path, headers=committee)).json()["count"] == 2
    assert (await intake.http.get(path, headers=other_clerk)).status_code == 403
    assert (await intake.http.get(path)).status_code == 401
    backwards = await intake.http.get(
        path, params={"from": "2026-03-02", "to": "2026-03-01"}, headers=CLERK
    )
    assert backwards.status_code == 422


async def test_a_reception_day_moves_only_with_three_days_notice(
    intake: Intake, topic_prefix: str
) -> None:
    path = "/api/v1/stations/zeguo-1/reception-day"
    rule = next(s for s in wenling().stations if s.id == "zeguo-1").reception_day
    published_date = scheduled_reception_date(rule, 2026, 3)

    # Today in Wenling is 03-02: 03-04 is two days ahead — too late.
    late = await intake.http.put(
        path, json={"new_date": "2026-03-04", "reason": "与镇人代会冲突"}, headers=CLERK
    )
    assert late.status_code == 422
    problem = late.json()
    assert problem["fields"][0]["field"] == "new_date"
    assert "at least 3 days ahead" in problem["message"]
    assert "2 day(s)" in problem["message"]
    assert await intake.count("reception_day_changes") == 0
    assert await intake.count("outbox", "event_type LIKE 'station.%'") == 0

    moved = await intake.http.put(
        path, json={"new_date": "2026-03-05", "reason": "与镇人代会冲突"}, headers=CLERK
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["previous_date"] == str(published_date)
    assert moved.json()["reception_date"] == "2026-03-05"
    assert moved.json()["rule"] == rule
    # Saying it again changes nothing and publishes nothing.
    again = await intake.http.put(
        path, json={"new_date": "2026-03-05", "reason": "与镇人代会冲突"}, headers=CLERK
    )
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    # Moved once more: the previous date is the moved one.
    later = await intake.http.put(
        path, json={"new_date": "2026-03-20", "reason": "场地维修"}, headers=OPERATOR
    )
    assert later.json()["previous_date"] == "2026-03-05"
    assert await intake.count("reception_day_changes") == 2

    shown = await intake.http.get(path, params={"month": "2026-03"})  # published: public
    assert shown.json()["reception_date"] == "2026-03-20"
    assert shown.json()["moved"] is True
    april = await intake.http.get(path, params={"month": "2026-04"})
    assert april.json()["reception_date"] == str(scheduled_reception_date(rule, 2026, 4))
    assert april.json()["moved"] is False

    other_clerk = token(Role.STATION, station_id="taiping-1")
    forbidden = await intake.http.put(
        path, json={"new_date": "2026-03-25", "reason": "场地维修"}, headers=other_clerk
    )
    assert forbidden.status_code == 403

    published = await station_events(topic_prefix, 2)
    assert len(published) == 2
    assert {key for key, _ in published} == {b"zeguo-1"}
    payloads = sorted((e["payload"] for _, e in published), key=lambda p: p["new_date"])
    assert [e["event_type"] for _, e in published] == ["station.reception_day_changed"] * 2
    assert [(p["previous_date"], p["new_date"]) for p in payloads] == [
        (str(published_date), "2026-03-05"),
        ("2026-03-05", "2026-03-20"),
    ]
    assert payloads[0]["reason"] == "与镇人代会冲突"


async def test_the_console_counts_opinions_per_day_and_channel(intake: Intake) -> None:
    secret = "张三家门口的水管爆了"
    batch = {
        "items": [
            {
                "channel": "station_reception",
                "content": secret,
                "voter_phone": "13912345678",
                "occurred_at": "2025-06-01T10:00:00+08:00",
            }
        ]
        * 2
    }
    answer = await intake.http.post(
        "/api/v1/stations/zeguo-1/opinions/batch", json=batch, headers=CLERK
    )
    assert answer.status_code == 201, answer.text
    # Both sides of Wenling's midnight (15:30 and 16:30 UTC on 06-02).
    await opinion_at(intake, "zeguo-1", channel="mailbox", occurred_at="2025-06-02T23:30:00+08:00")
    await opinion_at(intake, "zeguo-1", channel="mailbox", occurred_at="2025-06-03T00:30:00+08:00")
    form = {
        "channel": "online",
        "station_id": "taiping-1",
        "content": "公交站台没有遮雨棚",
        "occurred_at": "2025-06-02T09:00:00+08:00",
    }
    assert (await intake.http.post("/api/v1/opinions", json=form)).status_code == 201
    await opinion_at(intake, "daxi-1", channel="hotline", occurred_at="2025-05-31T12:00:00+08:00")

    path = "/api/v1/stats/opinions"
    june = {"from": "2025-06-01", "to": "2025-06-03"}
    everything = await intake.http.get(path, params=june, headers=OPERATOR)
    assert everything.status_code == 200, everything.text
    stats = everything.json()
    assert stats["from"] == "2025-06-01"
    assert stats["total"] == 5
    assert stats["by_channel"] == {"mailbox": 2, "online": 1, "station_reception": 2}
    assert stats["days"] == [
        {"day": "2025-06-01", "total": 2, "by_channel": {"station_reception": 2}},
        {"day": "2025-06-02", "total": 2, "by_channel": {"mailbox": 1, "online": 1}},
        {"day": "2025-06-03", "total": 1, "by_channel": {"mailbox": 1}},
    ]
    assert secret not in everything.text
    assert "139" not in everything.text

    town = await intake.http.get(path, params={**june, "town_id": "zeguo"}, headers=OPERATOR)
    assert town.json()["total"] == 4
    station = await intake.http.get(
        path, params={**june, "station_id": "taiping-1"}, headers=OPERATOR
    )
    assert station.json()["by_channel"] == {"online": 1}
    may = await intake.http.get(path, params={"from": "2025-05-31", "to": "2025-05-31"})
    assert may.status_code == 401

    # A station account sees its own station only.
    own = await intake.http.get(path, params=june, headers=CLERK)
    assert own.json()["station_id"] == "zeguo-1"
    assert own.json()["total"] == 4
    other = await intake.http.get(path, params={**june, "station_id": "taiping-1"}, headers=CLERK)
    assert other.status_code == 403
    department = token(Role.DEPARTMENT, subject="dept")
    assert (await intake.http.get(path, params=june, headers=department)).status_code == 403
    committee = token(Role.COMMITTEE, subject="committee-1")
    assert (await intake.http.get(path, params=june, headers=committee)).json()["total"] == 5

    backwards = await intake.http.get(
        path, params={"from": "2025-06-03", "to": "2025-06-01"}, headers=OPERATOR
    )
    assert backwards.status_code == 422
    unknown = await intake.http.get(path, params={**june, "town_id": "atlantis"}, headers=OPERATOR)
    assert unknown.status_code == 422
    assert unknown.json()["fields"][0]["field"] == "town_id"
    assert date.fromisoformat(stats["to"]) == date(2025, 6, 3)
