"""Writing to the transactional outbox: call inside the transaction of the state change."""

from __future__ import annotations

from shared import topics
from shared.db.pool import Connection
from shared.events.envelope import EventEnvelope


async def add_to_outbox(
    conn: Connection,
    envelopes: list[EventEnvelope] | tuple[EventEnvelope, ...],
    *,
    topic_prefix: str = "",
) -> None:
    if not envelopes:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("outbox rows must be written inside the state change's transaction")
    await conn.executemany(
        """INSERT INTO outbox (event_id, topic, message_key, event_type, payload, headers)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (
                e.event_id,
                topic_prefix + topics.for_aggregate(e.aggregate_type),
                e.aggregate_id,
                e.event_type,
                e.model_dump(mode="json"),
                e.headers(),
            )
            for e in envelopes
        ],
    )
