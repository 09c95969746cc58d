"""Counters written before the KPI definitions of issue 14: migration 0004 rebuilds each case's
marks from the old columns, and `python -m services.evaluation recount-kpis` (the real command,
as the service's own role) rebuilds `kpi_counters` from the facts — against a hand-computed
table; folding after it keeps counters and facts in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.evaluation import domain
from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.store import EvaluationStore
from shared.db.migrations import apply_migrations, load_migrations
from shared.db.pool import connect
from shared.events import EventEnvelope, SatisfactionRatedV1
from shared.messaging.inbox import Delivery
from shared.settings import DatabaseSettings
from tests.helpers import open_pool
from tests.processes import run_command, service_env

pytestmark = pytest.mark.integration

PLACE = {"station_id": "zeguo-1", "town_id": "zeguo", "category_id": "agriculture"}
BEFORE_0004 = 3  # migrations 0001–0003


def utc(month: int, day: int, hour: int) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


# Two cases as the old fold left them.
REROUTED = {  # agri returned it (unknown to the old columns), enforcement did the work
    "case_id": uuid4(),
    "department_id": "enforcement",
    "dims_at": utc(3, 10, 5),
    "assigned_at": utc(3, 10, 2),  # 10:00 in Wenling, March
    "acknowledge_due_at": utc(3, 11, 2),
    "complete_due_at": utc(3, 17, 2),
    "acknowledged_at": utc(3, 10, 5),
    "acknowledged_on_time": True,
    "returns": 1,
    "last_returned_at": utc(3, 10, 4),
    "completions": 1,
    "first_completed_at": utc(3, 12, 2),
    "last_completed_at": utc(3, 12, 2),
    "last_completed_on_time": True,
}
RETURNED = {  # agri returned it on 1 April (Wenling) and nobody re-routed it yet
    "case_id": uuid4(),
    "department_id": "agri",
    "dims_at": utc(4, 1, 1),
    "assigned_at": utc(3, 20, 2),
    "acknowledge_due_at": utc(3, 21, 2),
    "complete_due_at": utc(3, 27, 2),
    "returns": 1,
    "last_returned_at": utc(4, 1, 1),
}
# What the old rules wrote: the return charged to enforcement, the receiver.
OLD_COUNTERS = [
    ("department", "enforcement", "2025-03", 1, 1),
    ("department", "agri", "2025-03", 1, 1),
    ("city", domain.CITY_KEY, "2025-03", 2, 2),
]


def expected() -> dict[tuple[str, str, str], dict[str, int]]:
    """By hand: the re-routed case's returner is unknown (no department charged); the other
    return is agri's, in April; the cases count in March on their latest assignment."""
    z = domain.zero()
    done = {
        "acknowledged": 1,
        "acknowledged_on_time": 1,
        "completed": 1,
        "completed_on_time": 1,
    }
    march_place = z | done | {"assigned": 2, "returned": 1}
    april_place = z | {"returned": 1}
    out = {
        ("department", "enforcement", "2025-03"): z | done | {"assigned": 1},
        ("department", "agri", "2025-03"): z | {"assigned": 1},
        ("department", "agri", "2025-04"): z | {"returned": 1},
    }
    for dimension, key in (
        ("city", domain.CITY_KEY),
        ("station", "zeguo-1"),
        ("town", "zeguo"),
        ("category", "agriculture"),
    ):
        out[(dimension, key, "2025-03")] = march_place
        out[(dimension, key, "2025-04")] = april_place
    return out


async def _insert_legacy(database_url: str) -> None:
    conn = await connect(DatabaseSettings(url=database_url), schema=SCHEMA, service="test")
    try:
        await apply_migrations(conn, SCHEMA, load_migrations(MIGRATIONS)[:BEFORE_0004])
        for row in (REROUTED, RETURNED):
            values: dict[str, Any] = {**PLACE, **row}
            names = list(values)
            marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
            await conn.execute(
                f"INSERT INTO case_facts ({', '.join(names)}) VALUES ({marks})", *values.values()
            )
        await conn.executemany(
            """INSERT INTO kpi_counters (dimension, key, month, assigned, returned)
               VALUES ($1, $2, $3, $4, $5)""",
            OLD_COUNTERS,
        )
    finally:
        await conn.close()


async def test_migration_0004_and_recount_kpis_correct_the_counters_already_written(
    infra, database_url, topic_prefix
):
    await _insert_legacy(database_url)
    env = service_env("evaluation", database_url=database_url, topic_prefix=topic_prefix)
    # `migrate` alone corrects the counters: migration 0004 leaves a recount request that the
    # command honours before it returns (a deployment's migrations job needs nothing else).
    out = run_command("evaluation", "migrate", env)
    assert "KPI counter rows rebuilt" in out
    pool = await open_pool(database_url, SCHEMA)
    try:
        store = EvaluationStore(pool)
        assert await store.counters() == expected()
        assert not await store.recount_pending()
        # A second `migrate` has nothing to apply and nothing to rebuild.
        assert "KPI counter rows rebuilt" not in run_command("evaluation", "migrate", env)
        out = run_command("evaluation", "recount-kpis", env)
        assert "KPI counter rows rebuilt" in out
        assert await store.counters() == expected()
        # Twice is the same.
        run_command("evaluation", "recount-kpis", env)
        assert await store.counters() == expected()

        # The rebuilt facts fold on: a rating of the re-routed case goes to enforcement.
        case_id = REROUTED["case_id"]
        assert isinstance(case_id, UUID)
        rating = SatisfactionRatedV1(
            case_id=case_id,
            opinion_id=uuid4(),
            department_id="enforcement",
            level="satisfied",
            score=5,
            rated_at=utc(3, 13, 2),
            reopen_requested=False,
        )
        envelope = EventEnvelope.wrap(rating, producer="test", correlation_id=uuid4())
        delivery = Delivery("evaluation.evaluation", "minyi.evaluation", 0, 0)
        assert await store.fold_case_event(delivery, envelope.event_id, case_id, rating)
        counters = await store.counters()
        assert counters == domain.recount(await store.all_facts())
        rated = {"rated": 1, "satisfied": 1}
        for key in (("department", "enforcement", "2025-03"), ("city", domain.CITY_KEY, "2025-03")):
            assert {m: counters[key][m] for m in rated} == rated
        facts = await store.facts(case_id)
        assert facts is not None
        assert facts.acknowledge_due_at == REROUTED["acknowledge_due_at"]
        assert [m.kind.value for m in facts.marks] == [
            "assigned",
            "returned",
            "acknowledged",
            "completed",
        ]
    finally:
        await pool.close()
