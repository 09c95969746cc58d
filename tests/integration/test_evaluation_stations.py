"""Station activity from station.activity_recorded: the seed's 2017–2019 figures (2,104
activities; 1,576 reception batches with 4,557 visitors; 1,726 issues; 27 of 47 stations under
one reception batch a month) come back from a generated set of events with those totals."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from services.evaluation.api import build_router
from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.handlers import on_event
from services.evaluation.ratings import RatingLinks, RatingSettings
from services.evaluation.store import EvaluationStore
from shared.auth import AuthSettings, Principal, Role, issue_token
from shared.events import EventEnvelope, StationActivityRecordedV1
from shared.http import install_common
from shared.messaging.inbox import Delivery
from shared.reference import wenling
from tests.helpers import migrate, open_pool

pytestmark = pytest.mark.integration

AUTH = AuthSettings()
ACTIVITIES, BATCHES, VISITORS, ISSUES, STATIONS, QUIET = 2104, 1576, 4557, 1726, 47, 27


def _seed_activities(rng: random.Random) -> list[StationActivityRecordedV1]:
    towns = [t.id for t in wenling().towns]
    stations = [(f"station-{i:02d}", towns[i % len(towns)]) for i in range(STATIONS)]
    # 20 busy stations hold 50 reception batches each; the 27 quiet ones share the other 576
    # (21 or 22 each: under 36, one a month, over 2017–2019).
    busy = STATIONS - QUIET
    per_station = [50] * busy + [
        (BATCHES - 50 * busy) // QUIET + (1 if i < (BATCHES - 50 * busy) % QUIET else 0)
        for i in range(QUIET)
    ]
    assert sum(per_station) == BATCHES
    assert max(per_station[busy:]) < 36
    kinds: list[tuple[str, str]] = []  # (station index as str, kind)
    for i, n in enumerate(per_station):
        kinds += [(str(i), "reception")] * n
    others = ACTIVITIES - BATCHES
    kinds += [
        (str(rng.randrange(STATIONS)), rng.choice(("visit", "study", "joint_session")))
        for _ in range(others)
    ]
    # 4,557 visitors over 1,576 batches: 2 each, and one more for the first 1,405.
    extra = VISITORS - 2 * BATCHES
    with_issue = set(rng.sample(range(ACTIVITIES), ISSUES))
    events = []
    reception_no = 0
    for n, (index, kind) in enumerate(kinds):
        station_id, town_id = stations[int(index)]
        if kind == "reception":
            visitors = 2 + (1 if reception_no < extra else 0)
            reception_no += 1
        else:
            visitors = rng.randrange(0, 30)  # not reception visitors: not counted as such
        day = date(2017, 1, 1) + timedelta(days=rng.randrange(0, 365 * 3))
        events.append(
            StationActivityRecordedV1(
                activity_id=uuid4(),
                station_id=station_id,
                town_id=town_id,
                kind=kind,
                activity_date=day,
                deputy_ids=[f"deputy-{rng.randrange(200)}" for _ in range(rng.randrange(1, 4))],
                visitor_count=visitors,
                opinion_ids=[uuid4()] if n in with_issue else [],
                recorded_at=datetime.combine(day, datetime.min.time(), UTC) + timedelta(days=1),
            )
        )
    return events


async def test_the_seed_figures_for_2017_to_2019(infra, database_url):
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    try:
        rng = random.Random(2019)
        activities = _seed_activities(rng)
        # Outside the period (not counted), and a correction: the later record of an
        # activity wins whatever the order.
        outside = [
            a.model_copy(update={"activity_id": uuid4(), "activity_date": d})
            for a, d in zip(activities[:2], (date(2016, 12, 31), date(2020, 1, 1)), strict=True)
        ]
        wrong = activities[0].model_copy(
            update={
                "visitor_count": 99,
                "recorded_at": activities[0].recorded_at - timedelta(hours=1),
            }
        )
        envelopes = [
            EventEnvelope.wrap(a, producer="intake", correlation_id=uuid4())
            for a in [*activities, *outside, wrong]
        ]
        envelopes += rng.sample(envelopes, 100)  # redelivered
        rng.shuffle(envelopes)
        store = EvaluationStore(pool)
        links = RatingLinks(AUTH, RatingSettings())
        for offset, envelope in enumerate(envelopes):
            outcome = await on_event(
                store,
                envelope,
                Delivery("evaluation.station", "minyi.station", 0, offset),
                links=links,
            )
            assert outcome in ("processed", "duplicate")

        app = FastAPI()
        install_common(app, service="evaluation", ready=lambda: asyncio.sleep(0, {}))
        app.include_router(build_router(lambda _r: store, auth=AUTH, links=links))
        token = issue_token(AUTH, Principal(subject="committee-1", role=Role.COMMITTEE))
        headers = {"authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evaluation") as http:
            answer = await http.get(
                "/api/v1/stations/activity",
                params={"from": "2017-01", "to": "2019-12"},
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
            figures = answer.json()
            assert figures["months"] == 36
            assert figures["stations_count"] == STATIONS
            assert figures["activities"] == ACTIVITIES
            assert figures["reception_batches"] == BATCHES
            assert figures["visitors"] == VISITORS
            assert figures["issues"] == ISSUES
            assert figures["under_one_batch_a_month"] == QUIET
            flagged = [s for s in figures["stations"] if s["under_one_batch_a_month"]]
            assert all(s["monthly_batches"] < 1 for s in flagged)

            top = await http.get(
                "/api/v1/stations/advanced", params={"year": 2018}, headers=headers
            )
            assert top.status_code == 200
            advanced = top.json()["advanced"]
            assert len(advanced) == 14  # 30% of 47
            assert {s["station_id"] for s in advanced} <= {f"station-{i:02d}" for i in range(20)}

            backwards = await http.get(
                "/api/v1/stations/activity",
                params={"from": "2019-12", "to": "2017-01"},
                headers=headers,
            )
            assert backwards.status_code == 422
            assert (
                await http.get("/api/v1/stations/activity?from=2017-01&to=2019-12")
            ).status_code == 401
        assert UUID(str(activities[0].activity_id))
    finally:
        await pool.close()
