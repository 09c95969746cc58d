"""Intake's SQL: reference lookups, opinions (with their outbox rows), idempotency keys,
the voter's stage history, the seed. Every write is one transaction with its outbox rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.intake.domain import Opinion, ReferenceSnapshot, Stage, history_order
from services.intake.reference import KINDS, Kind, changed, records
from shared.db.pool import Connection, Pool
from shared.events import EventEnvelope
from shared.messaging.inbox import Delivery, claim_once
from shared.messaging.outbox import add_to_outbox
from shared.reference import ReferenceData

_INSERT_OPINION = """
INSERT INTO opinions (id, receipt_code, channel, station_id, town_id, category_id, deputy_id,
    content, voter_name, voter_phone, submitted_at, correlation_id, wechat_openid, entered_by,
    import_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"""


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str  # who may reuse it: "public", "station:<id>", "wechat", …
    key: str
    request_hash: str


class IdempotencyConflict(Exception):
    """The key was used before for a different request."""


@dataclass(frozen=True)
class Saved:
    response: dict[str, Any]
    replayed: bool


def _row(o: Opinion) -> tuple[Any, ...]:
    return (
        o.opinion_id,
        o.receipt_code,
        o.channel.value,
        o.station_id,
        o.town_id,
        o.category_id,
        o.deputy_id,
        o.content,
        o.voter_name,
        o.voter_phone,
        o.submitted_at,
        o.opinion_id,  # correlation id: the opinion's story starts here
        o.wechat_openid,
        o.entered_by,
        o.import_key,
    )


class IntakeStore:
    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    # -- reference data -------------------------------------------------------------------

    async def reference_snapshot(self) -> ReferenceSnapshot:
        async with self._pool.acquire() as conn:
            return await _snapshot(conn)

    async def station_town(self, station_id: str) -> str | None:
        town: str | None = await self._pool.fetchval(
            "SELECT town_id FROM stations WHERE id = $1 AND retired_at IS NULL", station_id
        )
        return town

    # -- opinions -------------------------------------------------------------------------

    async def save_opinions(
        self,
        opinions: Sequence[Opinion],
        *,
        response: dict[str, Any],
        idempotency: IdempotencyKey | None = None,
    ) -> Saved:
        """The opinions, their events and the idempotency key commit together or not at all.

        With a key used before: the first response (same request) or IdempotencyConflict.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if idempotency is not None:
                claimed = await conn.fetchval(
                    """INSERT INTO idempotency_keys (scope, key, request_hash, response)
                       VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
                    idempotency.scope,
                    idempotency.key,
                    idempotency.request_hash,
                    response,
                )
                if not claimed:
                    earlier = await conn.fetchrow(
                        """SELECT request_hash, response FROM idempotency_keys
                           WHERE scope = $1 AND key = $2""",
                        idempotency.scope,
                        idempotency.key,
                    )
                    assert earlier is not None
                    if earlier["request_hash"] != idempotency.request_hash:
                        raise IdempotencyConflict(idempotency.key)
                    return Saved(response=earlier["response"], replayed=True)
            await conn.executemany(_INSERT_OPINION, [_row(o) for o in opinions])
            await add_to_outbox(
                conn,
                [e for o in opinions for e in o.envelopes()],
                topic_prefix=self._topic_prefix,
            )
        return Saved(response=response, replayed=False)

    async def import_opinions(self, opinions: Sequence[Opinion]) -> int:
        """Insert the rows not imported before (by import key); returns how many were new."""
        keys = [o.import_key for o in opinions]
        async with self._pool.acquire() as conn, conn.transaction():
            done = {
                r["import_key"]
                for r in await conn.fetch(
                    "SELECT import_key FROM opinions WHERE import_key = ANY($1::text[])", keys
                )
            }
            fresh = [o for o in opinions if o.import_key not in done]
            if fresh:
                await conn.executemany(_INSERT_OPINION, [_row(o) for o in fresh])
                await add_to_outbox(
                    conn,
                    [e for o in fresh for e in o.envelopes()],
                    topic_prefix=self._topic_prefix,
                )
        return len(fresh)

    async def count_imported(self, keys: Sequence[str]) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM opinions WHERE import_key = ANY($1::text[])", list(keys)
        )
        return count

    async def public_status(self, receipt_code: str) -> dict[str, Any] | None:
        """What a voter may see by receipt code: never name, phone, openid or content."""
        row = await self._pool.fetchrow(
            """SELECT o.id, o.correlation_id, o.receipt_code, o.channel, s.name AS station,
                      t.name AS town, c.name AS category, o.submitted_at, o.received_at
               FROM opinions o
               JOIN stations s ON s.id = o.station_id
               JOIN towns t ON t.id = o.town_id
               LEFT JOIN categories c ON c.id = o.category_id
               WHERE o.receipt_code = $1""",
            receipt_code,
        )
        if row is None:
            return None
        stages = await self._pool.fetch(
            """SELECT stage, at, detail FROM case_stages
               WHERE correlation_id = $1
                  OR case_id IN (SELECT case_id FROM case_opinions WHERE opinion_id = $2)""",
            row["correlation_id"],
            row["id"],
        )
        status = {k: v for k, v in dict(row).items() if k not in ("id", "correlation_id")}
        submitted = {"stage": "submitted", "at": row["received_at"], "detail": {}}
        status["history"] = [submitted, *history_order(dict(s) for s in stages)]
        status["stage"] = status["history"][-1]["stage"]
        return status

    # -- consumed events ------------------------------------------------------------------

    async def record_stage(
        self, delivery: Delivery, envelope: EventEnvelope, stage: Stage | None
    ) -> bool:
        """One event of a case, once (idempotent); False if it was seen before."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, envelope.event_id):
                return False
            if stage is None:
                return True
            await conn.execute(
                """INSERT INTO case_stages (event_id, case_id, correlation_id, stage, at, detail)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING""",
                envelope.event_id,
                stage.case_id,
                envelope.correlation_id,
                stage.stage,
                stage.at,
                stage.detail,
            )
            await conn.executemany(
                """INSERT INTO case_opinions (case_id, opinion_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING""",
                [(stage.case_id, o) for o in stage.opinion_ids],
            )
        return True


async def _snapshot(conn: Connection) -> ReferenceSnapshot:
    stations = await conn.fetch("SELECT id, town_id FROM stations WHERE retired_at IS NULL")
    categories = await conn.fetch("SELECT id FROM categories WHERE retired_at IS NULL")
    deputies = await conn.fetch("SELECT id FROM deputies WHERE retired_at IS NULL")
    return ReferenceSnapshot(
        station_towns={r["id"]: r["town_id"] for r in stations},
        categories=frozenset(r["id"] for r in categories),
        deputies=frozenset(r["id"] for r in deputies),
    )


class ReferenceStore:
    """Upserts and retirements of reference records, each with its reference.changed event."""

    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    async def missing_parents(self, kind: Kind, record: dict[str, Any]) -> list[str]:
        missing = []
        for column, table in kind.parents:
            found = await self._pool.fetchval(
                f"SELECT 1 FROM {table} WHERE id = $1 AND retired_at IS NULL", record[column]
            )
            if not found:
                missing.append(column)
        return missing

    async def upsert(
        self, conn: Connection, kind: Kind, record: dict[str, Any], *, by: str, revive: bool
    ) -> EventEnvelope:
        """Insert or update; `revive` also un-retires (the admin API; not the seed)."""
        cols = kind.columns
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
        if revive:
            sets += ", retired_at = NULL"
        placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 2))
        retired = await conn.fetchval(
            f"""INSERT INTO {kind.table} (id, {", ".join(cols)}) VALUES ({placeholders})
                ON CONFLICT (id) DO UPDATE SET {sets} RETURNING retired_at IS NOT NULL""",
            record["id"],
            *(record.get(c) for c in cols),
        )
        data = {c: record.get(c) for c in cols}
        return changed(
            kind.name, record["id"], data, retired=bool(retired), at=datetime.now(UTC), by=by
        )

    async def save(self, kind: Kind, record: dict[str, Any], *, by: str) -> EventEnvelope:
        async with self._pool.acquire() as conn, conn.transaction():
            envelope = await self.upsert(conn, kind, record, by=by, revive=True)
            await add_to_outbox(conn, [envelope], topic_prefix=self._topic_prefix)
        return envelope

    async def retire(self, kind: Kind, record_id: str, *, by: str) -> EventEnvelope | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""UPDATE {kind.table} SET retired_at = coalesce(retired_at, now())
                    WHERE id = $1 RETURNING {", ".join(kind.columns)}""",
                record_id,
            )
            if row is None:
                return None
            envelope = changed(
                kind.name, record_id, dict(row), retired=True, at=datetime.now(UTC), by=by
            )
            await add_to_outbox(conn, [envelope], topic_prefix=self._topic_prefix)
        return envelope

    async def seed(self, ref: ReferenceData) -> str:
        """Load the data file, publishing every record (consumers upsert: idempotent)."""
        async with self._pool.acquire() as conn, conn.transaction():
            envelopes = [
                await self.upsert(conn, KINDS[kind], row.model_dump(), by="seed", revive=False)
                for kind, row in records(ref)
            ]
            await add_to_outbox(conn, envelopes, topic_prefix=self._topic_prefix)
        return (
            f"intake: {len(ref.towns)} towns, {len(ref.stations)} stations, "
            f"{len(ref.categories)} categories, {len(ref.departments)} departments, "
            f"{len(ref.deputies)} deputies ({len(envelopes)} reference.changed events)"
        )
