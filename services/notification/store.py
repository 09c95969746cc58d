"""Notification's SQL: contacts, deliveries (planned, claimed, finished) and their events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from services.notification.domain import PlannedDelivery
from shared.db.pool import Pool
from shared.events import EventEnvelope
from shared.messaging.inbox import Delivery, claim_once
from shared.messaging.outbox import add_to_outbox
from shared.reference import ReferenceData


class NotificationStore:
    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    async def plan(
        self, delivery: Delivery, envelope: EventEnvelope, planned: Sequence[PlannedDelivery]
    ) -> bool:
        """Record the deliveries an event calls for; False if this event was seen before."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, envelope.event_id):
                return False
            await conn.executemany(
                """INSERT INTO deliveries (id, source_event_id, correlation_id, case_id,
                       recipient_kind, recipient_ref, channel, template, params)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (source_event_id, recipient_kind, recipient_ref, channel)
                   DO NOTHING""",
                [
                    (
                        p.delivery_id,
                        p.source_event_id,
                        envelope.correlation_id,
                        p.case_id,
                        p.recipient_kind,
                        p.recipient_ref,
                        p.channel,
                        p.template,
                        p.params,
                    )
                    for p in planned
                ],
            )
        return True

    async def claim_due(self, limit: int, lease: timedelta) -> list[dict[str, Any]]:
        """Claim deliveries that are due (or whose sender's lease ran out), with the address."""
        rows = await self._pool.fetch(
            """WITH due AS (
                   SELECT id FROM deliveries
                   WHERE (status = 'pending' AND next_attempt_at <= now())
                      OR (status = 'sending' AND lease_until < now())
                   ORDER BY next_attempt_at LIMIT $1
                   FOR UPDATE SKIP LOCKED)
               UPDATE deliveries d
               SET status = 'sending', attempts = d.attempts + 1,
                   lease_until = now() + $2::interval
               FROM due WHERE d.id = due.id
               RETURNING d.*, (SELECT phone FROM contacts c
                               WHERE c.recipient_kind = d.recipient_kind
                                 AND c.recipient_ref = d.recipient_ref) AS phone""",
            limit,
            lease,
        )
        return [dict(r) for r in rows]

    async def mark_sent(
        self,
        delivery_id: UUID,
        *,
        provider: str,
        provider_message_id: str | None,
        sent_at: datetime,
        event: EventEnvelope,
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE deliveries SET status = 'sent', provider = $2,
                       provider_message_id = $3, sent_at = $4, lease_until = NULL,
                       last_error = NULL
                   WHERE id = $1""",
                delivery_id,
                provider,
                provider_message_id,
                sent_at,
            )
            await add_to_outbox(conn, [event], topic_prefix=self._topic_prefix)

    async def mark_retry(self, delivery_id: UUID, *, error: str, delay: timedelta) -> None:
        await self._pool.execute(
            """UPDATE deliveries SET status = 'pending', lease_until = NULL, last_error = $2,
                   next_attempt_at = now() + $3::interval
               WHERE id = $1""",
            delivery_id,
            error,
            delay,
        )

    async def mark_failed(self, delivery_id: UUID, *, error: str) -> None:
        await self._pool.execute(
            """UPDATE deliveries SET status = 'failed', lease_until = NULL, last_error = $2
               WHERE id = $1""",
            delivery_id,
            error,
        )

    async def deliveries_for_case(self, case_id: UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, source_event_id, recipient_kind, recipient_ref, channel, template,
                      status, attempts, provider, provider_message_id, last_error,
                      created_at, sent_at
               FROM deliveries WHERE case_id = $1 ORDER BY created_at, id""",
            case_id,
        )
        return [dict(r) for r in rows]

    async def seed(self, ref: ReferenceData) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO contacts (recipient_kind, recipient_ref, name, phone)
                   VALUES ('department', $1, $2, $3)
                   ON CONFLICT (recipient_kind, recipient_ref)
                   DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone""",
                [(d.id, d.contact_name, d.contact_phone) for d in ref.departments],
            )
        return f"notification: {len(ref.departments)} department contacts"
