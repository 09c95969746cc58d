"""Two replicas of routing (consumers, deadline engine and outbox relay) on one database and
one consumer group: no deadline fires twice, no event is published twice."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from shared import topics
from tests.helpers import eventually, open_pool, produce_envelope, read_topic
from tests.integration.test_routing_consumer import opinion_envelope
from tests.processes import ServiceProcess, run_command, service_env

pytestmark = pytest.mark.integration

OPINIONS = 30
FAST_ACKNOWLEDGE = {
    # General cases: acknowledge within a minute (a reminder at half-time, overdue and escalation
    # at the deadline); completion far away, so only the acknowledge timers fire in the test.
    "MINYI_ROUTING__DEADLINES__GENERAL__ACKNOWLEDGE__HOURS": "0",
    "MINYI_ROUTING__DEADLINES__GENERAL__ACKNOWLEDGE__MINUTES": "1",
    "MINYI_ROUTING__DEADLINES__GENERAL__ACKNOWLEDGE__WORKING_DAYS": "0",
    "MINYI_ROUTING__DEADLINES__REMINDERS__MINUTES_BEFORE": "[]",
    "MINYI_ROUTING__DEADLINES__ESCALATE_AFTER__WORKING_DAYS": "0",
    "MINYI_ROUTING__TIMERS__POLL_INTERVAL_S": "0.2",
}


async def test_two_routing_replicas_never_double_fire_or_double_publish(
    infra, database_url, topic_prefix, tmp_path
):
    env = service_env(
        "routing", database_url=database_url, topic_prefix=topic_prefix, extra=FAST_ACKNOWLEDGE
    )
    run_command("routing", "migrate", env)
    run_command("routing", "seed", env)
    replicas = [ServiceProcess("routing", env, tmp_path / f"r{i}") for i in range(2)]
    pool = await open_pool(database_url, "routing")
    try:
        for replica in replicas:
            replica.log_path.parent.mkdir(parents=True, exist_ok=True)
            replica.start()
        for _ in range(OPINIONS):
            await produce_envelope(topic_prefix + topics.OPINION, opinion_envelope())

        async def all_acknowledge_timers_fired() -> bool:
            pending = await pool.fetchval(
                "SELECT count(*) FROM deadline_timers WHERE deadline = 'acknowledge'"
                " AND fired_at IS NULL"
            )
            # Every opinion's own case (the same-category-and-town suggestion case that triage
            # opens alongside them has no deadlines of its own).
            cases = await pool.fetchval("SELECT count(*) FROM cases WHERE state = 'assigned'")
            return bool(cases == OPINIONS and pending == 0)

        try:
            await eventually(all_acknowledge_timers_fired, timeout=180, what="acknowledge timers")
        except AssertionError:
            state = await pool.fetch(
                "SELECT action, fired_at IS NOT NULL AS fired, count(*) FROM deadline_timers"
                " WHERE deadline = 'acknowledge' GROUP BY 1, 2"
            )
            raise AssertionError(
                f"cases {await pool.fetchval('SELECT count(*) FROM cases')}, "
                f"timers {[tuple(r) for r in state]}"
            ) from None
        fired = await pool.fetchval(
            "SELECT count(*) FROM deadline_timers WHERE deadline = 'acknowledge'"
        )
        records = await read_topic(topic_prefix + topics.CASE, at_least=OPINIONS + fired)
        events = [json.loads(r.value) for r in records]
        ids = Counter(e["event_id"] for e in events)
        assert [i for i, n in ids.items() if n > 1] == []  # nothing published twice
        by_type = Counter(e["event_type"] for e in events)
        assert by_type["case.assigned"] == OPINIONS
        fired_events = sum(
            by_type[t] for t in ("case.deadline_approaching", "case.overdue", "case.escalated")
        )
        assert fired_events == fired == OPINIONS * 3  # reminder, overdue, escalation each once
        for replica in replicas:  # both replicas were alive and well throughout
            assert replica.proc is not None
            assert replica.proc.poll() is None, replica.log_tail()
    finally:
        for replica in replicas:
            replica.stop()
        await pool.close()
