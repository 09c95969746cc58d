"""Evaluation's SQL. Each handler's writes, its inbox row and its outbox rows commit together.

Case facts are folded in Python (`domain.fold`) under the case row's lock; the KPI counters
get the difference between the case's contribution after and before, in key order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any
from uuid import UUID

from services.evaluation import domain
from services.evaluation.domain import METRICS, CaseFacts, CounterKey, Counts, DepartmentSummary
from services.evaluation.ratings import RatingClaims
from services.evaluation.stations import ActivityReport, StationActivity, months_between
from shared.db.pool import Connection, Pool
from shared.events import (
    Event,
    EventEnvelope,
    HandlingEvaluatedV1,
    RatingInvitedV1,
    SatisfactionRatedV1,
    StationActivityRecordedV1,
)
from shared.messaging.inbox import Delivery, claim_once
from shared.messaging.outbox import add_to_outbox
from shared.reference import ReferenceData

_FACT_COLUMNS = [f.name for f in fields(CaseFacts) if f.name != "case_id"]
_UPDATE_FACTS = (
    "UPDATE case_facts SET "
    + ", ".join(f"{c} = ${i}" for i, c in enumerate(_FACT_COLUMNS, start=2))
    + ", updated_at = now() WHERE case_id = $1"
)
_ALL_FACTS = "SELECT * FROM case_facts"
_APPLY_DELTA = (
    "INSERT INTO kpi_counters (dimension, key, month, "
    + ", ".join(METRICS)
    + ") SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
    + ", ".join(f"${i}::int[]" for i in range(4, 4 + len(METRICS)))
    + ") ON CONFLICT (dimension, key, month) DO UPDATE SET "
    + ", ".join(f"{m} = kpi_counters.{m} + EXCLUDED.{m}" for m in METRICS)
)


@dataclass(frozen=True)
class Invitation:
    """A rating link to create with a case's first completion, and its announcement."""

    case_id: UUID
    opinion_id: UUID
    token_id: str
    expires_at: datetime
    envelope: EventEnvelope


@dataclass(frozen=True)
class RatingOutcome:
    status: str  # created | repeat | expired | unknown
    rating: dict[str, Any] | None = None


async def _fold(conn: Connection, case_id: UUID, event: Event) -> CaseFacts:
    """Fold one event into a case's facts and its delta into the counters (in `conn`'s tx)."""
    await conn.execute(
        "INSERT INTO case_facts (case_id) VALUES ($1) ON CONFLICT DO NOTHING", case_id
    )
    row = await conn.fetchrow("SELECT * FROM case_facts WHERE case_id = $1 FOR UPDATE", case_id)
    assert row is not None
    before = CaseFacts.from_row(dict(row))
    after = domain.fold(before, event)
    if after == before:
        return after
    values = after.as_row()
    await conn.execute(_UPDATE_FACTS, case_id, *(values[c] for c in _FACT_COLUMNS))
    await _add_counts(conn, domain.delta(before, after))
    return after


async def _add_counts(conn: Connection, changes: dict[CounterKey, Counts]) -> None:
    """Add `changes` to the counter rows (created at zero when missing), in key order."""
    if not changes:
        return
    keys = sorted(changes)
    await conn.execute(
        _APPLY_DELTA,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        *([changes[k][m] for k in keys] for m in METRICS),
    )


