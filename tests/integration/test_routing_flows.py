"""Routing's consumers and live stream on real Kafka and PostgreSQL: triage of incoming
opinions (keywords, major → invitation, common → one aggregated suggestion), the voter's
rating (satisfied closes, unsatisfied reopens once), and the SSE stream of new tasks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import uvicorn

from services.routing.app import MIGRATIONS, SCHEMA, build_app, seed
from shared import topics
from shared.auth import Role
from shared.events import Channel, EventEnvelope, OpinionSubmittedV1, SatisfactionRatedV1
from tests.fakes.runner import free_port
from tests.helpers import eventually, migrate, produce_envelope
from tests.integration.test_routing_api import (
    ACK,
    REPORT,
    Routing,
    open_case,
    routing,
    routing_settings,
)

pytestmark = pytest.mark.integration
__all__ = ["routing"]  # the fixture


def opinion_event(
    content: str, *, category_id: str | None = None, town_id: str = "zeguo"
) -> EventEnvelope:
    opinion = OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.ONLINE,
        station_id=f"{town_id}-online",
        town_id=town_id,
        category_id=category_id,
        content=content,
        submitted_at=datetime.now(UTC),
        voter_reachable=False,
    )
    return EventEnvelope.wrap(opinion, producer="intake", correlation_id=opinion.opinion_id)


async def case_of(routing: Routing, envelope: EventEnvelope) -> dict[str, Any]:
    opinion_id = envelope.payload_as(OpinionSubmittedV1).opinion_id

    async def found() -> dict[str, Any] | None:
        row = await routing.runtime.pool.fetchrow(
            "SELECT * FROM cases WHERE opinion_id = $1", opinion_id
        )
        return dict(row) if row else None

    return await eventually(found, what="the opinion's case")


async def test_triage_of_incoming_opinions(routing: Routing):
    topic = routing.settings.kafka.topic(topics.OPINION)
    water = opinion_event("横湖路一带连续三天停水，老人孩子用水困难")
    major = opinion_event("全镇多个村的饮用水源受到污染，群众意见很大", town_id="daxi")
    await produce_envelope(topic, water)
    await produce_envelope(topic, major)

    case = await case_of(routing, water)
    assert (case["category_id"], case["department_id"], case["kind"]) == (
        "utilities",
        "utilities",
        "utilities",
    )
    assert (case["state"], case["classification"]) == ("assigned", "individual")

    invitation = await case_of(routing, major)
    assert (invitation["state"], invitation["classification"]) == ("pending_review", "major")
    assert invitation["is_invitation"]
    assert invitation["category_id"] == "environment"
    assert invitation["acknowledge_due_at"] is None
    worklist = await routing.http.get("/api/v1/worklist", headers=routing.auth(Role.COMMITTEE))
    assert str(invitation["id"]) in [w["id"] for w in worklist.json()]

    # Three traffic opinions from one town within the window: one aggregated suggestion.
    traffic = [
        opinion_event(f"文化路口红绿灯时间太短 {i}", category_id="traffic") for i in range(3)
    ]
    for envelope in traffic:
        await produce_envelope(topic, envelope)
    cases = [await case_of(routing, e) for e in traffic]
    assert all(c["state"] == "assigned" for c in cases)  # each still gets its answer

    async def aggregate() -> dict[str, Any] | None:
        row = await routing.runtime.pool.fetchrow(
            "SELECT * FROM cases WHERE classification = 'common'"
        )
        return dict(row) if row else None

    common = await eventually(aggregate, what="the aggregated suggestion")
    assert common["state"] == "triaged"
    assert common["department_id"] == "transport"
    assert common["opinion_id"] is None

    async def linked() -> set[UUID] | None:
        rows = await routing.runtime.pool.fetch(
            "SELECT case_id FROM case_links WHERE aggregate_case_id = $1", common["id"]
        )
        found = {r["case_id"] for r in rows}
        return found if len(found) == 3 else None

    assert await eventually(linked, what="three linked cases") == {c["id"] for c in cases}
    # A fourth joins the open suggestion instead of opening another.
    fourth = opinion_event("文化路口红绿灯又坏了", category_id="traffic")
    await produce_envelope(topic, fourth)
    fourth_case = await case_of(routing, fourth)

    async def joined() -> bool:
        return bool(
            await routing.runtime.pool.fetchval(
                "SELECT aggregate_case_id = $1 FROM case_links WHERE case_id = $2",
                common["id"],
                fourth_case["id"],
            )
        )

    await eventually(joined, what="the fourth case to join the suggestion")
    assert await routing.count("SELECT count(*) FROM cases WHERE classification = 'common'") == 1
    # Triaged: the major one and the aggregate (individual ones are triaged and assigned
    # in one step).
    assert (
        await routing.count("SELECT count(*) FROM case_transitions WHERE to_state = 'triaged'") == 2
    )
    # The operator assigns the suggestion; the department sees it with what it links.
    r = await routing.http.post(
        f"/api/v1/cases/{common['id']}/route",
        json={"department_id": "housing", "reason": "道路改造归住建局"},
        headers=routing.auth(Role.OPERATOR),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "assigned"
    assert len(body["linked_cases"]) == 4


async def rate(routing: Routing, case_id: UUID, level: str) -> EventEnvelope:
    rating = SatisfactionRatedV1(
        case_id=case_id,
        opinion_id=uuid4(),
        department_id="transport",
        level=level,
        score=None,
        rated_at=datetime.now(UTC),
        reopen_requested=level == "unsatisfied",
    )
    envelope = EventEnvelope.wrap(rating, producer="evaluation", correlation_id=uuid4())
    await produce_envelope(routing.settings.kafka.topic(topics.EVALUATION), envelope)
    return envelope


async def completed_case(routing: Routing) -> UUID:
    case = await open_case(routing.store)
    dept = routing.auth(Role.DEPARTMENT, department_id="transport")
    await routing.http.post(f"/api/v1/cases/{case.id}/acknowledge", json=ACK, headers=dept)
    r = await routing.http.post(f"/api/v1/cases/{case.id}/complete", json=REPORT, headers=dept)
    assert r.json()["state"] == "completed"
    return case.id


async def state_is(routing: Routing, case_id: UUID, state: str) -> None:
    async def probe() -> bool:
        found = await routing.runtime.pool.fetchval(
            "SELECT state FROM cases WHERE id = $1", case_id
        )
        return bool(found == state)

    await eventually(probe, what=f"case {case_id} to be {state}")


async def test_ratings_close_or_reopen_once(routing: Routing):
    satisfied = await completed_case(routing)
    await rate(routing, satisfied, "basically_satisfied")
    await state_is(routing, satisfied, "closed")
    states = [
        r["to_state"]
        for r in await routing.runtime.pool.fetch(
            "SELECT to_state FROM case_transitions WHERE case_id = $1 ORDER BY id", satisfied
        )
    ]
    assert states[-2:] == ["evaluated", "closed"]

    unhappy = await completed_case(routing)
    first = await rate(routing, unhappy, "unsatisfied")
    await state_is(routing, unhappy, "reopened")
    # The same rating delivered again changes nothing.
    await produce_envelope(routing.settings.kafka.topic(topics.EVALUATION), first)
    dept = routing.auth(Role.DEPARTMENT, department_id="transport")
    r = await routing.http.post(f"/api/v1/cases/{unhappy}/complete", json=REPORT, headers=dept)
    assert r.status_code == 200, r.text
    assert r.json()["reopen_count"] == 1
    await rate(routing, unhappy, "unsatisfied")
    await state_is(routing, unhappy, "closed")
    # A third rating of a closed case is ignored: it stays closed.
    await rate(routing, unhappy, "unsatisfied")

    async def all_consumed() -> bool:
        n = await routing.runtime.pool.fetchval(
            "SELECT count(*) FROM processed_messages WHERE consumer = 'routing.evaluation'"
        )
        return bool(n == 4)

    await eventually(all_consumed, what="the ratings to be consumed")
    row = await routing.runtime.pool.fetchrow(
        "SELECT state, reopen_count FROM cases WHERE id = $1", unhappy
    )
    assert row is not None
    assert (row["state"], row["reopen_count"]) == ("closed", 1)
    assert (
        await routing.count(
            "SELECT count(*) FROM case_transitions WHERE case_id = $1 AND to_state = 'reopened'",
            unhappy,
        )
        == 1
    )


# ---- the live stream (a real server: SSE needs streaming) -----------------------------------


@contextlib.asynccontextmanager
async def served(database_url: str, topic_prefix: str) -> AsyncIterator[tuple[str, Any]]:
    settings = routing_settings(database_url, topic_prefix)
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(settings)
    app = build_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            return server.started

        await eventually(started, what="the server to start")
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_a_department_streams_its_own_new_tasks(infra, database_url, topic_prefix):
    async with served(database_url, topic_prefix) as (url, app):
        holder = Routing(routing_settings(database_url, topic_prefix), app.state.runtime, None)  # type: ignore[arg-type]
        transport = holder.auth(Role.DEPARTMENT, department_id="transport")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await http.get("/api/v1/departments/transport/stream")).status_code == 401
            events: list[tuple[str, str]] = []
            ready = asyncio.Event()
            got_task = asyncio.Event()

            async def listen() -> None:
                async with http.stream(
                    "GET", "/api/v1/departments/transport/stream", headers=transport
                ) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    kind = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            kind = line.split(":", 1)[1].strip()
                        elif line.startswith("data:"):
                            events.append((kind, line.split(":", 1)[1].strip()))
                            if kind == "ready":
                                ready.set()
                            if kind == "task":
                                got_task.set()

            listener = asyncio.create_task(listen())
            try:
                await asyncio.wait_for(ready.wait(), 30)
                other = await open_case(holder.store, department_id="housing")
                mine = await open_case(holder.store, department_id="transport")
                await asyncio.wait_for(got_task.wait(), 30)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener
        tasks = [json.loads(data) for kind, data in events if kind == "task"]
        assert [t["id"] for t in tasks] == [str(mine.id)]
        assert str(other.id) not in json.dumps(events)
        assert tasks[0]["department_id"] == "transport"
        assert tasks[0]["state"] == "assigned"
