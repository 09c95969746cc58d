"""The idempotent consumer's tracking row, written in the handler's own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from shared.db.pool import Connection


@dataclass(frozen=True)
class Delivery:
    """Where a consumed message came from."""

    consumer: str
    topic: str
    partition: int
    offset: int


async def claim_once(conn: Connection, delivery: Delivery, event_id: UUID) -> bool:
    """Record `event_id` as processed by this consumer; False if it already was.

    Must run inside the transaction that holds the handler's writes, so that the writes and
    the tracking row commit together or not at all.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("claim_once must run inside the handler's transaction")
    status = await conn.execute(
        """INSERT INTO processed_messages (consumer, event_id, topic, kafka_partition, kafka_offset)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        delivery.consumer,
        event_id,
        delivery.topic,
        delivery.partition,
        delivery.offset,
    )
    return bool(status == "INSERT 0 1")
