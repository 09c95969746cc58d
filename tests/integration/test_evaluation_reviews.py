"""Evaluations of an invitation's handling (评议) by its station and the committee, and deputies'
report-back sessions (述职评议): one score per voter per session, and the distribution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from services.evaluation.api import build_router
from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.handlers import on_event
from services.evaluation.ratings import RatingLinks, RatingSettings
from services.evaluation.store import EvaluationStore
from shared.auth import AuthSettings, Principal, Role, issue_token
from shared.events import CaseAssignedV1, CaseCompletedV1, EventEnvelope
from shared.http import install_common
from shared.messaging.inbox import Delivery
from shared.reference import wenling
from tests.helpers import migrate, open_pool

pytestmark = pytest.mark.integration

AUTH = AuthSettings()
LINKS = RatingLinks(AUTH, RatingSettings())


def _bearer(role: Role, subject: str, station_id: str | None = None) -> dict[str, str]:
    token = issue_token(AUTH, Principal(subject=subject, role=role, station_id=station_id))
    return {"authorization": f"Bearer {token}"}


async def test_station_and_committee_evaluate_an_invitation_once_each(infra, database_url):
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    try:
        store = EvaluationStore(pool)
        await store.seed(wenling())  # the deputies and their stations
        at = datetime(2025, 3, 3, 1, tzinfo=UTC)
        dims: dict[str, Any] = dict(
            department_id="housing", station_id="zeguo-1", town_id="zeguo", category_id="housing"
        )
        invitation, ordinary = uuid4(), uuid4()
        for n, (case_id, is_invitation) in enumerate(((invitation, True), (ordinary, False))):
            for event in (
                CaseAssignedV1(
                    case_id=case_id,
                    opinion_id=uuid4(),
                    receipt_code="ABCDE-FGHJK",
                    kind="complex",
                    assigned_at=at,
                    acknowledge_due_at=at + timedelta(days=2),
                    complete_due_at=at + timedelta(days=20),
                    **dims,
                ),
                CaseCompletedV1(
                    case_id=case_id,
                    opinion_id=uuid4(),
                    completed_at=at + timedelta(days=10),
                    complete_due_at=at + timedelta(days=20),
                    on_time=True,
                    result_summary="约请事项已办结",
                    is_invitation=is_invitation,
                    **dims,
                ),
            ):
                envelope = EventEnvelope.wrap(event, producer="routing", correlation_id=uuid4())
                delivery = Delivery("evaluation.case", "minyi.case", 0, n)
                await on_event(store, envelope, delivery, links=LINKS)

        app = FastAPI()
        install_common(app, service="evaluation", ready=lambda: asyncio.sleep(0, {}))
        app.include_router(build_router(lambda _r: store, auth=AUTH, links=LINKS))
        station = _bearer(Role.STATION, "clerk-zeguo", "zeguo-1")
        other_station = _bearer(Role.STATION, "clerk-taiping", "taiping-1")
        committee = _bearer(Role.COMMITTEE, "committee-li")
        department = _bearer(Role.DEPARTMENT, "housing-clerk")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evaluation") as http:
            url = f"/api/v1/cases/{invitation}/evaluations"
            body = {"score": 88, "comment": "答复及时，措施具体"}
            assert (await http.post(url, json=body)).status_code == 401
            assert (await http.post(url, json=body, headers=department)).status_code == 403
            # Another station's case is not there for it (as on every read): 404.
            assert (await http.post(url, json=body, headers=other_station)).status_code == 404
            not_invitation = await http.post(
                f"/api/v1/cases/{ordinary}/evaluations", json=body, headers=committee
            )
            assert not_invitation.status_code == 409
            assert not_invitation.json()["error"] == "not_an_invitation"

            first = await http.post(url, json=body, headers=station)
            assert first.status_code == 201, first.text
            assert first.json()["evaluator_kind"] == "station"
            assert first.json()["evaluator_id"] == "zeguo-1"
            assert first.json()["evaluated_by"] == "clerk-zeguo"
            again = await http.post(url, json={"score": 10}, headers=station)
            assert again.status_code == 409
            assert again.json()["error"] == "already_evaluated"
            by_committee = await http.post(url, json={"score": 75}, headers=committee)
            assert by_committee.status_code == 201
            bad = await http.post(url, json={"score": 101}, headers=committee)
            assert bad.status_code == 422

            listed = await http.get(url, headers=committee)
            assert sorted(e["score"] for e in listed.json()) == [75, 88]
            events = await pool.fetch(
                "SELECT payload FROM outbox WHERE event_type = 'handling.evaluated'"
            )
            payloads = sorted((e["payload"]["payload"] for e in events), key=lambda p: p["score"])
            assert [(p["evaluator_kind"], p["score"]) for p in payloads] == [
                ("committee", 75),
                ("station", 88),
            ]
            assert all(p["department_id"] == "housing" for p in payloads)

            # 述职评议: a session, one score per voter, the distribution.
            session = await http.post(
                "/api/v1/report-back-sessions",
                json={
                    "deputy_id": "dep-002",  # a deputy of zeguo-1 (the reference data)
                    "station_id": "zeguo-1",
                    "held_on": "2025-03-20",
                    "title": "2024年度代表述职评议",
                },
                headers=station,
            )
            assert session.status_code == 201, session.text
            sid = session.json()["session_id"]
            scores = {"B-001": 95, "B-002": 88, "B-003": 72, "B-004": 91, "B-005": 55}
            for ballot, score in scores.items():
                r = await http.post(
                    f"/api/v1/report-back-sessions/{sid}/scores",
                    json={"voter_ref": ballot, "score": score},
                    headers=station,
                )
                assert r.status_code == 201
                assert r.json()["recorded"] is True
            twice = await http.post(
                f"/api/v1/report-back-sessions/{sid}/scores",
                json={"voter_ref": "B-001", "score": 10},
                headers=station,
            )
            assert twice.status_code == 200
            assert twice.json() == {
                "session_id": sid,
                "voter_ref": "B-001",
                "score": 95,
                "recorded": False,
            }
            got = (await http.get(f"/api/v1/report-back-sessions/{sid}", headers=committee)).json()
            assert got["distribution"] == {
                "count": 5,
                "mean": 80.2,
                "minimum": 55,
                "maximum": 95,
                "bands": {"0-59": 1, "60-69": 0, "70-79": 1, "80-89": 1, "90-100": 2},
            }
            missing = await http.get(f"/api/v1/report-back-sessions/{uuid4()}", headers=committee)
            assert missing.status_code == 404
            assert missing.json()["error"] == "not_found"
    finally:
        await pool.close()


# 述职评议 per station: the reference data's deputies (dep-001 of taiping-1, dep-002 of zeguo-1).
OWN_STATION, OTHER_STATION = "zeguo-1", "taiping-1"
OWN_DEPUTY, OTHER_DEPUTY = "dep-002", "dep-001"


def _session(deputy_id: str, station_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"deputy_id": deputy_id, "held_on": "2025-03-20", "title": "述职评议"}
    if station_id is not None:
        body["station_id"] = station_id
    return body


async def test_a_station_runs_report_back_sessions_of_its_own_station_only(infra, database_url):
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    try:
        store = EvaluationStore(pool)
        await store.seed(wenling())
        app = FastAPI()
        install_common(app, service="evaluation", ready=lambda: asyncio.sleep(0, {}))
        app.include_router(build_router(lambda _r: store, auth=AUTH, links=LINKS))
        own = _bearer(Role.STATION, "clerk-zeguo", OWN_STATION)
        other = _bearer(Role.STATION, "clerk-taiping", OTHER_STATION)
        committee = _bearer(Role.COMMITTEE, "committee-li")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evaluation") as http:
            sessions = "/api/v1/report-back-sessions"
            opened = await http.post(sessions, json=_session(OWN_DEPUTY), headers=own)
            assert opened.status_code == 201, opened.text
            assert opened.json()["station_id"] == OWN_STATION  # the deputy's, by default
            sid = opened.json()["session_id"]

            # Station B opens a session for station A (named, or through A's deputy): refused.
            for_a = await http.post(sessions, json=_session(OWN_DEPUTY, OWN_STATION), headers=other)
            assert for_a.status_code == 403, for_a.text
            through_deputy = await http.post(sessions, json=_session(OWN_DEPUTY), headers=other)
            assert through_deputy.status_code == 422, through_deputy.text
            assert [f["field"] for f in through_deputy.json()["fields"]] == ["deputy_id"]
            # An unknown deputy, or one of another station: 422 naming deputy_id (any caller).
            for body, who in (
                (_session("dep-999"), own),
                (_session("dep-999"), committee),
                (_session(OTHER_DEPUTY, OWN_STATION), committee),
                (_session(OTHER_DEPUTY, OWN_STATION), own),
            ):
                refused = await http.post(sessions, json=body, headers=who)
                assert refused.status_code == 422, (body, refused.text)
                assert refused.json()["fields"][0]["field"] == "deputy_id"

            # Station B scores or reads station A's session: refused; A and the committee may.
            score = {"voter_ref": "B-001", "score": 90}
            scores = f"{sessions}/{sid}/scores"
            assert (await http.post(scores, json=score, headers=other)).status_code == 403
            assert (await http.get(f"{sessions}/{sid}", headers=other)).status_code == 403
            assert (await http.post(scores, json=score, headers=own)).status_code == 201
            by_committee = {"voter_ref": "B-002", "score": 70}
            assert (
                await http.post(scores, json=by_committee, headers=committee)
            ).status_code == 201

            # The committee opens one for station B's deputy: B's, and only B may score it.
            b_session = await http.post(sessions, json=_session(OTHER_DEPUTY), headers=committee)
            assert b_session.status_code == 201, b_session.text
            assert b_session.json()["station_id"] == OTHER_STATION
            b_scores = f"{sessions}/{b_session.json()['session_id']}/scores"
            assert (await http.post(b_scores, json=score, headers=own)).status_code == 403
            assert (await http.post(b_scores, json=score, headers=other)).status_code == 201

        # Nothing the refused calls asked for was written: two sessions, three scores.
        assert await pool.fetchval("SELECT count(*) FROM report_back_sessions") == 2
        assert await pool.fetchval("SELECT count(*) FROM report_back_scores") == 3
        rows = await pool.fetch("SELECT deputy_id, station_id FROM report_back_sessions")
        station_of = {r["deputy_id"]: r["station_id"] for r in rows}
        assert station_of == {OWN_DEPUTY: OWN_STATION, OTHER_DEPUTY: OTHER_STATION}
    finally:
        await pool.close()
