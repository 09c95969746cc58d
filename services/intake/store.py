"""Intake's SQL: reference lookups, opinions (with their outbox rows), the seed."""

from __future__ import annotations

from typing import Any

from services.intake.domain import Opinion
from shared.db.pool import Pool
from shared.events import EventEnvelope
from shared.messaging.outbox import add_to_outbox
from shared.reference import ReferenceData


class IntakeStore:
    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    async def station_town(self, station_id: str) -> str | None:
        town: str | None = await self._pool.fetchval(
            "SELECT town_id FROM stations WHERE id = $1", station_id
        )
        return town

    async def category_exists(self, category_id: str) -> bool:
        return bool(
            await self._pool.fetchval("SELECT 1 FROM categories WHERE id = $1", category_id)
        )

    async def deputy_exists(self, deputy_id: str) -> bool:
        return bool(await self._pool.fetchval("SELECT 1 FROM deputies WHERE id = $1", deputy_id))

    async def save_submitted(self, opinion: Opinion, envelope: EventEnvelope) -> None:
        """The opinion and its `opinion.submitted` event commit together or not at all."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO opinions (id, receipt_code, channel, station_id, town_id,
                       category_id, deputy_id, content, voter_name, voter_phone, submitted_at,
                       correlation_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
                opinion.opinion_id,
                opinion.receipt_code,
                opinion.channel.value,
                opinion.station_id,
                opinion.town_id,
                opinion.category_id,
                opinion.deputy_id,
                opinion.content,
                opinion.voter_name,
                opinion.voter_phone,
                opinion.submitted_at,
                envelope.correlation_id,
            )
            await add_to_outbox(conn, [envelope], topic_prefix=self._topic_prefix)

    async def public_status(self, receipt_code: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            """SELECT o.receipt_code, o.channel, s.name AS station, t.name AS town,
                      c.name AS category, o.submitted_at, o.received_at
               FROM opinions o
               JOIN stations s ON s.id = o.station_id
               JOIN towns t ON t.id = o.town_id
               LEFT JOIN categories c ON c.id = o.category_id
               WHERE o.receipt_code = $1""",
            receipt_code,
        )
        return dict(row) if row else None

    async def seed(self, ref: ReferenceData) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO towns (id, name) VALUES ($1, $2)
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name""",
                [(t.id, t.name) for t in ref.towns],
            )
            await conn.executemany(
                """INSERT INTO stations (id, town_id, name, online) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (id) DO UPDATE SET town_id = EXCLUDED.town_id,
                       name = EXCLUDED.name, online = EXCLUDED.online""",
                [(s.id, s.town_id, s.name, s.online) for s in ref.stations],
            )
            await conn.executemany(
                """INSERT INTO categories (id, name) VALUES ($1, $2)
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name""",
                [(c.id, c.name) for c in ref.categories],
            )
            await conn.executemany(
                """INSERT INTO deputies (id, name, level, station_id) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level,
                       station_id = EXCLUDED.station_id""",
                [(d.id, d.name, d.level, d.station_id) for d in ref.deputies],
            )
        return (
            f"intake: {len(ref.towns)} towns, {len(ref.stations)} stations, "
            f"{len(ref.categories)} categories, {len(ref.deputies)} deputies"
        )
