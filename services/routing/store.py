"""Routing's SQL. `unit_of_work()` is one transaction: commit on success, roll back otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from services.routing.domain import Case, CaseKind, RoutingRule
from shared.db.pool import Connection, Pool
from shared.events import EventEnvelope
from shared.messaging.inbox import Delivery, claim_once
from shared.messaging.outbox import add_to_outbox
from shared.reference import ReferenceData


class RoutingTx:
    """The writes and reads of one handler, inside one transaction."""

    def __init__(self, conn: Connection, topic_prefix: str) -> None:
        self.conn = conn
        self._topic_prefix = topic_prefix

    async def claim(self, delivery: Delivery, event_id: UUID) -> bool:
        return await claim_once(self.conn, delivery, event_id)

    async def publish(self, *envelopes: EventEnvelope) -> None:
        await add_to_outbox(self.conn, envelopes, topic_prefix=self._topic_prefix)

    async def routing_rules(self) -> list[RoutingRule]:
        rows = await self.conn.fetch(
            "SELECT category_id, town_id, department_id, priority FROM routing_rules"
        )
        return [RoutingRule(**dict(r)) for r in rows]

    async def fallback_department(self) -> str:
        value = await self.conn.fetchval(
            "SELECT value FROM routing_config WHERE key = 'fallback_department_id'"
        )
        if value is None:
            raise RuntimeError("routing has no fallback department: run `seed`")
        return str(value)

    async def kind_of(self, category_id: str | None) -> CaseKind:
        kind = await self.conn.fetchval(
            "SELECT kind FROM category_kinds WHERE category_id = $1", category_id
        )
        return CaseKind(kind) if kind else CaseKind.GENERAL

    async def case_for_opinion(self, opinion_id: UUID) -> UUID | None:
        found: UUID | None = await self.conn.fetchval(
            "SELECT id FROM cases WHERE opinion_id = $1", opinion_id
        )
        return found

    async def insert_case(self, case: Case, *, cause: EventEnvelope, event_id: UUID) -> None:
        await self.conn.execute(
            """INSERT INTO cases (id, opinion_id, receipt_code, department_id, station_id,
                   town_id, category_id, kind, state, assigned_at, acknowledge_due_at,
                   complete_due_at, correlation_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
            case.case_id,
            case.opinion_id,
            case.receipt_code,
            case.department_id,
            case.station_id,
            case.town_id,
            case.category_id,
            case.kind.value,
            case.state.value,
            case.assigned_at,
            case.acknowledge_due_at,
            case.complete_due_at,
            cause.correlation_id,
        )
        await self.conn.execute(
            """INSERT INTO case_transitions (case_id, from_state, to_state, actor, reason,
                   event_id, at)
               VALUES ($1, NULL, $2, 'routing', $3, $4, $5)""",
            case.case_id,
            case.state.value,
            f"assigned by routing rules from {cause.event_type} {cause.event_id}",
            event_id,
            case.assigned_at,
        )


class RoutingStore:
    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[RoutingTx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield RoutingTx(conn, self._topic_prefix)

    async def case(self, case_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            """SELECT c.*, d.name AS department_name FROM cases c
               JOIN departments d ON d.id = c.department_id WHERE c.id = $1""",
            case_id,
        )
        if row is None:
            return None
        transitions = await self._pool.fetch(
            """SELECT from_state, to_state, actor, reason, at FROM case_transitions
               WHERE case_id = $1 ORDER BY id""",
            case_id,
        )
        return {**dict(row), "transitions": [dict(t) for t in transitions]}

    async def case_id_for_opinion(self, opinion_id: UUID) -> UUID | None:
        found: UUID | None = await self._pool.fetchval(
            "SELECT id FROM cases WHERE opinion_id = $1", opinion_id
        )
        return found

    async def department_queue(self, department_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, receipt_code, state, kind, category_id, town_id, station_id,
                      assigned_at, acknowledge_due_at, complete_due_at
               FROM cases WHERE department_id = $1 AND state <> 'closed'
               ORDER BY complete_due_at, id LIMIT $2""",
            department_id,
            limit,
        )
        return [dict(r) for r in rows]

    async def department_exists(self, department_id: str) -> bool:
        return bool(
            await self._pool.fetchval("SELECT 1 FROM departments WHERE id = $1", department_id)
        )

    async def seed(self, ref: ReferenceData) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO departments (id, name, contact_name, contact_phone)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                       contact_name = EXCLUDED.contact_name,
                       contact_phone = EXCLUDED.contact_phone""",
                [(d.id, d.name, d.contact_name, d.contact_phone) for d in ref.departments],
            )
            await conn.executemany(
                """INSERT INTO category_kinds (category_id, kind) VALUES ($1, $2)
                   ON CONFLICT (category_id) DO UPDATE SET kind = EXCLUDED.kind""",
                [(c.id, c.case_kind) for c in ref.categories],
            )
            await conn.executemany(
                """INSERT INTO routing_rules (category_id, town_id, department_id, priority)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (category_id, town_id, department_id)
                   DO UPDATE SET priority = EXCLUDED.priority""",
                [
                    (r.category_id, r.town_id, r.department_id, r.priority)
                    for r in ref.routing_rules
                ],
            )
            await conn.execute(
                """INSERT INTO routing_config (key, value) VALUES ('fallback_department_id', $1)
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""",
                ref.fallback_department_id,
            )
        return (
            f"routing: {len(ref.departments)} departments, {len(ref.routing_rules)} rules, "
            f"fallback {ref.fallback_department_id}"
        )
