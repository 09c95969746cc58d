"""Notification's SQL: contacts, deliveries (planned, claimed, attempted, finished), the voter
contacts, delivery reports and the events they cause (through the outbox, same transaction)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from services.notification import domain
from services.notification.delivery_rules import RateLimit, next_allowed
from shared.db.pool import Connection, Pool
from shared.events import EventEnvelope, VoterContactRecordedV1
from shared.messaging.inbox import Delivery, claim_once
from shared.messaging.outbox import add_to_outbox
from shared.reference import ReferenceData


@dataclass(frozen=True)
class Address:
    """Where one delivery goes (personal data: never logged)."""

    phone: str | None
    openid: str | None
    wechat_opted_in: bool


@dataclass(frozen=True)
class Reserved:
    attempt: int
    uncertain: bool  # an earlier call's outcome is unknown (its sender died)


@dataclass(frozen=True)
class Deferred:
    until: datetime


@dataclass(frozen=True)
class Unresolved:
    """An attempt recorded before its provider call whose outcome never was: its sender died
    (or lost its lease) during the call."""

    attempt: int
    provider: str
    started_at: datetime
    lookups: int  # failed provider queries about it so far


class NotificationStore:
    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    # ------------------------------------------------------------------ planning

    async def plan_event(
        self,
        delivery: Delivery,
        envelope: EventEnvelope,
        planner: Callable[[domain.Directory], list[domain.PlannedDelivery]],
        audiences: Collection[str] = domain.ALL_AUDIENCES,
    ) -> list[domain.PlannedDelivery] | None:
        """Plan the deliveries an event calls for; None if this event was seen before."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, envelope.event_id):
                return None
            planned = planner(await self._directory(conn, envelope, audiences))
            await self._insert(conn, envelope, planned)
        return planned

    async def plan(
        self,
        delivery: Delivery,
        envelope: EventEnvelope,
        planned: Sequence[domain.PlannedDelivery],
    ) -> bool:
        """Record already planned deliveries; False if this event was seen before."""
        result = await self.plan_event(delivery, envelope, lambda _d: list(planned))
        return result is not None

    async def _directory(
        self, conn: Connection, envelope: EventEnvelope, audiences: Collection[str]
    ) -> domain.Directory:
        staff: dict[str, list[str]] = {}
        for row in await conn.fetch(
            """SELECT group_ref, recipient_ref FROM contacts
               WHERE recipient_kind = $1 AND group_ref IS NOT NULL
               ORDER BY recipient_ref""",
            domain.STATION_STAFF,
        ):
            staff.setdefault(row["group_ref"], []).append(row["recipient_ref"])
        committee = [
            r["recipient_ref"]
            for r in await conn.fetch(
                "SELECT recipient_ref FROM contacts WHERE recipient_kind = $1 ORDER BY 1",
                domain.COMMITTEE,
            )
        ]
        voter: domain.VoterReach | None = None
        opinion_id = domain.voter_opinion_id(envelope, audiences)
        if opinion_id is not None:
            found = await conn.fetchrow(
                """SELECT phone_e164, wechat_openid, wechat_opted_in FROM voter_contacts
                   WHERE opinion_id = $1""",
                opinion_id,
            )
            if found is not None:
                voter = domain.VoterReach(
                    has_phone=bool(found["phone_e164"]),
                    has_wechat=bool(found["wechat_openid"]) and bool(found["wechat_opted_in"]),
                )
        return domain.Directory(station_staff=staff, committee=committee, voter=voter)

    async def _insert(
        self,
        conn: Connection,
        envelope: EventEnvelope,
        planned: Sequence[domain.PlannedDelivery],
        *,
        fallback_of: UUID | None = None,
    ) -> None:
        if not planned:
            return
        await conn.executemany(
            """INSERT INTO deliveries (id, source_event_id, correlation_id, case_id,
                   recipient_kind, recipient_ref, channel, template, params, urgent, fallback_of)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
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
                    p.urgent,
                    fallback_of,
                )
                for p in planned
            ],
        )

    async def record_voter_contact(
        self, delivery: Delivery, envelope: EventEnvelope, contact: VoterContactRecordedV1
    ) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, envelope.event_id):
                return False
            await conn.execute(
                """INSERT INTO voter_contacts (opinion_id, phone_e164, wechat_openid,
                       wechat_opted_in, recorded_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (opinion_id) DO UPDATE SET
                       phone_e164 = COALESCE(EXCLUDED.phone_e164, voter_contacts.phone_e164),
                       wechat_openid = COALESCE(EXCLUDED.wechat_openid,
                                                voter_contacts.wechat_openid),
                       wechat_opted_in = EXCLUDED.wechat_opted_in,
                       recorded_at = EXCLUDED.recorded_at""",
                contact.opinion_id,
                contact.phone_e164,
                contact.wechat_openid,
                contact.wechat_opted_in,
                envelope.occurred_at,
            )
        return True

    # ------------------------------------------------------------------ dispatching

    async def claim_due(
        self, *, now: datetime, limit: int, lease: timedelta, channels: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Claim due deliveries of these channels (or whose sender's lease ran out)."""
        if not channels:
            return []
        rows = await self._pool.fetch(
            """WITH due AS (
                   SELECT id FROM deliveries
                   WHERE channel = ANY($3::text[])
                     AND ((status = 'pending' AND next_attempt_at <= $1)
                          OR (status = 'sending' AND lease_until < $1))
                   ORDER BY next_attempt_at LIMIT $2
                   FOR UPDATE SKIP LOCKED)
               UPDATE deliveries d SET status = 'sending', lease_until = $1 + $4::interval
               FROM due WHERE d.id = due.id
               RETURNING d.*""",
            now,
            limit,
            list(channels),
            lease,
        )
        return sorted((dict(r) for r in rows), key=lambda r: r["next_attempt_at"])

    async def address_of(self, row: dict[str, Any]) -> Address:
        if row["recipient_kind"] == domain.VOTER:
            found = await self._pool.fetchrow(
                """SELECT phone_e164, wechat_openid, wechat_opted_in FROM voter_contacts
                   WHERE opinion_id = $1::uuid""",
                row["recipient_ref"],
            )
            if found is None:
                return Address(None, None, False)
            return Address(
                found["phone_e164"], found["wechat_openid"], bool(found["wechat_opted_in"])
            )
        phone = await self._pool.fetchval(
            "SELECT phone FROM contacts WHERE recipient_kind = $1 AND recipient_ref = $2",
            row["recipient_kind"],
            row["recipient_ref"],
        )
        return Address(phone, None, False)

    async def defer(
        self, delivery_id: UUID, *, until: datetime, reason: str, error: str | None = None
    ) -> None:
        """Put a claimed delivery back until `until`; not an attempt."""
        await self._pool.execute(
            """UPDATE deliveries SET status = 'pending', lease_until = NULL,
                   next_attempt_at = $2, deferred_reason = $3,
                   last_error = COALESCE($4, last_error)
               WHERE id = $1 AND status = 'sending'""",
            delivery_id,
            until,
            reason,
            error,
        )

    async def unresolved_attempt(self, delivery_id: UUID) -> Unresolved | None:
        """The delivery's attempt without outcome, if any (at most one: `reserve` closes any
        before it opens the next)."""
        row = await self._pool.fetchrow(
            """SELECT attempt, provider, started_at, lookups FROM delivery_attempts
               WHERE delivery_id = $1 AND outcome IS NULL
               ORDER BY attempt DESC LIMIT 1""",
            delivery_id,
        )
        if row is None:
            return None
        return Unresolved(
            int(row["attempt"]), str(row["provider"]), row["started_at"], int(row["lookups"])
        )

    async def record_not_sent(self, delivery_id: UUID, attempt: int, *, now: datetime) -> bool:
        """The provider has no trace of this attempt: it never went (the next may go)."""
        done = await self._pool.fetchval(
            """UPDATE delivery_attempts SET outcome = 'not_sent', code = 'NOT_FOUND',
                   finished_at = $3, reconciled_at = $3
               WHERE delivery_id = $1 AND attempt = $2 AND outcome IS NULL RETURNING 1""",
            delivery_id,
            attempt,
            now,
        )
        return done is not None

    async def defer_lookup(
        self,
        delivery_id: UUID,
        attempt: int,
        *,
        until: datetime,
        reason: str,
        error: str | None = None,
        failed: bool = False,
    ) -> None:
        """Ask the provider about this attempt again at `until` (not an attempt either)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if failed:
                await conn.execute(
                    """UPDATE delivery_attempts SET lookups = lookups + 1
                       WHERE delivery_id = $1 AND attempt = $2""",
                    delivery_id,
                    attempt,
                )
            await conn.execute(
                """UPDATE deliveries SET status = 'pending', lease_until = NULL,
                       next_attempt_at = $2, deferred_reason = $3,
                       last_error = COALESCE($4, last_error)
                   WHERE id = $1 AND status = 'sending'""",
                delivery_id,
                until,
                reason,
                error,
            )

    async def reserve(
        self,
        delivery_id: UUID,
        *,
        now: datetime,
        channel: str,
        provider: str,
        rate_key: str | None,
        limits: Sequence[RateLimit],
    ) -> Reserved | Deferred | None:
        """Record the attempt before the provider call (committed), within the per-number
        limits: the number's counter is locked, checked and taken in one transaction.
        None if the delivery is no longer ours (its lease expired and another took it)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if rate_key is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", rate_key)
            uncertain = await conn.fetch(
                """UPDATE delivery_attempts SET outcome = 'unknown', finished_at = $2
                   WHERE delivery_id = $1 AND outcome IS NULL RETURNING attempt""",
                delivery_id,
                now,
            )
            if rate_key is not None and limits:
                longest = timedelta(seconds=max(limit.window_s for limit in limits))
                sent = await conn.fetch(
                    """SELECT started_at FROM delivery_attempts
                       WHERE rate_key = $1 AND started_at > $2
                         AND (outcome IS NULL OR outcome IN ('sent', 'unknown'))""",
                    rate_key,
                    now - longest,
                )
                until = next_allowed([r["started_at"] for r in sent], now, limits)
                if until is not None:
                    await conn.execute(
                        """UPDATE deliveries SET status = 'pending', lease_until = NULL,
                               next_attempt_at = $2, deferred_reason = 'rate_limit'
                           WHERE id = $1""",
                        delivery_id,
                        until,
                    )
                    return Deferred(until)
            attempt = await conn.fetchval(
                """UPDATE deliveries SET attempts = attempts + 1, deferred_reason = NULL
                   WHERE id = $1 AND status = 'sending' RETURNING attempts""",
                delivery_id,
            )
            if attempt is None:
                return None
            await conn.execute(
                """INSERT INTO delivery_attempts (delivery_id, attempt, channel, provider,
                       rate_key, started_at)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                delivery_id,
                attempt,
                channel,
                provider,
                rate_key,
                now,
            )
        return Reserved(attempt=int(attempt), uncertain=bool(uncertain))

    async def _finish_attempt(
        self,
        conn: Connection,
        delivery_id: UUID,
        attempt: int,
        *,
        outcome: str,
        code: str,
        now: datetime,
        provider_message_id: str | None = None,
        reconciled: bool = False,
    ) -> None:
        await conn.execute(
            """UPDATE delivery_attempts SET outcome = $3, code = $4, finished_at = $5,
                   provider_message_id = $6,
                   reconciled_at = CASE WHEN $7 THEN $5 ELSE reconciled_at END
               WHERE delivery_id = $1 AND attempt = $2""",
            delivery_id,
            attempt,
            outcome,
            code,
            now,
            provider_message_id,
            reconciled,
        )

    async def mark_sent(
        self,
        delivery_id: UUID,
        *,
        attempt: int,
        provider: str,
        provider_message_id: str | None,
        sent_at: datetime,
        event: EventEnvelope,
        code: str = "OK",
        reconciled: bool = False,
    ) -> bool:
        """Sent: the attempt and the delivery, and notification.sent in the outbox.
        `reconciled`: learnt from the provider's records after its sender died."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._finish_attempt(
                conn,
                delivery_id,
                attempt,
                outcome="sent",
                code=code,
                now=sent_at,
                provider_message_id=provider_message_id,
                reconciled=reconciled,
            )
            updated = await conn.fetchval(
                """UPDATE deliveries SET status = 'sent', provider = $3,
                       provider_message_id = $4, sent_at = $5, lease_until = NULL,
                       last_error = NULL, error_code = NULL, deferred_reason = NULL
                   WHERE id = $1 AND attempts = $2 AND status <> 'sent' RETURNING id""",
                delivery_id,
                attempt,
                provider,
                provider_message_id,
                sent_at,
            )
            if updated is None:
                return False
            await add_to_outbox(conn, [event], topic_prefix=self._topic_prefix)
        return True

    async def mark_retry(
        self,
        delivery_id: UUID,
        *,
        attempt: int,
        provider: str,
        code: str,
        error: str,
        now: datetime,
        next_at: datetime,
        uncertain: bool = False,
    ) -> None:
        """Try again at `next_at`. An `uncertain` attempt (no answer: it may have gone) keeps
        no outcome, so the next try asks the provider first (`unresolved_attempt`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not uncertain:
                await self._finish_attempt(
                    conn, delivery_id, attempt, outcome="retry", code=code, now=now
                )
            await conn.execute(
                """UPDATE deliveries SET status = 'pending', lease_until = NULL,
                       last_error = $3, error_code = $4, provider = $5,
                       next_attempt_at = $6, deferred_reason = 'backoff'
                   WHERE id = $1 AND attempts = $2 AND status = 'sending'""",
                delivery_id,
                attempt,
                error,
                code,
                provider,
                next_at,
            )

    async def mark_failed(
        self,
        delivery_id: UUID,
        *,
        attempt: int | None,
        provider: str | None,
        code: str,
        error: str,
        now: datetime,
        event: EventEnvelope,
        fallback: tuple[EventEnvelope, domain.PlannedDelivery] | None = None,
    ) -> bool:
        """Failed for good: recorded, notification.failed in the outbox, and where the
        voter can be reached otherwise, the fallback delivery planned — one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            if attempt is not None:
                await self._finish_attempt(
                    conn, delivery_id, attempt, outcome="failed", code=code, now=now
                )
            updated = await conn.fetchval(
                """UPDATE deliveries SET status = 'failed', lease_until = NULL,
                       last_error = $2, error_code = $3, provider = COALESCE($4, provider),
                       failed_at = $5, deferred_reason = NULL
                   WHERE id = $1 AND status = 'sending' RETURNING id""",
                delivery_id,
                error,
                code,
                provider,
                now,
            )
            if updated is None:
                return False
            await add_to_outbox(conn, [event], topic_prefix=self._topic_prefix)
            if fallback is not None:
                source, planned = fallback
                await self._insert(conn, source, [planned], fallback_of=delivery_id)
        return True

    # ------------------------------------------------------------------ reports

    async def record_report(
        self,
        *,
        provider: str,
        provider_message_id: str,
        delivered: bool,
        status_code: str,
        reported_at: datetime,
        make_event: Callable[[UUID, UUID | None, UUID], EventEnvelope],
        out_id: tuple[UUID, int] | None = None,
    ) -> str:
        """A provider's status report: recorded once; notification.delivered for a known
        message. Returns 'recorded', 'duplicate' or 'unknown'.

        `out_id` (delivery, attempt) from the report: a message found by reconciliation was
        recorded without the provider's id (Aliyun's query has none); the report fills it in."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT id, case_id, correlation_id FROM deliveries
                   WHERE provider = $1 AND provider_message_id = $2""",
                provider,
                provider_message_id,
            )
            if row is None and out_id is not None:
                row = await conn.fetchrow(
                    """UPDATE deliveries SET provider_message_id = $3
                       WHERE id = $1 AND provider = $2 AND provider_message_id IS NULL
                         AND status = 'sent'
                       RETURNING id, case_id, correlation_id""",
                    out_id[0],
                    provider,
                    provider_message_id,
                )
                if row is not None:
                    await conn.execute(
                        """UPDATE delivery_attempts SET provider_message_id = $3
                           WHERE delivery_id = $1 AND attempt = $2
                             AND provider_message_id IS NULL""",
                        out_id[0],
                        out_id[1],
                        provider_message_id,
                    )
            inserted = await conn.fetchval(
                """INSERT INTO delivery_reports (provider, provider_message_id, delivery_id,
                       delivered, status_code, reported_at)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT DO NOTHING RETURNING 1""",
                provider,
                provider_message_id,
                row["id"] if row else None,
                delivered,
                status_code,
                reported_at,
            )
            if inserted is None:
                return "duplicate"
            if row is None:
                return "unknown"
            await conn.execute(
                """UPDATE deliveries SET report_status = $2, reported_at = $3 WHERE id = $1""",
                row["id"],
                status_code,
                reported_at,
            )
            event = make_event(row["id"], row["case_id"], row["correlation_id"])
            await add_to_outbox(conn, [event], topic_prefix=self._topic_prefix)
        return "recorded"

    # ------------------------------------------------------------------ reads, seed

    async def deliveries_for_case(self, case_id: UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, source_event_id, recipient_kind, recipient_ref, channel, template,
                      status, attempts, provider, provider_message_id, last_error,
                      error_code, deferred_reason, next_attempt_at, report_status,
                      created_at, sent_at
               FROM deliveries WHERE case_id = $1 ORDER BY created_at, id""",
            case_id,
        )
        return [dict(r) for r in rows]

    async def seed(self, ref: ReferenceData, staff: Sequence[dict[str, str]] = ()) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO contacts (recipient_kind, recipient_ref, name, phone)
                   VALUES ('department', $1, $2, $3)
                   ON CONFLICT (recipient_kind, recipient_ref)
                   DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone""",
                [(d.id, d.contact_name, d.contact_phone) for d in ref.departments],
            )
            await conn.executemany(
                """INSERT INTO contacts (recipient_kind, recipient_ref, name, phone, group_ref)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (recipient_kind, recipient_ref)
                   DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone,
                                 group_ref = EXCLUDED.group_ref""",
                [(s["kind"], s["ref"], s["name"], s["phone"], s.get("group")) for s in staff],
            )
        return (
            f"notification: {len(ref.departments)} department contacts, "
            f"{len(staff)} station and committee contacts"
        )