class EvaluationStore:
    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    # -- consumers ------------------------------------------------------------------------

    async def fold_case_event(
        self,
        delivery: Delivery,
        event_id: UUID,
        case_id: UUID,
        event: Event,
        *,
        invitation: Invitation | None = None,
    ) -> bool:
        """Fold a case's event (once per event id); with its first completion, the rating
        invitation and its `rating.invited`. False if this event was already processed."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, event_id):
                return False
            await _fold(conn, case_id, event)
            if invitation is not None:
                created = await conn.fetchval(
                    """INSERT INTO rating_invitations (case_id, opinion_id, token_id,
                           correlation_id, expires_at)
                       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (case_id) DO NOTHING
                       RETURNING true""",
                    invitation.case_id,
                    invitation.opinion_id,
                    invitation.token_id,
                    invitation.envelope.correlation_id,
                    invitation.expires_at,
                )
                if created:
                    await add_to_outbox(
                        conn, [invitation.envelope], topic_prefix=self._topic_prefix
                    )
        return True

    async def record_activity(
        self, delivery: Delivery, event_id: UUID, e: StationActivityRecordedV1
    ) -> bool:
        """Keep a station's activity record; a later record of the same activity replaces it."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_once(conn, delivery, event_id):
                return False
            await conn.execute(
                """INSERT INTO stations (station_id, town_id) VALUES ($1, $2)
                   ON CONFLICT (station_id) DO NOTHING""",
                e.station_id,
                e.town_id,
            )
            await conn.execute(
                """INSERT INTO station_activities (activity_id, station_id, town_id, kind,
                       activity_date, deputies, visitor_count, issues, recorded_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (activity_id) DO UPDATE SET
                       station_id = EXCLUDED.station_id, town_id = EXCLUDED.town_id,
                       kind = EXCLUDED.kind, activity_date = EXCLUDED.activity_date,
                       deputies = EXCLUDED.deputies, visitor_count = EXCLUDED.visitor_count,
                       issues = EXCLUDED.issues, recorded_at = EXCLUDED.recorded_at
                   WHERE EXCLUDED.recorded_at > station_activities.recorded_at""",
                e.activity_id,
                e.station_id,
                e.town_id,
                e.kind,
                e.activity_date,
                len(set(e.deputy_ids)),
                e.visitor_count,
                len(set(e.opinion_ids)),
                e.recorded_at,
            )
        return True

    # -- ratings --------------------------------------------------------------------------

    async def invitation(self, case_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM rating_invitations WHERE case_id = $1", case_id
        )
        return dict(row) if row else None

    async def rating(self, case_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM ratings WHERE case_id = $1", case_id)
        return dict(row) if row else None

    async def submit_rating(
        self,
        claims: RatingClaims,
        *,
        level: domain.Level,
        score: int | None,
        comment: str | None,
        now: datetime,
        producer: str,
    ) -> RatingOutcome:
        """One rating per case: the first is kept (with `satisfaction.rated` and the KPIs);
        later submissions get it back. An expired link may still show a rating made in time."""
        async with self._pool.acquire() as conn, conn.transaction():
            invitation = await conn.fetchrow(
                "SELECT * FROM rating_invitations WHERE case_id = $1 FOR UPDATE", claims.case_id
            )
            if invitation is None or invitation["token_id"] != claims.token_id:
                return RatingOutcome("unknown")
            existing = await conn.fetchrow(
                "SELECT * FROM ratings WHERE case_id = $1", claims.case_id
            )
            if existing is not None:
                return RatingOutcome("repeat", dict(existing))
            if claims.expired(now):
                return RatingOutcome("expired")
            department_id = await conn.fetchval(
                "SELECT department_id FROM case_facts WHERE case_id = $1", claims.case_id
            )
            event = SatisfactionRatedV1(
                case_id=claims.case_id,
                opinion_id=claims.opinion_id,
                department_id=department_id,
                level=level.value,
                score=score,
                rated_at=now,
                reopen_requested=level is domain.Level.UNSATISFIED,
            )
            envelope = EventEnvelope.wrap(
                event, producer=producer, correlation_id=invitation["correlation_id"]
            )
            row = await conn.fetchrow(
                """INSERT INTO ratings (case_id, opinion_id, department_id, level, score,
                       comment, reopen_requested, event_id, rated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
                claims.case_id,
                claims.opinion_id,
                department_id,
                level.value,
                score,
                comment,
                event.reopen_requested,
                envelope.event_id,
                now,
            )
            await _fold(conn, claims.case_id, event)
            await add_to_outbox(conn, [envelope], topic_prefix=self._topic_prefix)
        assert row is not None
        return RatingOutcome("created", dict(row))

    # -- evaluations of handling (评议) ----------------------------------------------------

    async def handling_evaluation(
        self, case_id: UUID, evaluator_kind: str, evaluator_id: str
    ) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            """SELECT * FROM handling_evaluations
               WHERE case_id = $1 AND evaluator_kind = $2 AND evaluator_id = $3""",
            case_id,
            evaluator_kind,
            evaluator_id,
        )
        return dict(row) if row else None

    async def handling_evaluations(self, case_id: UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT * FROM handling_evaluations WHERE case_id = $1
               ORDER BY evaluated_at, evaluator_kind, evaluator_id""",
            case_id,
        )
        return [dict(r) for r in rows]

    async def record_handling_evaluation(
        self,
        e: HandlingEvaluatedV1,
        envelope: EventEnvelope,
        *,
        evaluated_by: str,
        comment: str | None,
    ) -> dict[str, Any] | None:
        """Insert the evaluation and its event; None if this evaluator already evaluated."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO handling_evaluations (case_id, evaluator_kind, evaluator_id,
                       evaluated_by, department_id, score, comment, event_id, evaluated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT DO NOTHING RETURNING *""",
                e.case_id,
                e.evaluator_kind,
                e.evaluator_id,
                evaluated_by,
                e.department_id,
                e.score,
                comment,
                envelope.event_id,
                e.evaluated_at,
            )
            if row is None:
                return None
            await add_to_outbox(conn, [envelope], topic_prefix=self._topic_prefix)
        return dict(row)

    # -- report-back sessions (述职评议) ----------------------------------------------------

    async def create_session(
        self,
        session_id: UUID,
        *,
        deputy_id: str,
        station_id: str | None,
        held_on: date,
        title: str,
        created_by: str,
    ) -> dict[str, Any]:
        row = await self._pool.fetchrow(
            """INSERT INTO report_back_sessions (session_id, deputy_id, station_id, held_on,
                   title, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
            session_id,
            deputy_id,
            station_id,
            held_on,
            title,
            created_by,
        )
        assert row is not None
        return dict(row)

    async def session(self, session_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM report_back_sessions WHERE session_id = $1", session_id
        )
        return dict(row) if row else None

    async def add_score(
        self, session_id: UUID, voter_ref: str, score: int, recorded_by: str
    ) -> tuple[bool, int]:
        """(True, score) when recorded; (False, the earlier score) for a voter who scored."""
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                """INSERT INTO report_back_scores (session_id, voter_ref, score, recorded_by)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING score""",
                session_id,
                voter_ref,
                score,
                recorded_by,
            )
            if inserted is not None:
                return True, int(inserted)
            earlier = await conn.fetchval(
                "SELECT score FROM report_back_scores WHERE session_id = $1 AND voter_ref = $2",
                session_id,
                voter_ref,
            )
            return False, int(earlier)

    async def session_scores(self, session_id: UUID) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT score FROM report_back_scores WHERE session_id = $1", session_id
        )
        return [int(r["score"]) for r in rows]

    # -- reads ----------------------------------------------------------------------------

    async def case(self, case_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM case_facts WHERE case_id = $1", case_id)
        return dict(row) if row else None

    async def facts(self, case_id: UUID) -> CaseFacts | None:
        row = await self._pool.fetchrow("SELECT * FROM case_facts WHERE case_id = $1", case_id)
        return CaseFacts.from_row(dict(row)) if row else None

    async def all_facts(self) -> list[CaseFacts]:
        return [
            CaseFacts.from_row(dict(r)) for r in await self._pool.fetch("SELECT * FROM case_facts")
        ]

    async def recount_kpis(self) -> int:
        """Rebuild `kpi_counters` from the case facts by the current rules (after a change of
        the rules, e.g. migration 0004, whose request `migrate` honours); returns the rows
        written. Folds wait meanwhile: the facts are read under a SHARE lock, so counters and
        facts stay in step."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE case_facts IN SHARE MODE")
            await conn.execute("LOCK TABLE kpi_counters IN EXCLUSIVE MODE")
            counters: dict[CounterKey, Counts] = {}
            async for r in conn.cursor(_ALL_FACTS):
                for key, counts in domain.contribution(CaseFacts.from_row(dict(r))).items():
                    row = counters.setdefault(key, domain.zero())
                    for m in METRICS:
                        row[m] += counts[m]
            await conn.execute("DELETE FROM kpi_counters")
            await _add_counts(conn, {k: v for k, v in counters.items() if any(v.values())})
            await conn.execute("DELETE FROM kpi_recount_pending")
        return len(counters)

    async def recount_pending(self) -> bool:
        """Whether a migration asked for the counters to be rebuilt (and no recount has yet)."""
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM kpi_recount_pending)"))

    async def counters(self) -> dict[CounterKey, Counts]:
        """Every non-zero counter row (rows that fell back to zero are left out)."""
        out: dict[CounterKey, Counts] = {}
        for r in await self._pool.fetch("SELECT * FROM kpi_counters"):
            counts = {m: int(r[m]) for m in METRICS}
            if any(counts.values()):
                out[(r["dimension"], r["key"], r["month"])] = counts
        return out

    async def kpis(
        self,
        *,
        dimension: str | None = None,
        key: str | None = None,
        month: str | None = None,
        keys: list[str] | None = None,
    ) -> list[domain.Kpi]:
        rows = await self._pool.fetch(
            """SELECT * FROM kpi_counters
               WHERE ($1::text IS NULL OR dimension = $1) AND ($2::text IS NULL OR key = $2)
                 AND ($3::text IS NULL OR month = $3)
                 AND ($4::text[] IS NULL OR key = ANY($4::text[]))
               ORDER BY month, dimension, key""",
            dimension,
            key,
            month,
            keys,
        )
        return [
            domain.Kpi(r["dimension"], r["key"], r["month"], {m: int(r[m]) for m in METRICS})
            for r in rows
        ]

    async def stations_of_town(self, town_id: str) -> list[str]:
        # The stations named by the town's cases, by a loose index scan of
        # case_facts_town_station: one probe per station, not a read of every case.
        rows = await self._pool.fetch(
            """WITH RECURSIVE named AS (
                   (SELECT station_id FROM case_facts
                    WHERE town_id = $1 AND station_id IS NOT NULL
                    ORDER BY station_id LIMIT 1)
                   UNION ALL
                   SELECT (SELECT f.station_id FROM case_facts f
                           WHERE f.town_id = $1 AND f.station_id > named.station_id
                           ORDER BY f.station_id LIMIT 1)
                   FROM named WHERE named.station_id IS NOT NULL
               )
               SELECT station_id FROM stations WHERE town_id = $1
               UNION SELECT station_id FROM named WHERE station_id IS NOT NULL
               ORDER BY 1""",
            town_id,
        )
        return [r["station_id"] for r in rows]

    async def station_activity(
        self, first: date, last: date, *, town_id: str | None = None
    ) -> ActivityReport:
        """Each physical station's activity from `first`'s month to `last`'s month."""
        rows = await self._pool.fetch(
            """SELECT s.station_id, s.town_id,
                      count(a.activity_id) AS activities,
                      count(a.activity_id) FILTER (WHERE a.kind = 'reception') AS batches,
                      coalesce(sum(a.visitor_count) FILTER (WHERE a.kind = 'reception'), 0)
                          AS visitors,
                      coalesce(sum(a.issues), 0) AS issues
               FROM stations s
               LEFT JOIN station_activities a ON a.station_id = s.station_id
                    AND a.activity_date >= date_trunc('month', $1::date)::date
                    AND a.activity_date < (date_trunc('month', $2::date) + interval '1 month')
               WHERE NOT s.online AND ($3::text IS NULL OR s.town_id = $3)
               GROUP BY s.station_id, s.town_id ORDER BY s.station_id""",
            first,
            last,
            town_id,
        )
        return ActivityReport(
            months=months_between(first, last),
            stations=[
                StationActivity(
                    station_id=r["station_id"],
                    town_id=r["town_id"],
                    activities=int(r["activities"]),
                    reception_batches=int(r["batches"]),
                    visitors=int(r["visitors"]),
                    issues=int(r["issues"]),
                )
                for r in rows
            ],
        )

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

    async def seed(self, ref: ReferenceData) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO stations (station_id, town_id, name, online)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (station_id) DO UPDATE SET town_id = EXCLUDED.town_id,
                       name = EXCLUDED.name, online = EXCLUDED.online""",
                [(s.id, s.town_id, s.name, s.online) for s in ref.stations],
            )
            await conn.executemany(
                """INSERT INTO deputies (deputy_id, station_id) VALUES ($1, $2)
                   ON CONFLICT (deputy_id) DO UPDATE SET station_id = EXCLUDED.station_id""",
                [(d.id, d.station_id) for d in ref.deputies],
            )
        return f"evaluation: {len(ref.stations)} stations, {len(ref.deputies)} deputies"

    async def deputy_station(self, deputy_id: str) -> str | None:
        """The station a deputy belongs to; None for a deputy the reference data lacks."""
        station: str | None = await self._pool.fetchval(
            "SELECT station_id FROM deputies WHERE deputy_id = $1", deputy_id
        )
        return station


def invited_event(
    cause: EventEnvelope, *, case_id: UUID, opinion_id: UUID, url: str, expires_at: datetime
) -> EventEnvelope:
    return cause.caused(
        RatingInvitedV1(
            case_id=case_id, opinion_id=opinion_id, rating_url=url, expires_at=expires_at
        ),
        producer="evaluation",
    )
