"""Durable deadline timers on real PostgreSQL and Kafka: planned with the case, cancelled by
acknowledgement, re-planned by an extension, computed on the calendar table (Spring Festival
2025 and its working Saturday), and fired exactly once — even when routing is killed mid-way."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from services.routing.app import MIGRATIONS, SCHEMA, seed
from services.routing.domain import CHINA, DeadlineKind
from services.routing.store import RoutingStore
from shared import topics
from shared.auth import Role
from tests.helpers import eventually, migrate, open_pool, read_topic
from tests.integration.test_routing_api import ACK, Routing, open_case, routing, routing_settings
from tests.processes import ServiceProcess, service_env

pytestmark = pytest.mark.integration
__all__ = ["routing"]  # the fixture


async def timers(routing: Routing, case_id: UUID, *, unfired: bool = True) -> list[dict[str, Any]]:
    rows = await routing.runtime.pool.fetch(
        f"""SELECT * FROM deadline_timers WHERE case_id = $1
            {"AND fired_at IS NULL" if unfired else ""} ORDER BY due_at, id""",
        case_id,
    )
    return [dict(r) for r in rows]


async def make_due(pool: Any, timer_id: int) -> None:
    await pool.execute(
        "UPDATE deadline_timers SET due_at = now() - interval '1 second' WHERE id = $1", timer_id
    )


async def test_a_due_reminder_fires_once_through_the_outbox(routing: Routing):
    case = await open_case(routing.store)
    planned = await timers(routing, case.id)
    assert {(t["deadline"], t["action"]) for t in planned} == {
        ("acknowledge", "reminder"),
        ("acknowledge", "overdue"),
        ("acknowledge", "escalation"),
        ("complete", "reminder"),
        ("complete", "overdue"),
        ("complete", "escalation"),
    }
    reminder = next(t for t in planned if t["action"] == "reminder")
    await make_due(routing.runtime.pool, reminder["id"])

    async def fired() -> bool:
        return bool(
            await routing.runtime.pool.fetchval(
                "SELECT fired_at IS NOT NULL FROM deadline_timers WHERE id = $1", reminder["id"]
            )
        )

    await eventually(fired, what="the reminder to fire")
    records = await read_topic(routing.settings.kafka.topic(topics.CASE), at_least=2)
    reminders = [json.loads(r.value) for r in records]
    reminders = [r for r in reminders if r["event_type"] == "case.deadline_approaching"]
    assert len(reminders) == 1
    assert reminders[0]["event_id"] == str(reminder["event_id"])
    payload = reminders[0]["payload"]
    assert payload["deadline"] == reminder["deadline"]
    assert datetime.fromisoformat(payload["due_at"]) == reminder["deadline_due_at"]
    assert payload["department_id"] == "transport"
    outcome = await routing.runtime.pool.fetchval(
        "SELECT outcome FROM deadline_timers WHERE id = $1", reminder["id"]
    )
    assert outcome == "published"


async def test_overdue_and_escalation_fire_and_a_timer_of_a_moved_on_case_is_skipped(
    routing: Routing,
):
    case = await open_case(routing.store)
    planned = await timers(routing, case.id)
    overdue = next(t for t in planned if (t["deadline"], t["action"]) == ("complete", "overdue"))
    escalation = next(
        t for t in planned if (t["deadline"], t["action"]) == ("complete", "escalation")
    )
    await routing.http.post(
        f"/api/v1/cases/{case.id}/acknowledge",
        json=ACK,
        headers=routing.auth(Role.DEPARTMENT, department_id="transport"),
    )
    # A timer the transition forgot to cancel (simulated: re-inserted) after the
    # acknowledgement is skipped, not sent.
    await routing.runtime.pool.execute(
        """INSERT INTO deadline_timers (case_id, deadline, action, deadline_due_at, due_at,
               dedupe_key, event_id)
           VALUES ($1, 'acknowledge', 'overdue', $2, now() - interval '1 second', 'stale',
                   gen_random_uuid())""",
        case.id,
        case.acknowledge_due_at,
    )
    for timer in (overdue, escalation):
        await make_due(routing.runtime.pool, timer["id"])

    async def all_fired() -> bool:
        n = await routing.runtime.pool.fetchval(
            "SELECT count(*) FROM deadline_timers WHERE fired_at IS NOT NULL"
        )
        return bool(n == 3)

    await eventually(all_fired, what="three timers to fire")
    outcomes = {
        r["dedupe_key"].split(":", 1)[-1]: r["outcome"]
        for r in await routing.runtime.pool.fetch(
            "SELECT dedupe_key, outcome FROM deadline_timers WHERE fired_at IS NOT NULL"
        )
    }
    assert sorted(outcomes.values()) == ["published", "published", "skipped"]
    assert outcomes["stale"] == "skipped"
    records = await read_topic(routing.settings.kafka.topic(topics.CASE), at_least=4)
    types = [json.loads(r.value)["event_type"] for r in records]
    assert types.count("case.overdue") == 1
    assert types.count("case.escalated") == 1


async def test_acknowledging_cancels_the_acknowledge_timers(routing: Routing):
    case = await open_case(routing.store)
    r = await routing.http.post(
        f"/api/v1/cases/{case.id}/acknowledge",
        json=ACK,
        headers=routing.auth(Role.DEPARTMENT, department_id="transport"),
    )
    assert r.status_code == 200
    left = await timers(routing, case.id)
    assert left
    assert {t["deadline"] for t in left} == {"complete"}


async def test_an_extension_replans_the_complete_timers_and_keeps_the_original_deadline(
    routing: Routing,
):
    case = await open_case(routing.store)
    dept = routing.auth(Role.DEPARTMENT, department_id="transport")
    await routing.http.post(f"/api/v1/cases/{case.id}/acknowledge", json=ACK, headers=dept)
    before = await timers(routing, case.id)
    original = case.complete_due_at
    assert original is not None
    wanted = original + timedelta(days=20)
    r = await routing.http.post(
        f"/api/v1/cases/{case.id}/extension-request",
        json={"reason": "涉及多个部门协调", "requested_complete_due_at": wanted.isoformat()},
        headers=dept,
    )
    assert r.status_code == 200, r.text
    assert await timers(routing, case.id) == before  # asking changes nothing yet
    r = await routing.http.post(
        f"/api/v1/cases/{case.id}/extension-decision",
        json={"granted": True, "reason": "同意延期"},
        headers=routing.auth(Role.COMMITTEE),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert datetime.fromisoformat(body["complete_due_at"]) == wanted
    assert datetime.fromisoformat(body["original_complete_due_at"]) == original
    after = await timers(routing, case.id)
    assert {t["deadline_due_at"] for t in after} == {wanted}
    assert not {t["dedupe_key"] for t in after} & {t["dedupe_key"] for t in before}
    overdue = next(t for t in after if t["action"] == "overdue")
    assert overdue["due_at"] == wanted
    escalation = next(t for t in after if t["action"] == "escalation")
    assert escalation["due_at"] > wanted


async def test_a_deadline_across_spring_festival_2025_uses_the_calendar_table(routing: Routing):
    # Assigned Monday 27 Jan 2025, 10:00 (China). Jan 28–Feb 4 are off; Sat 8 Feb works.
    assigned = datetime(2025, 1, 27, 10, 0, tzinfo=CHINA)
    case = await open_case(routing.store, now=assigned)
    assert case.acknowledge_due_at == datetime(2025, 2, 5, 10, 0, tzinfo=CHINA)
    # 7 working days: Feb 5, 6, 7, 8 (Saturday), 10, 11, 12.
    assert case.complete_due_at == datetime(2025, 2, 12, 10, 0, tzinfo=CHINA)
    planned = await timers(routing, case.id)
    escalation = next(
        t for t in planned if (t["deadline"], t["action"]) == ("complete", "escalation")
    )
    assert escalation["due_at"] == datetime(2025, 2, 13, 10, 0, tzinfo=CHINA)
    # 4 working days from a holiday (Tue 4 Feb) end on the working Saturday.
    from services.routing.domain import DeadlineSettings, Period
    from services.routing.domain.deadlines import GeneralDeadlines

    four = DeadlineSettings(general=GeneralDeadlines(complete=Period(working_days=4)))
    holiday = await open_case(
        routing.store, now=datetime(2025, 2, 4, 9, 0, tzinfo=CHINA), deadlines=four
    )
    assert holiday.complete_due_at == datetime(2025, 2, 8, 9, 0, tzinfo=CHINA)


async def test_the_calendar_table_decides_for_years_chinese_calendar_does_not_know(
    routing: Routing,
):
    # 2031 is unknown to chinese-calendar: Monday–Friday, until an admin edits the table.
    friday = datetime(2031, 1, 31, 9, 0, tzinfo=CHINA)
    plain = await open_case(routing.store, now=friday)
    assert plain.acknowledge_due_at == datetime(2031, 2, 3, 9, 0, tzinfo=CHINA)
    admin = routing.auth(Role.ADMIN)
    for day, working in (("2031-02-03", False), ("2031-02-01", True)):
        r = await routing.http.put(
            f"/api/v1/calendar/days/{day}", json={"is_working": working}, headers=admin
        )
        assert r.status_code == 200
    edited = await open_case(routing.store, now=friday)
    assert edited.acknowledge_due_at == datetime(2031, 2, 1, 9, 0, tzinfo=CHINA)
    assert edited.due(DeadlineKind.COMPLETE) == datetime(2031, 2, 11, 9, 0, tzinfo=CHINA)


async def test_a_reminder_fires_exactly_once_when_routing_is_killed_mid_way(
    infra, database_url, topic_prefix, tmp_path
):
    settings = routing_settings(database_url, topic_prefix)
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(settings)
    env = service_env(
        "routing",
        database_url=database_url,
        topic_prefix=topic_prefix,
        extra={"MINYI_ROUTING__TIMERS__POLL_INTERVAL_S": "0.2"},
    )
    process = ServiceProcess("routing", env, tmp_path)
    pool = await open_pool(database_url, SCHEMA)
    try:
        # The process dies inside the firing transaction: after it wrote the outbox row and
        # marked the timer fired, before the commit.
        process.start(extra_env={"MINYI_FAILPOINTS": "deadline_fire_before_commit"})
        case = await open_case(RoutingStore(pool, topic_prefix=topic_prefix))
        timer = await pool.fetchrow(
            """SELECT id, event_id FROM deadline_timers
               WHERE case_id = $1 AND action = 'reminder' ORDER BY due_at LIMIT 1""",
            case.id,
        )
        assert timer is not None
        await make_due(pool, timer["id"])
        assert process.wait_exit(timeout=60) == 137, process.log_tail()
        assert "failpoint deadline_fire_before_commit hit" in process.log_text()
        assert await pool.fetchval(
            "SELECT fired_at IS NULL FROM deadline_timers WHERE id = $1", timer["id"]
        )
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE event_type = 'case.deadline_approaching'"
            )
            == 0
        )

        # Restarted (and killed again right after the next firing commit, before the relay
        # could publish): the committed outbox row survives; the third start publishes it.
        process.start(
            wait_ready=False, extra_env={"MINYI_FAILPOINTS": "deadline_fire_after_commit"}
        )
        assert process.wait_exit(timeout=60) == 137, process.log_tail()
        assert not await pool.fetchval(
            "SELECT fired_at IS NULL FROM deadline_timers WHERE id = $1", timer["id"]
        )
        process.start()

        async def published() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE event_type = 'case.deadline_approaching'"
            )
            return bool(n == 0)

        await eventually(published, what="the relay to publish the reminder")
        records = await read_topic(topic_prefix + topics.CASE, at_least=2, quiet_s=2.0)
        reminders = [
            json.loads(r.value)
            for r in records
            if json.loads(r.value)["event_type"] == "case.deadline_approaching"
        ]
        assert len(reminders) == 1, reminders
        assert reminders[0]["event_id"] == str(timer["event_id"])
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM deadline_timers WHERE fired_at IS NOT NULL AND case_id = $1",
                case.id,
            )
            == 1
        )
    finally:
        process.stop()
        await pool.close()
