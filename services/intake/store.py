"""Intake's SQL: reference lookups, opinions (with their outbox rows), idempotency keys,
the voter's stage history, the seed. Every write is one transaction with its outbox rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import orjson

from services.intake.domain import (
    CHINA,
    Grouping,
    Opinion,
    ReceptionDayChange,
    ReferenceSnapshot,
    Stage,
    StationActivity,
    grouped_note,
    history_order,
    scheduled_reception_date,
)
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


@dataclass(frozen=True)
class PendingSave:
    """One request's opinions, its response and its key, waiting for a group commit."""

    opinions: Sequence[Opinion]
    response: dict[str, Any]
    idempotency: IdempotencyKey | None = None


_CLAIM_KEYS = """
INSERT INTO idempotency_keys (scope, key, request_hash, response)
SELECT s, k, h, r::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(s, k, h, r)
ON CONFLICT DO NOTHING RETURNING scope, key"""
_EARLIER_KEYS = """
SELECT i.scope, i.key, i.request_hash, i.response
FROM idempotency_keys i
JOIN unnest($1::text[], $2::text[]) AS t(s, k) ON (i.scope, i.key) = (t.s, t.k)"""


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

    # -- WeChat callbacks: (timestamp, nonce) seen within the freshness window ---------------

    async def claim_wechat_nonce(
        self, timestamp: int, nonce: str, body_sha256: str, *, purge_before: int
    ) -> bool:
        """Remember this signed (timestamp, nonce) with its body's hash. True the first time,
        and again for the very same body (WeChat retrying a push); False for another body (a
        replayed URL). Pairs whose timestamp is before `purge_before` are forgotten."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM wechat_nonces WHERE timestamp < $1", purge_before)
            seen = await conn.fetchval(
                """INSERT INTO wechat_nonces (timestamp, nonce, body_sha256)
                   VALUES ($1, $2, $3)
                   ON CONFLICT (timestamp, nonce) DO UPDATE SET timestamp = EXCLUDED.timestamp
                   RETURNING body_sha256""",
                timestamp,
                nonce,
                body_sha256,
            )
        return bool(seen == body_sha256)

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
            earlier = await _claim(conn, idempotency, response)
            if earlier is not None:
                return earlier
            await conn.executemany(_INSERT_OPINION, [_row(o) for o in opinions])
            await add_to_outbox(
                conn,
                [e for o in opinions for e in o.envelopes()],
                topic_prefix=self._topic_prefix,
            )
        return Saved(response=response, replayed=False)

    async def save_many(self, pending: Sequence[PendingSave]) -> list[Saved | IdempotencyConflict]:
        """Several requests' opinions in ONE transaction (group commit): for each request, in
        order, what `save_opinions` would have given it — Saved (new or replayed) or
        IdempotencyConflict. If anything fails, nothing is written (the caller retries the
        requests one by one). A key used twice in the batch behaves as two requests in a row.
        """
        outcomes: list[Saved | IdempotencyConflict | None] = [None] * len(pending)
        async with self._pool.acquire() as conn, conn.transaction():
            claims: dict[tuple[str, str], int] = {}  # (scope, key) → the first item naming it
            for i, p in enumerate(pending):
                if p.idempotency is not None:
                    claims.setdefault((p.idempotency.scope, p.idempotency.key), i)
            claimed: set[tuple[str, str]] = set()
            if claims:
                order = sorted(claims)  # one lock order for concurrent writers
                first = [pending[claims[k]] for k in order]
                rows = await conn.fetch(
                    _CLAIM_KEYS,
                    [s for s, _ in order],
                    [k for _, k in order],
                    [p.idempotency.request_hash for p in first if p.idempotency],
                    [orjson.dumps(p.response).decode() for p in first],
                )
                claimed = {(r["scope"], r["key"]) for r in rows}
            seen: list[tuple[int, tuple[str, str]]] = []  # keys used before (or earlier here)
            for i, p in enumerate(pending):
                if p.idempotency is not None:
                    k = (p.idempotency.scope, p.idempotency.key)
                    if not (k in claimed and claims[k] == i):
                        seen.append((i, k))
            if seen:
                wanted = sorted({k for _, k in seen})
                earlier = {
                    (r["scope"], r["key"]): r
                    for r in await conn.fetch(
                        _EARLIER_KEYS, [s for s, _ in wanted], [k for _, k in wanted]
                    )
                }
                for i, k in seen:
                    idem = pending[i].idempotency
                    assert idem is not None
                    assert k in earlier
                    if earlier[k]["request_hash"] != idem.request_hash:
                        outcomes[i] = IdempotencyConflict(idem.key)
                    else:
                        outcomes[i] = Saved(response=earlier[k]["response"], replayed=True)
            fresh = [p for p, o in zip(pending, outcomes, strict=True) if o is None]
            if fresh:
                await conn.executemany(
                    _INSERT_OPINION, [_row(o) for p in fresh for o in p.opinions]
                )
                await add_to_outbox(
                    conn,
                    [e for p in fresh for o in p.opinions for e in o.envelopes()],
                    topic_prefix=self._topic_prefix,
                )
        return [
            o if o is not None else Saved(response=p.response, replayed=False)
            for p, o in zip(pending, outcomes, strict=True)
        ]

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
        # The stages of the opinion's own case; never a suggestion's (a case of its own,
        # even where its events once carried a member's correlation id or opinion id).
        stages = await self._pool.fetch(
            """SELECT stage, at, detail FROM case_stages s
               WHERE (s.correlation_id = $1
                      OR s.case_id IN (SELECT case_id FROM case_opinions WHERE opinion_id = $2))
                 AND NOT EXISTS (SELECT 1 FROM case_groupings g
                                 WHERE g.suggestion_case_id = s.case_id)""",
            row["correlation_id"],
            row["id"],
        )
        groupings = await self._pool.fetch(
            "SELECT grouped_at FROM case_groupings WHERE opinion_id = $1 ORDER BY grouped_at",
            row["id"],
        )
        status = {k: v for k, v in dict(row).items() if k not in ("id", "correlation_id")}
        submitted = {"stage": "submitted", "at": row["received_at"], "detail": {}}
        status["history"] = [submitted, *history_order(dict(s) for s in stages)]
        status["stage"] = status["history"][-1]["stage"]
        status["notes"] = [grouped_note(g["grouped_at"]) for g in groupings]
        return status

    # -- stations: activity records, reception days ---------------------------------------

    async def station(self, station_id: str) -> dict[str, Any] | None:
        """A live station's town and published reception day rule."""
        row = await self._pool.fetchrow(
            """SELECT id, town_id, reception_day FROM stations
               WHERE id = $1 AND retired_at IS NULL""",
            station_id,
        )
        return None if row is None else dict(row)

    async def live_deputies(self, ids: Sequence[str]) -> frozenset[str]:
        rows = await self._pool.fetch(
            "SELECT id FROM deputies WHERE id = ANY($1::text[]) AND retired_at IS NULL", list(ids)
        )
        return frozenset(r["id"] for r in rows)

    async def station_opinions(self, station_id: str, ids: Sequence[UUID]) -> frozenset[UUID]:
        """Which of `ids` are opinions taken at `station_id`."""
        rows = await self._pool.fetch(
            "SELECT id FROM opinions WHERE id = ANY($1::uuid[]) AND station_id = $2",
            list(ids),
            station_id,
        )
        return frozenset(r["id"] for r in rows)

    async def save_activity(
        self,
        activity: StationActivity,
        *,
        response: dict[str, Any],
        idempotency: IdempotencyKey | None,
    ) -> Saved:
        """The activity record and its station.activity_recorded event, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            earlier = await _claim(conn, idempotency, response)
            if earlier is not None:
                return earlier
            a = activity
            await conn.execute(
                """INSERT INTO station_activities (id, station_id, town_id, kind, activity_date,
                       deputy_ids, visitor_count, opinion_ids, notes, client_id, recorded_by,
                       recorded_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
                a.activity_id,
                a.station_id,
                a.town_id,
                a.kind.value,
                a.activity_date,
                list(a.deputy_ids),
                a.visitor_count,
                list(a.opinion_ids),
                a.notes,
                a.client_id,
                a.recorded_by,
                a.recorded_at,
            )
            await add_to_outbox(conn, [a.envelope()], topic_prefix=self._topic_prefix)
        return Saved(response=response, replayed=False)

    async def activities(
        self, station_id: str, first: date | None, last: date | None, *, limit: int = 1000
    ) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id AS activity_id, station_id, town_id, kind, activity_date, deputy_ids,
                      visitor_count, opinion_ids, notes, recorded_by, recorded_at
               FROM station_activities
               WHERE station_id = $1
                 AND ($2::date IS NULL OR activity_date >= $2)
                 AND ($3::date IS NULL OR activity_date <= $3)
               ORDER BY activity_date, recorded_at LIMIT $4""",
            station_id,
            first,
            last,
            limit,
        )
        return [dict(r) for r in rows]

    async def reception_day(self, station_id: str, month: str) -> dict[str, Any] | None:
        """The month's latest change of the station's reception day, if any."""
        row = await self._pool.fetchrow(
            """SELECT id, previous_date, new_date, reason, announced_at
               FROM reception_day_changes WHERE station_id = $1 AND month = $2
               ORDER BY seq DESC LIMIT 1""",
            station_id,
            month,
        )
        return None if row is None else dict(row)

    async def move_reception_day(
        self,
        *,
        change_id: UUID,
        station_id: str,
        new_date: date,
        reason: str,
        at: datetime,
        by: str,
    ) -> tuple[ReceptionDayChange, bool] | None:
        """Move the month's reception day (the month of `new_date`) and publish it, in one
        transaction (the station row locked: concurrent moves see each other). Returns the
        change and whether it is new (False: the same date and reason are already current),
        or None for an unknown station."""
        month = f"{new_date.year:04d}-{new_date.month:02d}"
        async with self._pool.acquire() as conn, conn.transaction():
            rule = await conn.fetchrow(
                """SELECT reception_day FROM stations WHERE id = $1 AND retired_at IS NULL
                   FOR UPDATE""",
                station_id,
            )
            if rule is None:
                return None
            latest = await conn.fetchrow(
                """SELECT id, previous_date, new_date, reason, announced_by, announced_at
                   FROM reception_day_changes WHERE station_id = $1 AND month = $2
                   ORDER BY seq DESC LIMIT 1""",
                station_id,
                month,
            )
            if latest is not None and (latest["new_date"], latest["reason"]) == (
                new_date,
                reason,
            ):
                current = ReceptionDayChange(
                    change_id=latest["id"],
                    station_id=station_id,
                    month=month,
                    previous_date=latest["previous_date"],
                    new_date=latest["new_date"],
                    reason=latest["reason"],
                    announced_at=latest["announced_at"],
                    announced_by=latest["announced_by"],
                )
                return current, False
            previous = (
                latest["new_date"]
                if latest is not None
                else scheduled_reception_date(rule["reception_day"], new_date.year, new_date.month)
            )
            change = ReceptionDayChange(
                change_id=change_id,
                station_id=station_id,
                month=month,
                previous_date=previous,
                new_date=new_date,
                reason=reason,
                announced_at=at,
                announced_by=by,
            )
            await conn.execute(
                """INSERT INTO reception_day_changes (id, station_id, month, previous_date,
                       new_date, reason, announced_by, announced_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                change.change_id,
                station_id,
                month,
                change.previous_date,
                new_date,
                reason,
                by,
                at,
            )
            await add_to_outbox(conn, [change.envelope()], topic_prefix=self._topic_prefix)
        return change, True

    # -- the operator console ---------------------------------------------------------------

    async def town_exists(self, town_id: str) -> bool:
        found: bool = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM towns WHERE id = $1)", town_id
        )
        return found

    async def station_exists(self, station_id: str) -> bool:
        found: bool = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM stations WHERE id = $1)", station_id
        )
        return found

    async def opinion_counts(
        self, first: date, last: date, *, station_id: str | None, town_id: str | None
    ) -> list[tuple[date, str, int]]:
        """(day in Wenling, channel, opinions) by when the voter raised them; no content."""
        rows = await self._pool.fetch(
            """SELECT (submitted_at AT TIME ZONE 'Asia/Shanghai')::date AS day, channel,
                      count(*)::int AS n
               FROM opinions
               WHERE submitted_at >= $1 AND submitted_at < $2
                 AND ($3::text IS NULL OR station_id = $3)
                 AND ($4::text IS NULL OR town_id = $4)
               GROUP BY 1, 2 ORDER BY 1, 2""",
            _china_midnight(first),
            _china_midnight(last + timedelta(days=1)),
            station_id,
            town_id,
        )
        return [(r["day"], r["channel"], r["n"]) for r in rows]

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

    async def record_grouping(self, delivery: Delivery, event_id: UUID, grouping: Grouping) -> bool:
        """Opinions gathered into a suggestion, once per event; False if seen before. The
        earliest grouping time of an opinion into a suggestion is kept."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, event_id):
                return False
            await conn.executemany(
                """INSERT INTO case_groupings (suggestion_case_id, opinion_id, grouped_at)
                   VALUES ($1, $2, $3)
                   ON CONFLICT (suggestion_case_id, opinion_id) DO UPDATE
                   SET grouped_at = least(case_groupings.grouped_at, EXCLUDED.grouped_at)""",
                [(grouping.suggestion_case_id, o, grouping.at) for o in grouping.opinion_ids],
            )
        return True


async def _claim(
    conn: Connection, idempotency: IdempotencyKey | None, response: dict[str, Any]
) -> Saved | None:
    """Claim the key in the caller's transaction: None (first use: go on and write), the
    first response (a retry of the same request), or IdempotencyConflict."""
    if idempotency is None:
        return None
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_keys (scope, key, request_hash, response)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
        idempotency.scope,
        idempotency.key,
        idempotency.request_hash,
        response,
    )
    if claimed:
        return None
    earlier = await conn.fetchrow(
        "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
        idempotency.scope,
        idempotency.key,
    )
    assert earlier is not None
    if earlier["request_hash"] != idempotency.request_hash:
        raise IdempotencyConflict(idempotency.key)
    return Saved(response=earlier["response"], replayed=True)


def _china_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), CHINA)


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
    """Upserts and retirements of reference records, each with its reference.changed event.

    `on_change` is called after each committed change (intake's reference cache forgets its
    snapshot)."""

    def __init__(
        self, pool: Pool, *, topic_prefix: str = "", on_change: Callable[[], None] | None = None
    ) -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

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
        self._changed()
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
        self._changed()
        return envelope

    async def seed(self, ref: ReferenceData) -> str:
        """Load the data file, publishing every record (consumers upsert: idempotent)."""
        async with self._pool.acquire() as conn, conn.transaction():
            envelopes = [
                await self.upsert(conn, KINDS[kind], row.model_dump(), by="seed", revive=False)
                for kind, row in records(ref)
            ]
            await add_to_outbox(conn, envelopes, topic_prefix=self._topic_prefix)
        self._changed()
        return (
            f"intake: {len(ref.towns)} towns, {len(ref.stations)} stations, "
            f"{len(ref.categories)} categories, {len(ref.departments)} departments, "
            f"{len(ref.deputies)} deputies ({len(envelopes)} reference.changed events)"
        )
