"""Routing's SQL. `unit_of_work()` is one transaction: commit on success, roll back otherwise.

Every state change goes through `RoutingTx.apply(outcome)`: the case row, its audit rows, the
outbox rows of its events and its timer changes are written in the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from services.routing.domain import (
    CaseKind,
    CaseRecord,
    CaseState,
    Classification,
    DeadlineKind,
    KeywordRule,
    Outcome,
    RoutingRule,
    WorkCalendar,
)
from services.routing.domain.calendar import CHINA, chinese_calendar_years, official_days
from services.routing.domain.lifecycle import DueTimer, timer_event
from shared.db.pool import Connection, Pool
from shared.events import EventEnvelope
from shared.failpoints import failpoint
from shared.messaging.batch import batch_memo
from shared.messaging.inbox import Delivery, claim_once
from shared.messaging.outbox import add_to_outbox
from shared.reference import ReferenceData

SERVICE = "routing"
NEW_TASK_CHANNEL = "routing_new_task"
CASE_COLUMNS = tuple(f.name for f in dataclasses.fields(CaseRecord))
_ENUMS = {"kind": CaseKind, "state": CaseState, "classification": Classification}
T = TypeVar("T")


def record_of(row: asyncpg.Record | dict[str, Any]) -> CaseRecord:
    values = {c: row[c] for c in CASE_COLUMNS}
    for column, enum in _ENUMS.items():
        values[column] = enum(values[column])
    return CaseRecord(**values)


def _row_of(case: CaseRecord) -> list[Any]:
    return [getattr(case, c).value if c in _ENUMS else getattr(case, c) for c in CASE_COLUMNS]


class CaseNotFound(Exception):
    pass


class RoutingTx:
    """The writes and reads of one handler, inside one transaction."""

    def __init__(self, conn: Connection, topic_prefix: str) -> None:
        self.conn = conn
        self._topic_prefix = topic_prefix

    async def claim(self, delivery: Delivery, event_id: UUID) -> bool:
        return await claim_once(self.conn, delivery, event_id)

    async def publish(self, *envelopes: EventEnvelope) -> None:
        await add_to_outbox(self.conn, envelopes, topic_prefix=self._topic_prefix)

    # ---- reference data ---------------------------------------------------------------------
    # Read once per consumed batch (shared/messaging/batch.py), else once per call.

    async def _once_per_batch(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        memo = batch_memo()
        if memo is None:
            return await load()
        if key not in memo:
            memo[key] = await load()
        value: T = memo[key]
        return value

    async def routing_rules(self) -> list[RoutingRule]:
        async def load() -> list[RoutingRule]:
            rows = await self.conn.fetch(
                "SELECT category_id, town_id, department_id, priority FROM routing_rules"
            )
            return [RoutingRule(**dict(r)) for r in rows]

        return await self._once_per_batch("routing_rules", load)

    async def triage_rules(self) -> list[KeywordRule]:
        async def load() -> list[KeywordRule]:
            rows = await self.conn.fetch(
                "SELECT keyword, category_id, major, priority FROM triage_rules ORDER BY id"
            )
            return [KeywordRule(**dict(r)) for r in rows]

        return await self._once_per_batch("triage_rules", load)

    async def fallback_department(self) -> str:
        async def load() -> object:
            return await self.conn.fetchval(
                "SELECT value FROM routing_config WHERE key = 'fallback_department_id'"
            )

        value = await self._once_per_batch("fallback_department", load)
        if value is None:
            raise RuntimeError("routing has no fallback department: run `seed`")
        return str(value)

    async def kind_of(self, category_id: str | None) -> CaseKind:
        async def load() -> str | None:
            kind: str | None = await self.conn.fetchval(
                "SELECT kind FROM category_kinds WHERE category_id = $1", category_id
            )
            return kind

        kind = await self._once_per_batch(("kind_of", category_id), load)
        return CaseKind(kind) if kind else CaseKind.GENERAL

    async def department_exists(self, department_id: str) -> bool:
        return bool(
            await self.conn.fetchval("SELECT 1 FROM departments WHERE id = $1", department_id)
        )

    async def calendar(self, start: datetime, until: datetime | None = None) -> WorkCalendar:
        """The working-calendar rows a deadline from `start` (to `until`) may look at."""
        first = start.astimezone(CHINA).date() - timedelta(days=1)
        last = max(first + timedelta(days=120), (until or start).astimezone(CHINA).date())

        async def load() -> WorkCalendar:
            rows = await self.conn.fetch(
                "SELECT day, is_working FROM working_calendar WHERE day BETWEEN $1 AND $2",
                first,
                last + timedelta(days=60),
            )
            return WorkCalendar({r["day"]: r["is_working"] for r in rows})

        return await self._once_per_batch(("calendar", first, last), load)

    # ---- cases ------------------------------------------------------------------------------

    async def case_for_opinion(self, opinion_id: UUID) -> UUID | None:
        found: UUID | None = await self.conn.fetchval(
            "SELECT id FROM cases WHERE opinion_id = $1", opinion_id
        )
        return found

    async def lock_case(self, case_id: UUID) -> CaseRecord:
        row = await self.conn.fetchrow("SELECT * FROM cases WHERE id = $1 FOR UPDATE", case_id)
        if row is None:
            raise CaseNotFound(str(case_id))
        return record_of(row)

    async def apply(
        self,
        outcome: Outcome,
        *,
        now: datetime,
        new: bool = False,
        cause: EventEnvelope | None = None,
    ) -> list[EventEnvelope]:
        """Write one outcome: case row, audit rows, outbox rows, timer changes."""
        case = outcome.case
        envelopes: list[EventEnvelope] = []
        for event in outcome.events:
            # The case's own story (a suggestion's differs from the opinion that caused it).
            envelopes.append(
                EventEnvelope.wrap(
                    event,
                    producer=SERVICE,
                    correlation_id=case.correlation_id,
                    causation_id=cause.event_id if cause is not None else None,
                )
            )
        if new:
            columns = ", ".join(CASE_COLUMNS)
            marks = ", ".join(f"${i}" for i in range(1, len(CASE_COLUMNS) + 1))
            await self.conn.execute(
                f"INSERT INTO cases ({columns}) VALUES ({marks})", *_row_of(case)
            )
        else:
            sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(CASE_COLUMNS[1:], start=2))
            await self.conn.execute(
                f"UPDATE cases SET {sets}, updated_at = now() WHERE id = $1", *_row_of(case)
            )
        by_event = {id(e): env for e, env in zip(outcome.events, envelopes, strict=True)}
        await self.conn.executemany(
            """INSERT INTO case_transitions (case_id, from_state, to_state, actor, actor_role,
                   reason, event_id, at, department_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (
                    case.id,
                    s.from_state.value if s.from_state else None,
                    s.to_state.value,
                    outcome.actor.subject,
                    outcome.actor.role,
                    s.reason,
                    by_event[id(s.event)].event_id,
                    now,
                    case.department_id,
                )
                for s in outcome.steps
            ],
        )
        if outcome.cancel_timers:
            await self.conn.execute(
                """DELETE FROM deadline_timers
                   WHERE case_id = $1 AND fired_at IS NULL AND deadline = ANY($2::text[])""",
                case.id,
                [d.value for d in outcome.cancel_timers],
            )
        if outcome.plan:
            await self.conn.executemany(
                """INSERT INTO deadline_timers (case_id, deadline, action, deadline_due_at,
                       due_at, dedupe_key, event_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe_key) DO NOTHING""",
                [
                    (
                        t.case_id,
                        t.deadline.value,
                        t.action.value,
                        t.deadline_due_at,
                        t.due_at,
                        t.dedupe_key,
                        t.event_id,
                    )
                    for t in outcome.plan
                ],
            )
        if any(s.to_state is CaseState.ASSIGNED for s in outcome.steps):
            await self.conn.execute(
                "SELECT pg_notify($1, $2)",
                NEW_TASK_CHANNEL,
                json.dumps({"department_id": case.department_id, "case_id": str(case.id)}),
            )
        await self.publish(*envelopes)
        return envelopes

    # ---- common problems --------------------------------------------------------------------

    async def unlinked_similar(
        self, category_id: str, town_id: str, since: datetime
    ) -> list[tuple[UUID, UUID]]:
        """(case id, opinion id) of individual cases of this category and town since `since`
        that no aggregated suggestion links yet, oldest first."""
        rows = await self.conn.fetch(
            """SELECT c.id, c.opinion_id FROM cases c
               WHERE c.classification = 'individual' AND c.category_id = $1
                 AND c.town_id = $2 AND c.assigned_at >= $3 AND c.opinion_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM case_links l WHERE l.case_id = c.id)
               ORDER BY c.assigned_at, c.id""",
            category_id,
            town_id,
            since,
        )
        return [(r["id"], r["opinion_id"]) for r in rows]

    async def open_aggregate(self, category_id: str, town_id: str, since: datetime) -> UUID | None:
        found: UUID | None = await self.conn.fetchval(
            """SELECT a.id FROM cases a
               WHERE a.classification = 'common' AND a.category_id = $1 AND a.town_id = $2
                 AND a.state NOT IN ('completed', 'evaluated', 'closed')
                 AND EXISTS (SELECT 1 FROM case_links l WHERE l.aggregate_case_id = a.id
                             AND l.linked_at >= $3)
               ORDER BY a.id LIMIT 1""",
            category_id,
            town_id,
            since,
        )
        return found

    async def link(
        self, aggregate_id: UUID, links: Sequence[tuple[UUID, UUID]], now: datetime
    ) -> None:
        await self.conn.executemany(
            """INSERT INTO case_links (aggregate_case_id, case_id, opinion_id, linked_at)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [(aggregate_id, case_id, opinion_id, now) for case_id, opinion_id in links],
        )


class RoutingStore:
    def __init__(self, pool: Pool, *, topic_prefix: str = "") -> None:
        self._pool = pool
        self._topic_prefix = topic_prefix

    @property
    def pool(self) -> Pool:
        return self._pool

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[RoutingTx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield RoutingTx(conn, self._topic_prefix)

    # ---- reads ------------------------------------------------------------------------------

    async def case_record(self, case_id: UUID) -> CaseRecord | None:
        row = await self._pool.fetchrow("SELECT * FROM cases WHERE id = $1", case_id)
        return None if row is None else record_of(row)

    async def case(self, case_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            """SELECT c.*, d.name AS department_name FROM cases c
               JOIN departments d ON d.id = c.department_id WHERE c.id = $1""",
            case_id,
        )
        if row is None:
            return None
        transitions = await self._pool.fetch(
            """SELECT from_state, to_state, actor, actor_role, reason, at, department_id
               FROM case_transitions WHERE case_id = $1 ORDER BY id""",
            case_id,
        )
        links = await self._pool.fetch(
            """SELECT case_id, opinion_id FROM case_links WHERE aggregate_case_id = $1
               ORDER BY linked_at, case_id""",
            case_id,
        )
        part_of = await self._pool.fetchval(
            "SELECT aggregate_case_id FROM case_links WHERE case_id = $1", case_id
        )
        return {
            **dict(row),
            "transitions": [dict(t) for t in transitions],
            "linked_cases": [dict(x) for x in links],
            "aggregate_case_id": part_of,
        }

    async def case_id_for_opinion(self, opinion_id: UUID) -> UUID | None:
        found: UUID | None = await self._pool.fetchval(
            "SELECT id FROM cases WHERE opinion_id = $1", opinion_id
        )
        return found

    async def department_queue(
        self, department_id: str, states: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        """The department's cases in `states`, the next deadline first."""
        rows = await self._pool.fetch(
            """SELECT id, receipt_code, state, kind, category_id, town_id, station_id,
                      classification, is_invitation, assigned_at, acknowledge_due_at,
                      complete_due_at,
                      CASE WHEN state = 'assigned' THEN acknowledge_due_at
                           ELSE complete_due_at END AS next_due_at
               FROM cases WHERE department_id = $1 AND state = ANY($2::text[])
               ORDER BY next_due_at NULLS LAST, id LIMIT $3""",
            department_id,
            list(states),
            limit,
        )
        return [dict(r) for r in rows]

    async def department_exists(self, department_id: str) -> bool:
        return bool(
            await self._pool.fetchval("SELECT 1 FROM departments WHERE id = $1", department_id)
        )

    async def returns_by_department(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            """SELECT department_id, count(*) AS n FROM case_transitions
               WHERE to_state = 'returned' GROUP BY department_id ORDER BY department_id"""
        )
        return {r["department_id"]: r["n"] for r in rows}

    async def cases_by_state(self, states: Sequence[str], limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, receipt_code, state, kind, category_id, town_id, station_id,
                      classification, is_invitation, department_id AS proposed_department_id
               FROM cases WHERE state = ANY($1::text[]) ORDER BY updated_at, id LIMIT $2""",
            list(states),
            limit,
        )
        return [dict(r) for r in rows]

    async def task_summary(self, case_id: UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            """SELECT id, receipt_code, state, kind, category_id, town_id, station_id,
                      department_id, assigned_at, acknowledge_due_at, complete_due_at
               FROM cases WHERE id = $1""",
            case_id,
        )
        return None if row is None else dict(row)

    # ---- accounts ---------------------------------------------------------------------------

    async def account(self, client_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            """SELECT client_id, secret_hash, role, department_id, station_id FROM accounts
               WHERE client_id = $1 AND active""",
            client_id,
        )
        return None if row is None else dict(row)

    async def existing_accounts(self) -> set[str]:
        return {r["client_id"] for r in await self._pool.fetch("SELECT client_id FROM accounts")}

    async def add_accounts(
        self, rows: Sequence[tuple[str, str, str, str | None, str | None]]
    ) -> None:
        await self._pool.executemany(
            """INSERT INTO accounts (client_id, secret_hash, role, department_id, station_id)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO NOTHING""",
            rows,
        )

    async def put_account(
        self,
        client_id: str,
        secret_hash: str,
        role: str,
        department_id: str | None = None,
        station_id: str | None = None,
    ) -> bool:
        """`client_id` becomes an active account of `role` with this password hash (created,
        or updated in place); True if it is new."""
        inserted = await self._pool.fetchval(
            """INSERT INTO accounts (client_id, secret_hash, role, department_id, station_id)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,
                   role = EXCLUDED.role, department_id = EXCLUDED.department_id,
                   station_id = EXCLUDED.station_id, active = true
               RETURNING xmax = 0""",
            client_id,
            secret_hash,
            role,
            department_id,
            station_id,
        )
        return bool(inserted)

    async def active_account_hashes(self) -> list[tuple[str, str]]:
        """(client id, password hash) of every account that may sign in."""
        rows = await self._pool.fetch(
            "SELECT client_id, secret_hash FROM accounts WHERE active ORDER BY client_id"
        )
        return [(r["client_id"], r["secret_hash"]) for r in rows]

    async def deactivate_accounts(self, client_ids: Sequence[str]) -> int:
        done = await self._pool.execute(
            "UPDATE accounts SET active = false WHERE active AND client_id = ANY($1::text[])",
            list(client_ids),
        )
        return int(done.split()[-1])

    # ---- the working calendar ---------------------------------------------------------------

    async def calendar_days(self, year: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT day, is_working, note, source FROM working_calendar
               WHERE day >= $1 AND day < $2 ORDER BY day""",
            date(year, 1, 1),
            date(year + 1, 1, 1),
        )
        return [dict(r) for r in rows]

    async def set_calendar_day(self, day: date, is_working: bool, note: str | None) -> None:
        await self._pool.execute(
            """INSERT INTO working_calendar (day, is_working, note, source)
               VALUES ($1, $2, $3, 'manual')
               ON CONFLICT (day) DO UPDATE SET is_working = EXCLUDED.is_working,
                   note = EXCLUDED.note, source = 'manual', updated_at = now()""",
            day,
            is_working,
            note,
        )

    # ---- deadline timers --------------------------------------------------------------------

    async def fire_due_timers(self, now: datetime, batch: int) -> int:
        """Claim up to `batch` due timers (SKIP LOCKED: replicas share the work), publish their
        events through the outbox and mark them fired, all in one transaction. A crash before
        the commit leaves them unfired (the lock dies with the connection); after it, the
        outbox holds the events. Either way each fires once."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """WITH due AS (
                       SELECT id FROM deadline_timers
                       WHERE fired_at IS NULL AND due_at <= $1
                       ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                   SELECT t.id, t.case_id, t.deadline, t.action, t.deadline_due_at, t.event_id,
                          c.state, c.acknowledge_due_at, c.complete_due_at, c.department_id,
                          c.station_id, c.town_id, c.category_id, c.correlation_id
                   FROM due JOIN deadline_timers t USING (id)
                   JOIN cases c ON c.id = t.case_id""",
                now,
                batch,
            )
            if not rows:
                return 0
            envelopes: list[EventEnvelope] = []
            marks: list[tuple[int, str]] = []
            for r in rows:
                deadline = DeadlineKind(r["deadline"])
                timer = DueTimer(
                    case_id=r["case_id"],
                    deadline=deadline,
                    action=r["action"],
                    deadline_due_at=r["deadline_due_at"],
                    case_state=CaseState(r["state"]),
                    case_deadline_due_at=r[f"{deadline.value}_due_at"],
                    department_id=r["department_id"],
                    station_id=r["station_id"],
                    town_id=r["town_id"],
                    category_id=r["category_id"],
                )
                event = timer_event(timer, now)
                if event is None:
                    marks.append((r["id"], "skipped"))
                    continue
                envelopes.append(
                    EventEnvelope.wrap(
                        event,
                        producer=SERVICE,
                        correlation_id=r["correlation_id"],
                        event_id=r["event_id"],
                        occurred_at=now,
                    )
                )
                marks.append((r["id"], "published"))
            await conn.executemany(
                "UPDATE deadline_timers SET fired_at = $2, outcome = $3 WHERE id = $1",
                [(timer_id, now, outcome) for timer_id, outcome in marks],
            )
            await add_to_outbox(conn, envelopes, topic_prefix=self._topic_prefix)
            failpoint("deadline_fire_before_commit")
        failpoint("deadline_fire_after_commit")
        return len(rows)

    # ---- seed -------------------------------------------------------------------------------

    async def seed(self, ref: ReferenceData, keyword_rules: Sequence[KeywordRule]) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO departments (id, name, contact_name, contact_phone)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                       contact_name = EXCLUDED.contact_name,
                       contact_phone = EXCLUDED.contact_phone""",
                [(d.id, d.name, d.contact_name, d.contact_phone) for d in ref.departments],
            )
            await conn.executemany(
                """INSERT INTO category_kinds (category_id, kind) VALUES ($1, $2)
                   ON CONFLICT (category_id) DO UPDATE SET kind = EXCLUDED.kind""",
                [(c.id, c.case_kind) for c in ref.categories],
            )
            await conn.executemany(
                """INSERT INTO routing_rules (category_id, town_id, department_id, priority)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (category_id, town_id, department_id)
                   DO UPDATE SET priority = EXCLUDED.priority""",
                [
                    (r.category_id, r.town_id, r.department_id, r.priority)
                    for r in ref.routing_rules
                ],
            )
            await conn.execute(
                """INSERT INTO routing_config (key, value) VALUES ('fallback_department_id', $1)
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""",
                ref.fallback_department_id,
            )
            await conn.executemany(
                """INSERT INTO triage_rules (keyword, category_id, major, priority)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (keyword, category_id, major) DO NOTHING""",
                [(k.keyword, k.category_id, k.major, k.priority) for k in keyword_rules],
            )
            days = [d for y in chinese_calendar_years() for d in official_days(y)]
            await conn.execute(
                """INSERT INTO working_calendar (day, is_working, note)
                   SELECT * FROM unnest($1::date[], $2::boolean[], $3::text[])
                   ON CONFLICT (day) DO NOTHING""",
                [d for d, _, _ in days],
                [w for _, w, _ in days],
                [n for _, _, n in days],
            )
        years = chinese_calendar_years()
        return (
            f"routing: {len(ref.departments)} departments, {len(ref.routing_rules)} rules, "
            f"fallback {ref.fallback_department_id}, {len(keyword_rules)} triage keywords, "
            f"working calendar {years.start}–{years.stop - 1}"
        )
