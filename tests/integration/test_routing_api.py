"""Routing's HTTP API on real PostgreSQL and Kafka: sign-in, the case's life over HTTP, 409s
with the current state and no partial writes, return and re-route, and department isolation
(department A's token on department B's case → 404 on every endpoint)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from services.routing.app import MIGRATIONS, SCHEMA, build_app, seed
from services.routing.domain import CaseKind, Classification, DeadlineSettings, lifecycle
from services.routing.settings import AccountSettings, RoutingSettings, TimerSettings
from services.routing.store import RoutingStore
from shared.auth import Principal, Role, issue_token
from shared.events import Channel, OpinionSubmittedV1
from shared.runtime import ServiceRuntime
from shared.settings import DatabaseSettings, OutboxSettings
from tests.helpers import kafka_settings, migrate

pytestmark = pytest.mark.integration


@dataclass
class Routing:
    settings: RoutingSettings
    runtime: ServiceRuntime
    http: httpx.AsyncClient

    @property
    def store(self) -> RoutingStore:
        return RoutingStore(self.runtime.pool, topic_prefix=self.settings.kafka.topic_prefix)

    def auth(
        self, role: Role, *, department_id: str | None = None, station_id: str | None = None
    ) -> dict[str, str]:
        subject = department_id or station_id or role.value
        principal = Principal(subject, role, department_id=department_id, station_id=station_id)
        return {"authorization": f"Bearer {issue_token(self.settings.auth, principal)}"}

    async def count(self, sql: str, *args: Any) -> int:
        value: int = await self.runtime.pool.fetchval(sql, *args)
        return value


def routing_settings(database_url: str, topic_prefix: str, **overrides: Any) -> RoutingSettings:
    return RoutingSettings(
        kafka=kafka_settings(topic_prefix),
        database=DatabaseSettings(url=database_url),
        outbox=OutboxSettings(poll_interval_s=0.2),
        timers=TimerSettings(poll_interval_s=0.2),
        accounts=AccountSettings(
            seed_dev_accounts=True, argon2_time_cost=1, argon2_memory_kib=8192
        ),
        **overrides,
    )


@contextlib.asynccontextmanager
async def running_routing(settings: RoutingSettings) -> AsyncIterator[Routing]:
    """Routing in process on a migrated, seeded database, with an HTTP client to it."""
    await migrate(settings.database.url, SCHEMA, MIGRATIONS)
    await seed(settings)
    app = build_app(settings)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
            yield Routing(settings, runtime, http)
    finally:
        await runtime.stop()


@pytest.fixture
async def routing(infra, database_url, topic_prefix) -> AsyncIterator[Routing]:
    async with running_routing(routing_settings(database_url, topic_prefix)) as running:
        yield running


def an_opinion(
    *, category_id: str | None = "traffic", station_id: str = "zeguo-1", town_id: str = "zeguo"
) -> OpinionSubmittedV1:
    return OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.STATION_RECEPTION,
        station_id=station_id,
        town_id=town_id,
        category_id=category_id,
        content="路口红绿灯时间太短，老人过不去",
        submitted_at=datetime.now(UTC),
        voter_reachable=True,
    )


async def open_case(
    store: RoutingStore,
    *,
    department_id: str = "transport",
    classification: Classification = Classification.INDIVIDUAL,
    now: datetime | None = None,
    deadlines: DeadlineSettings | None = None,
    station_id: str = "zeguo-1",
) -> lifecycle.CaseRecord:
    """A case opened as the opinion consumer opens one (domain + store, no Kafka)."""
    opinion = an_opinion(station_id=station_id)
    at = now or datetime.now(UTC)
    async with store.unit_of_work() as tx:
        outcome = lifecycle.open_case(
            opinion,
            correlation_id=opinion.opinion_id,
            department_id=department_id,
            category_id=opinion.category_id,
            kind=CaseKind.GENERAL,
            classification=classification,
            deadlines=deadlines or DeadlineSettings(),
            calendar=await tx.calendar(at),
            now=at,
        )
        await tx.apply(outcome, now=at, new=True)
    return outcome.case


ACK = {
    "responsible_person": "张科长",
    "contact": "0576-86000001",
    "planned_completion_date": "2026-12-31",
}
REPORT = {
    "handling_situation": "现场查看，已调整信号配时",
    "handling_result": "绿灯时间由25秒延长至45秒",
    "responsible_person": "张科长",
    "contact": "0576-86000001",
    "completion_date": str(date.today()),
}


async def test_sign_in_with_a_seeded_account_and_a_wrong_secret(routing: Routing):
    ok = await routing.http.post(
        "/api/v1/auth/token",
        json={"client_id": "dept-transport", "client_secret": "minyi-dev-password"},
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["role"], body["department_id"]) == ("department", "transport")
    queue = await routing.http.get(
        "/api/v1/departments/transport/queue",
        headers={"authorization": f"Bearer {body['access_token']}"},
    )
    assert queue.status_code == 200
    for client_id, secret in (("dept-transport", "wrong"), ("nobody", "minyi-dev-password")):
        bad = await routing.http.post(
            "/api/v1/auth/token", json={"client_id": client_id, "client_secret": secret}
        )
        assert bad.status_code == 401
        assert bad.json()["error"] == "unauthorized"
    stored = await routing.runtime.pool.fetchval(
        "SELECT secret_hash FROM accounts WHERE client_id = 'committee'"
    )
    assert stored.startswith("$argon2id$")
    assert await routing.count("SELECT count(*) FROM accounts WHERE role = 'department'") == 11


async def test_a_case_through_its_whole_life_over_http(routing: Routing):
    case = await open_case(routing.store)
    dept = routing.auth(Role.DEPARTMENT, department_id="transport")
    committee = routing.auth(Role.COMMITTEE)
    url = f"/api/v1/cases/{case.id}"

    r = await routing.http.post(f"{url}/acknowledge", json=ACK, headers=dept)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged"
    original_due = r.json()["complete_due_at"]

    wanted = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    r = await routing.http.post(
        f"{url}/extension-request",
        json={"reason": "需协调交警部门改造信号机", "requested_complete_due_at": wanted},
        headers=dept,
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "extension_requested"

    r = await routing.http.post(
        f"{url}/extension-decision", json={"granted": True, "reason": "同意"}, headers=committee
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "acknowledged"
    assert datetime.fromisoformat(body["complete_due_at"]) == datetime.fromisoformat(wanted)
    assert body["original_complete_due_at"] == original_due

    r = await routing.http.post(f"{url}/complete", json=REPORT, headers=dept)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "completed"
    assert body["handling_result"] == REPORT["handling_result"]
    assert body["completion_date"] == REPORT["completion_date"]
    assert [t["to_state"] for t in body["transitions"]] == [
        "assigned",
        "acknowledged",
        "extension_requested",
        "acknowledged",
        "completed",
    ]
    assert [t["actor"] for t in body["transitions"][1:]] == [
        "transport",
        "transport",
        "committee",
        "transport",
    ]
    assert all(t["at"] and t["reason"] for t in body["transitions"])
    # Every transition's event went through the outbox (and on to Kafka).
    event_ids = [
        r["event_id"]
        for r in await routing.runtime.pool.fetch(
            "SELECT event_id FROM case_transitions WHERE case_id = $1 ORDER BY id", case.id
        )
    ]
    assert len(set(event_ids)) == 5
    # No unfired timers are left for a completed case.
    assert (
        await routing.count(
            "SELECT count(*) FROM deadline_timers WHERE case_id = $1 AND fired_at IS NULL",
            case.id,
        )
        == 0
    )


async def test_an_illegal_transition_is_409_with_the_current_state_and_writes_nothing(
    routing: Routing,
):
    case = await open_case(routing.store)
    dept = routing.auth(Role.DEPARTMENT, department_id="transport")
    before = await routing.count("SELECT count(*) FROM case_transitions")
    row_before = await routing.runtime.pool.fetchrow("SELECT * FROM cases WHERE id = $1", case.id)
    timers_before = await routing.count("SELECT count(*) FROM deadline_timers")
    r = await routing.http.post(f"/api/v1/cases/{case.id}/complete", json=REPORT, headers=dept)
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "illegal_transition"
    assert body["state"] == "assigned"
    assert "Traceback" not in r.text
    r = await routing.http.post(
        f"/api/v1/cases/{case.id}/extension-decision",
        json={"granted": True},
        headers=routing.auth(Role.COMMITTEE),
    )
    assert r.status_code == 409
    assert r.json()["state"] == "assigned"
    assert await routing.count("SELECT count(*) FROM case_transitions") == before
    assert (
        await routing.runtime.pool.fetchrow("SELECT * FROM cases WHERE id = $1", case.id)
        == row_before
    )
    assert await routing.count("SELECT count(*) FROM deadline_timers") == timers_before
    # A role that may not take the action: 403 (the case is visible to the committee).
    r = await routing.http.post(
        f"/api/v1/cases/{case.id}/acknowledge", json=ACK, headers=routing.auth(Role.COMMITTEE)
    )
    assert r.status_code == 403
    # Bad input: 422 naming the field.
    r = await routing.http.post(
        f"/api/v1/cases/{case.id}/acknowledge",
        json={**ACK, "planned_completion_date": "soon"},
        headers=dept,
    )
    assert r.status_code == 422
    assert [f["field"] for f in r.json()["fields"]] == ["planned_completion_date"]
    # Without a token: 401.
    r = await routing.http.post(f"/api/v1/cases/{case.id}/acknowledge", json=ACK)
    assert r.status_code == 401


async def test_return_then_reroute_to_another_department_and_returns_are_counted(
    routing: Routing,
):
    case = await open_case(routing.store)
    transport = routing.auth(Role.DEPARTMENT, department_id="transport")
    housing = routing.auth(Role.DEPARTMENT, department_id="housing")
    operator = routing.auth(Role.OPERATOR)
    url = f"/api/v1/cases/{case.id}"

    r = await routing.http.post(
        f"{url}/return", json={"reason": "道路属城建部门管理"}, headers=transport
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "returned"
    assert (
        await routing.count(
            "SELECT count(*) FROM deadline_timers WHERE case_id = $1 AND fired_at IS NULL",
            case.id,
        )
        == 0
    )
    worklist = await routing.http.get("/api/v1/worklist", headers=operator)
    assert [w["id"] for w in worklist.json()] == [str(case.id)]

    same = await routing.http.post(
        f"{url}/route", json={"department_id": "transport", "reason": "x" * 3}, headers=operator
    )
    assert same.status_code == 409
    assert same.json()["error"] == "rule_violation"
    unknown = await routing.http.post(
        f"{url}/route", json={"department_id": "atlantis", "reason": "xxx"}, headers=operator
    )
    assert unknown.status_code == 422

    r = await routing.http.post(
        f"{url}/route", json={"department_id": "housing", "reason": "改派住建局"}, headers=operator
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["department_id"]) == ("assigned", "housing")
    assert [t["to_state"] for t in body["transitions"]] == ["assigned", "returned", "assigned"]
    # The case is housing's now: transport no longer sees it, housing does.
    assert (await routing.http.get(url, headers=transport)).status_code == 404
    assert (await routing.http.get(url, headers=housing)).status_code == 200
    queue = await routing.http.get("/api/v1/departments/housing/queue", headers=housing)
    assert [q["id"] for q in queue.json()] == [str(case.id)]
    # New timers for the new assignment.
    assert (
        await routing.count(
            "SELECT count(*) FROM deadline_timers WHERE case_id = $1 AND fired_at IS NULL",
            case.id,
        )
        > 0
    )
    returns = await routing.http.get("/api/v1/returns", headers=operator)
    assert returns.json() == {"transport": 1}
    assert (await routing.http.get("/api/v1/returns", headers=transport)).status_code == 403


async def test_the_queue_is_ordered_by_deadline_and_filtered_by_state(routing: Routing):
    now = datetime.now(UTC)
    later = await open_case(routing.store, now=now)
    sooner = await open_case(routing.store, now=now - timedelta(days=3))
    other = await open_case(routing.store, department_id="housing")
    dept = routing.auth(Role.DEPARTMENT, department_id="transport")
    r = await routing.http.get("/api/v1/departments/transport/queue", headers=dept)
    assert [q["id"] for q in r.json()] == [str(sooner.id), str(later.id)]
    assert str(other.id) not in r.text
    await routing.http.post(f"/api/v1/cases/{later.id}/acknowledge", json=ACK, headers=dept)
    r = await routing.http.get(
        "/api/v1/departments/transport/queue", params={"state": "acknowledged"}, headers=dept
    )
    assert [q["id"] for q in r.json()] == [str(later.id)]
    r = await routing.http.get(
        "/api/v1/departments/transport/queue",
        params={"state": "assigned"},
        headers=routing.auth(Role.COMMITTEE),
    )
    assert [q["id"] for q in r.json()] == [str(sooner.id)]
    assert (await routing.http.get("/api/v1/departments/transport/queue")).status_code == 401
    assert (
        await routing.http.get(
            "/api/v1/departments/nowhere/queue", headers=routing.auth(Role.COMMITTEE)
        )
    ).status_code == 404


async def test_an_invitation_is_reviewed_by_the_committee(routing: Routing):
    case = await open_case(routing.store, classification=Classification.MAJOR)
    committee = routing.auth(Role.COMMITTEE)
    transport = routing.auth(Role.DEPARTMENT, department_id="transport")
    assert case.state is lifecycle.CaseState.PENDING_REVIEW
    # Not the department's to see until approved.
    assert (
        await routing.http.get(f"/api/v1/cases/{case.id}", headers=transport)
    ).status_code == 404
    r = await routing.http.post(
        f"/api/v1/cases/{case.id}/invitation-decision",
        json={"approved": True, "reason": "涉及全镇，约请交通局长"},
        headers=committee,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "assigned"
    assert body["is_invitation"]
    assert [t["to_state"] for t in body["transitions"]] == [
        "triaged",
        "pending_review",
        "approved",
        "assigned",
    ]
    assert (
        await routing.http.get(f"/api/v1/cases/{case.id}", headers=transport)
    ).status_code == 200
    # A station reports an invitation need for its own case.
    own = await open_case(routing.store, station_id="daxi-1")
    station = routing.auth(Role.STATION, station_id="daxi-1")
    r = await routing.http.post(
        f"/api/v1/cases/{own.id}/invitation", json={"reason": "多个村反映，需约请"}, headers=station
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "pending_review"
    r = await routing.http.post(
        f"/api/v1/cases/{own.id}/invitation-decision",
        json={"approved": False, "reason": "按一般件办理"},
        headers=committee,
    )
    assert r.json()["state"] == "rejected"
    other_station = routing.auth(Role.STATION, station_id="zeguo-1")
    assert (
        await routing.http.get(f"/api/v1/cases/{own.id}", headers=other_station)
    ).status_code == 404


async def test_the_calendar_is_editable_by_an_admin(routing: Routing):
    r = await routing.http.get("/api/v1/calendar/2025")
    days = {d["day"]: d for d in r.json()}
    assert days["2025-02-08"]["is_working"] is True
    assert days["2025-01-29"]["is_working"] is False
    admin = routing.auth(Role.ADMIN)
    r = await routing.http.put(
        "/api/v1/calendar/days/2031-02-03",
        json={"is_working": False, "note": "春节"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = await routing.http.put(
        "/api/v1/calendar/days/2031-02-08",
        json={"is_working": True},
        headers=routing.auth(Role.OPERATOR),
    )
    assert r.status_code == 403
    days = {d["day"]: d for d in (await routing.http.get("/api/v1/calendar/2031")).json()}
    assert days == {
        "2031-02-03": {"day": "2031-02-03", "is_working": False, "note": "春节", "source": "manual"}
    }


# ---- isolation: department A's token on department B's case → 404 everywhere ---------------

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/cases/{case_id}", None),
    ("GET", "/api/v1/cases?opinion_id={opinion_id}", None),
    ("POST", "/api/v1/cases/{case_id}/acknowledge", ACK),
    (
        "POST",
        "/api/v1/cases/{case_id}/extension-request",
        {"reason": "需要更多时间", "requested_complete_due_at": "2030-01-01T00:00:00+08:00"},
    ),
    ("POST", "/api/v1/cases/{case_id}/return", {"reason": "不属于本部门"}),
    ("POST", "/api/v1/cases/{case_id}/complete", REPORT),
    ("POST", "/api/v1/cases/{case_id}/extension-decision", {"granted": True}),
    ("POST", "/api/v1/cases/{case_id}/invitation", {"reason": "重大问题"}),
    ("POST", "/api/v1/cases/{case_id}/invitation-decision", {"approved": True}),
    ("POST", "/api/v1/cases/{case_id}/route", {"department_id": "housing", "reason": "改派"}),
    ("GET", "/api/v1/departments/transport/queue", None),
    ("GET", "/api/v1/departments/transport/stream", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
async def test_another_departments_case_is_404_on_every_endpoint(
    routing: Routing, method: str, path: str, body: dict[str, Any] | None
):
    case = await open_case(routing.store, department_id="transport")
    acked = await routing.http.post(
        f"/api/v1/cases/{case.id}/acknowledge",
        json=ACK,
        headers=routing.auth(Role.DEPARTMENT, department_id="transport"),
    )
    assert acked.status_code == 200
    before = await routing.count("SELECT count(*) FROM case_transitions")
    housing = routing.auth(Role.DEPARTMENT, department_id="housing")
    url = path.format(case_id=case.id, opinion_id=case.opinion_id)
    r = await routing.http.request(method, url, json=body, headers=housing)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    assert await routing.count("SELECT count(*) FROM case_transitions") == before
    # Same answer as for a case that does not exist.
    missing = path.format(case_id=uuid4(), opinion_id=uuid4())
    if "{case_id}" in path or "{opinion_id}" in path:
        r = await routing.http.request(method, missing, json=body, headers=housing)
        assert r.status_code == 404


async def test_events_of_the_case_reach_kafka_in_order(routing: Routing):
    from shared import topics
    from tests.helpers import read_topic

    case = await open_case(routing.store)
    dept = routing.auth(Role.DEPARTMENT, department_id="transport")
    await routing.http.post(f"/api/v1/cases/{case.id}/acknowledge", json=ACK, headers=dept)
    await routing.http.post(f"/api/v1/cases/{case.id}/complete", json=REPORT, headers=dept)
    records = await read_topic(routing.settings.kafka.topic(topics.CASE), at_least=3)
    mine = [json.loads(r.value) for r in records if r.key == str(case.id).encode()]
    assert [m["event_type"] for m in mine] == [
        "case.assigned",
        "case.acknowledged",
        "case.completed",
    ]
    assert len({m["correlation_id"] for m in mine}) == 1
    assert all("0576-86000001" not in json.dumps(m) for m in mine)  # no contact in events
    assert isinstance(UUID(mine[0]["payload"]["case_id"]), UUID)
