"""The outbox relay: claims unpublished rows, publishes them keyed by aggregate id, deletes them.

Several replicas of a service may run a relay; one at a time publishes: each batch is taken under
a transaction-scoped advisory lock (`pg_try_advisory_xact_lock`), so rows go out in `id` order and
the events of one aggregate keep their order on its partition. The rows are also claimed with
`FOR UPDATE SKIP LOCKED`, so even without the lock no row is published by two relays at once.
A relay that dies mid-batch rolls back; the next one re-publishes those rows (consumers
deduplicate on the event id, so that changes nothing downstream).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog

from shared.db.pool import Pool
from shared.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG

log = structlog.get_logger(__name__)

Send = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[Awaitable[Any]]]
"""send(topic, key, value, headers): enqueues the record with the producer and returns an
awaitable that completes when the broker acknowledged it (acks=all)."""


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: Pool,
        send: Send,
        service: str,
        batch_size: int,
    ) -> None:
        self._pool = pool
        self._send = send
        self._service = service
        self._batch_size = batch_size

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many rows were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox_relay'))"
            ):
                return 0  # another replica is publishing; NOTIFY or the poll wakes us again
            rows = await conn.fetch(
                """SELECT id, topic, message_key, payload, headers FROM outbox
                   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self._batch_size,
            )
            if not rows:
                OUTBOX_BACKLOG.labels(self._service).set(0)
                return 0
            # Enqueue the whole batch, then wait for every acknowledgement: the producer batches
            # records per partition and its idempotence keeps them in order.
            acks = [
                await self._send(
                    row["topic"],
                    row["message_key"].encode(),
                    orjson.dumps(row["payload"]),
                    row["headers"],
                )
                for row in rows
            ]
            await asyncio.gather(*acks)
            for row in rows:
                EVENTS_PUBLISHED.labels(self._service, row["topic"]).inc()
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
            backlog = 0
            if len(rows) == self._batch_size:
                # Rows left behind: newest id − last published id, an index lookup instead of a
                # count of the table (an upper bound: rolled-back inserts leave gaps in ids).
                newest = await conn.fetchval("SELECT max(id) FROM outbox")
                backlog = max(0, (newest or 0) - rows[-1]["id"])
        OUTBOX_BACKLOG.labels(self._service).set(backlog)
        log.debug("outbox_published", count=len(rows))
        return len(rows)
