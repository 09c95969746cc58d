"""The KPI counters on PostgreSQL: the same 5,000 events in order, shuffled (by four concurrent
consumers) and each twice give identical counters, equal to a recount from the case facts."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.evaluation import domain
from services.evaluation.api import build_router
from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.handlers import on_event
from services.evaluation.ratings import RatingLinks, RatingSettings
from services.evaluation.store import EvaluationStore
from shared.auth import AuthSettings, Principal, Role, issue_token
from shared.db.pool import Pool
from shared.events import EventEnvelope
from shared.http import install_common
from shared.messaging.inbox import Delivery
from tests.helpers import migrate, open_pool
from tests.unit.test_evaluation_kpis import generate_story, replay

pytestmark = pytest.mark.integration

AUTH = AuthSettings()
LINKS = RatingLinks(AUTH, RatingSettings())
Counters = dict[tuple[str, str, str], dict[str, int]]


async def _consume(store: EvaluationStore, events: list[EventEnvelope], workers: int) -> None:
    """Deliver `events` through the handler, from `workers` concurrent consumers."""
    queue: asyncio.Queue[tuple[int, EventEnvelope]] = asyncio.Queue()
    for item in enumerate(events):
        queue.put_nowait(item)

    async def worker(partition: int) -> None:
        while not queue.empty():
            offset, envelope = queue.get_nowait()
            topic = (
                "minyi.notification" if envelope.event_type.startswith("notif") else "minyi.case"
            )
            delivery = Delivery(f"evaluation.{topic.split('.')[1]}", topic, partition, offset)
            await on_event(store, envelope, delivery, links=LINKS)

    await asyncio.gather(*(worker(p) for p in range(workers)))


async def _run(pool: Pool, events: list[EventEnvelope], workers: int) -> tuple[Counters, Any]:
    await pool.execute(
        "TRUNCATE case_facts, kpi_counters, processed_messages, rating_invitations, outbox"
    )
    store = EvaluationStore(pool)
    await _consume(store, events, workers)
    counters = await store.counters()
    facts = {f.case_id: f for f in await store.all_facts()}
    assert counters == domain.recount(facts.values()), "incremental ≠ recount from the facts"
    return counters, facts


async def test_5000_events_in_order_shuffled_and_twice_give_identical_kpis(infra, database_url):
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    try:
        events = generate_story(5000)
        # Events reach evaluation via two topics and from notification's own key order, so
        # "in order" is the order of the list; shuffled and doubled are arbitrary interleavings.
        shuffled = random.Random(7).sample(events, len(events))
        twice = random.Random(8).sample(events * 2, 2 * len(events))
        in_order, facts = await _run(pool, events, workers=1)
        assert (await _run(pool, shuffled, workers=4))[0] == in_order
        assert (await _run(pool, twice, workers=4))[0] == in_order
        expected_facts, expected_counters = replay(events)
        assert in_order == expected_counters
        assert facts == expected_facts

        # The API serves them (staff only).
        app = FastAPI()
        install_common(app, service="evaluation", ready=lambda: asyncio.sleep(0, {}))
        app.include_router(build_router(lambda _r: EvaluationStore(pool), auth=AUTH, links=LINKS))
        token = issue_token(AUTH, Principal(subject="committee-1", role=Role.COMMITTEE))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evaluation") as http:
            anonymous = await http.get("/api/v1/kpis")
            assert anonymous.status_code == 401
            assert anonymous.json()["error"] == "unauthorized"
            answer = await http.get(
                "/api/v1/kpis",
                params={"dimension": "city", "month": "2025-02"},
                headers={"authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 200, answer.text
            [row] = answer.json()
            city = in_order[("city", domain.CITY_KEY, "2025-02")]
            assert {m: row[m] for m in domain.METRICS} == city
            assert row["completion_rate"] == round(city["completed"] / city["assigned"], 4)
            assert row["satisfaction_rate"] == round(
                (city["satisfied"] + city["basically_satisfied"]) / city["rated"], 4
            )
            bad = await http.get(
                "/api/v1/kpis",
                params={"month": "2025-13"},
                headers={"authorization": f"Bearer {token}"},
            )
            assert bad.status_code == 422
    finally:
        await pool.close()
