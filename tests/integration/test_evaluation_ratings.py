"""The voter's rating: invited on completion (rating.invited with a signed one-time link),
rated once (a repeat gets the first rating back), forged and expired links refused, and
不满意 asks routing to reopen (satisfaction.rated with reopen_requested)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from services.evaluation import domain
from services.evaluation.api import build_router
from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.handlers import on_event
from services.evaluation.ratings import RatingLinks, RatingSettings
from services.evaluation.store import EvaluationStore
from shared.auth import AuthSettings
from shared.db.pool import Pool
from shared.events import CaseAssignedV1, CaseCompletedV1, EventEnvelope
from shared.http import install_common
from shared.messaging.inbox import Delivery
from tests.helpers import migrate, open_pool

pytestmark = pytest.mark.integration

AUTH = AuthSettings()
LINKS = RatingLinks(AUTH, RatingSettings(link_ttl_hours=48, public_base_url="https://minyi.test"))


@dataclass
class Ctx:
    pool: Pool
    store: EvaluationStore
    http: httpx.AsyncClient


@pytest.fixture
async def ctx(infra, database_url) -> AsyncIterator[Ctx]:
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    store = EvaluationStore(pool, topic_prefix="t.")
    app = FastAPI()
    install_common(app, service="evaluation", ready=lambda: asyncio.sleep(0, {}))
    app.include_router(build_router(lambda _r: store, auth=AUTH, links=LINKS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://evaluation") as http:
        yield Ctx(pool, store, http)
    await pool.close()


async def _completed_case(ctx: Ctx, *, now: datetime | None = None) -> tuple[UUID, str]:
    """A case assigned and completed through the handler; returns its id and rating token."""
    case_id, opinion_id, correlation = uuid4(), uuid4(), uuid4()
    at = datetime(2025, 3, 3, 1, tzinfo=UTC)
    dims: dict[str, Any] = dict(
        department_id="transport", station_id="zeguo-1", town_id="zeguo", category_id="traffic"
    )
    assigned = CaseAssignedV1(
        case_id=case_id,
        opinion_id=opinion_id,
        receipt_code="ABCDE-FGHJK",
        kind="general",
        assigned_at=at,
        acknowledge_due_at=at + timedelta(days=1),
        complete_due_at=at + timedelta(days=9),
        **dims,
    )
    completed = CaseCompletedV1(
        case_id=case_id,
        opinion_id=opinion_id,
        completed_at=at + timedelta(days=3),
        complete_due_at=at + timedelta(days=9),
        on_time=True,
        result_summary="红绿灯时长已调整",
        **dims,
    )
    for offset, event in enumerate((assigned, completed, completed)):  # completed redelivered
        envelope = EventEnvelope.wrap(
            event,
            producer="routing",
            correlation_id=correlation,
            event_id=UUID(int=case_id.int ^ offset) if offset < 2 else UUID(int=case_id.int ^ 1),
        )
        await on_event(
            ctx.store,
            envelope,
            Delivery("evaluation.case", "minyi.case", 0, offset),
            links=LINKS,
            now=now,
        )
    invited = await ctx.pool.fetch(
        "SELECT topic, message_key, payload FROM outbox WHERE event_type = 'rating.invited'"
        " AND message_key = $1",
        str(case_id),
    )
    assert len(invited) == 1, "one invitation per case"
    assert invited[0]["topic"] == "t.minyi.evaluation"
    payload = invited[0]["payload"]["payload"]
    assert invited[0]["payload"]["correlation_id"] == str(correlation)
    assert payload["opinion_id"] == str(opinion_id)
    prefix = "https://minyi.test/api/v1/ratings/"
    assert payload["rating_url"].startswith(prefix)
    return case_id, payload["rating_url"].removeprefix(prefix)


async def _rated_events(ctx: Ctx, case_id: UUID) -> list[dict[str, Any]]:
    rows = await ctx.pool.fetch(
        "SELECT payload FROM outbox WHERE event_type = 'satisfaction.rated' AND message_key = $1",
        str(case_id),
    )
    return [r["payload"]["payload"] for r in rows]


async def test_first_rating_then_repeat_answers_the_first(ctx: Ctx):
    case_id, token = await _completed_case(ctx)
    page = await ctx.http.get(f"/api/v1/ratings/{token}")
    assert page.status_code == 200
    assert page.json()["rating"] is None
    assert page.json()["levels"]["satisfied"] == "满意"

    first = await ctx.http.post(
        f"/api/v1/ratings/{token}", json={"score": 4, "comment": "很快就修好了"}
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["level"], body["level_name"], body["score"]) == ("satisfied", "满意", 4)
    assert body["already_rated"] is False
    assert body["reopen_requested"] is False

    again = await ctx.http.post(f"/api/v1/ratings/{token}", json={"level": "不满意"})
    assert again.status_code == 200
    assert again.json()["level"] == "satisfied"
    assert again.json()["already_rated"] is True

    [event] = await _rated_events(ctx, case_id)
    assert event["level"] == "satisfied"
    assert event["reopen_requested"] is False
    assert event["department_id"] == "transport"
    assert "comment" not in event
    facts = await ctx.store.facts(case_id)
    assert facts is not None
    assert facts.rating_level == "satisfied"
    [city] = await ctx.store.kpis(dimension="city", month="2025-03")
    assert (city.counts["rated"], city.counts["satisfied"], city.satisfaction_rate) == (1, 1, 1.0)


async def test_unsatisfied_asks_routing_to_reopen(ctx: Ctx):
    case_id, token = await _completed_case(ctx)
    answer = await ctx.http.post(f"/api/v1/ratings/{token}", json={"level": "不满意"})
    assert answer.status_code == 201
    assert answer.json()["reopen_requested"] is True
    [event] = await _rated_events(ctx, case_id)
    assert event["level"] == "unsatisfied"
    assert event["reopen_requested"] is True
    [town] = await ctx.store.kpis(dimension="town", key="zeguo", month="2025-03")
    assert town.counts["unsatisfied"] == 1
    assert town.satisfaction_rate == 0.0


async def test_expired_link_is_refused_with_410(ctx: Ctx):
    case_id, token = await _completed_case(ctx, now=datetime.now(UTC) - timedelta(hours=49))
    answer = await ctx.http.post(f"/api/v1/ratings/{token}", json={"level": "满意"})
    assert answer.status_code == 410
    assert answer.json()["error"] == "rating_link_expired"
    assert "expired" in answer.json()["message"]
    assert await _rated_events(ctx, case_id) == []
    assert await ctx.store.rating(case_id) is None


async def test_forged_links_are_refused_with_401(ctx: Ctx):
    case_id, token = await _completed_case(ctx)
    other_key = RatingLinks(
        AuthSettings(secret="someone-elses-secret-someone-elses-0123456789"), RatingSettings()
    )
    forged = other_key.issue(case_id, uuid4(), now=datetime.now(UTC)).token
    # Signed with our key but not the link we sent for this case (a second, unknown jti).
    unsent = LINKS.issue(case_id, uuid4(), now=datetime.now(UTC)).token
    for bad in (forged, unsent, token[:-4] + "AAAA", "garbage"):
        answer = await ctx.http.post(f"/api/v1/ratings/{bad}", json={"level": "满意"})
        assert answer.status_code == 401, bad
        assert answer.json()["error"] == "invalid_rating_link"
        assert "Traceback" not in answer.text
    assert await ctx.store.rating(case_id) is None
    bad_body = await ctx.http.post(f"/api/v1/ratings/{token}", json={"level": "满意", "score": 1})
    assert bad_body.status_code == 422
    assert await ctx.store.rating(case_id) is None
    assert domain.Level.SATISFIED.chinese == "满意"
