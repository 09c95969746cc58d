"""Evaluation's SQL: the case read model, written idempotently and in any order."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from services.evaluation.domain import DepartmentSummary
from shared.db.pool import Pool
from shared.events import CaseAssignedV1, NotificationSentV1
from shared.messaging.inbox import Delivery, claim_once


class EvaluationStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def record_assigned(self, delivery: Delivery, event_id: UUID, e: CaseAssignedV1) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, event_id):
                return False
            await conn.execute(
                """INSERT INTO case_facts (case_id, opinion_id, department_id, station_id,
                       town_id, category_id, kind, assigned_at, acknowledge_due_at,
                       complete_due_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (case_id) DO UPDATE SET
                       opinion_id = EXCLUDED.opinion_id,
                       department_id = EXCLUDED.department_id,
                       station_id = EXCLUDED.station_id,
                       town_id = EXCLUDED.town_id,
                       category_id = EXCLUDED.category_id,
                       kind = EXCLUDED.kind,
                       assigned_at = EXCLUDED.assigned_at,
                       acknowledge_due_at = EXCLUDED.acknowledge_due_at,
                       complete_due_at = EXCLUDED.complete_due_at,
                       updated_at = now()""",
                e.case_id,
                e.opinion_id,
                e.department_id,
                e.station_id,
                e.town_id,
                e.category_id,
                e.kind,
                e.assigned_at,
                e.acknowledge_due_at,
                e.complete_due_at,
            )
        return True

    async def record_notified(
        self, delivery: Delivery, event_id: UUID, e: NotificationSentV1
    ) -> bool:
        if e.case_id is None:
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, event_id):
                return False
            await conn.execute(
                """INSERT INTO case_facts (case_id, first_notified_at, notifications_sent)
                   VALUES ($1, $2, 1)
                   ON CONFLICT (case_id) DO UPDATE SET
                       first_notified_at = LEAST(case_facts.first_notified_at,
                                                 EXCLUDED.first_notified_at),
                       notifications_sent = case_facts.notifications_sent + 1,
                       updated_at = now()""",
                e.case_id,
                e.sent_at,
            )
        return True

    async def case(self, case_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM case_facts WHERE case_id = $1", case_id)
        return dict(row) if row else None

    async def department_summary(self, department_id: str) -> DepartmentSummary:
        row = await self._pool.fetchrow(
            """SELECT count(*) FILTER (WHERE assigned_at IS NOT NULL) AS assigned,
                      count(*) FILTER (WHERE assigned_at IS NOT NULL
                                       AND first_notified_at IS NOT NULL) AS notified
               FROM case_facts WHERE department_id = $1""",
            department_id,
        )
        assert row is not None
        return DepartmentSummary(department_id, row["assigned"], row["notified"])
