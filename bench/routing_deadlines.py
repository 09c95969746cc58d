"""Benchmark: routing's deadline timers with many open cases (not run by the tests).

For each size (open cases, each with `--timers-per-case` future timers), it measures

* the claim query's cost (EXPLAIN ANALYZE, buffers) with a batch of due timers present, and
* lateness — how long after its due time each timer fires — while timers fall due at
  `--rate` per second for `--duration` seconds, fired by the real `RoutingStore.fire_due_timers`
  polling every `--poll` seconds (the service's loop; NOTIFY does not help future timers).

Sizes grow in place (10k → 100k → 1M), so the table and its indexes carry the fired rows of
the earlier rounds too, as production would. Prints one JSON document.

    python -m bench.routing_deadlines --sizes 10000,100000,1000000 --rate 200 --duration 20
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import typer

from services.routing.app import MIGRATIONS, SCHEMA
from services.routing.store import RoutingStore
from shared.db.migrations import apply_migrations, load_migrations
from shared.db.pool import connect, create_pool
from shared.reference import wenling
from shared.settings import DatabaseSettings

CLAIM_SQL = """WITH due AS (
    SELECT id FROM deadline_timers WHERE fired_at IS NULL AND due_at <= now()
    ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
SELECT t.id, c.state FROM due JOIN deadline_timers t USING (id) JOIN cases c ON c.id = t.case_id"""


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _grow(conn: asyncpg.Connection[Any], have: int, want: int, per_case: int) -> None:
    """Open cases up to `want`, each with `per_case` timers due in a year or so."""
    step = 100_000
    for start in range(have, want, step):
        n = min(step, want - start)
        await conn.execute(
            """WITH new AS (
                   INSERT INTO cases (id, opinion_id, lead_opinion_id, receipt_code,
                       department_id, station_id, town_id, category_id, kind, state,
                       assigned_at, acknowledge_due_at, complete_due_at, correlation_id)
                   SELECT gen_random_uuid(), o, o, 'BENCH-00000', 'transport', 'zeguo-1',
                          'zeguo', 'traffic', 'general', 'assigned', now(),
                          now() + interval '300 days', now() + interval '365 days', o
                   FROM (SELECT gen_random_uuid() AS o FROM generate_series(1, $1)) g
                   RETURNING id, complete_due_at)
               INSERT INTO deadline_timers (case_id, deadline, action, deadline_due_at, due_at,
                   dedupe_key, event_id)
               SELECT new.id, 'complete', 'reminder', new.complete_due_at,
                      new.complete_due_at - (k || ' days')::interval,
                      new.id || ':bench:' || k, gen_random_uuid()
               FROM new, generate_series(1, $2) k""",
            n,
            per_case,
        )
    await conn.execute("ANALYZE cases")
    await conn.execute("ANALYZE deadline_timers")


async def _due_stream(conn: asyncpg.Connection[Any], rate: int, duration: float, tag: str) -> int:
    """Timers falling due at `rate`/s over `duration` s from two seconds from now, each on
    its own open case (overdue of the complete deadline, as production fires)."""
    count = int(rate * duration)
    await conn.execute(
        """WITH new AS (
               INSERT INTO cases (id, opinion_id, lead_opinion_id, receipt_code, department_id,
                   station_id, town_id, category_id, kind, state, assigned_at,
                   acknowledge_due_at, complete_due_at, correlation_id)
               SELECT gen_random_uuid(), o, o, 'BENCH-DUE00', 'transport', 'zeguo-1', 'zeguo',
                      'traffic', 'general', 'acknowledged', now(), now(),
                      now() + interval '2 seconds' + (i::float8 / $2) * interval '1 second', o
               FROM (SELECT gen_random_uuid() AS o, i FROM generate_series(0, $1 - 1) i) g
               RETURNING id, complete_due_at)
           INSERT INTO deadline_timers (case_id, deadline, action, deadline_due_at, due_at,
               dedupe_key, event_id)
           SELECT id, 'complete', 'overdue', complete_due_at, complete_due_at,
                  id || ':bench:due:' || $3, gen_random_uuid() FROM new""",
        count,
        rate,
        tag,
    )
    return count


async def _claim_cost(conn: asyncpg.Connection[Any], batch: int) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the claim with `batch` due timers present (rolled back)."""
    async with conn.transaction():
        await conn.execute(
            """UPDATE deadline_timers SET due_at = now() - interval '1 second'
               WHERE id IN (SELECT id FROM deadline_timers WHERE fired_at IS NULL
                            ORDER BY id DESC LIMIT $1)""",
            batch,
        )
        runs = []
        for _ in range(5):
            plan = await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {CLAIM_SQL}", batch
            )
            root = (json.loads(plan) if isinstance(plan, str) else plan)[0]
            runs.append(root)
        best = min(runs, key=lambda r: r["Execution Time"])
        node = best["Plan"]
        raise _Rollback(
            {
                "batch": batch,
                "execution_ms_min": round(best["Execution Time"], 3),
                "execution_ms_median": round(
                    statistics.median(r["Execution Time"] for r in runs), 3
                ),
                "shared_buffers_hit": node.get("Shared Hit Blocks"),
                "shared_buffers_read": node.get("Shared Read Blocks"),
                "uses_partial_index": "deadline_timers_due" in json.dumps(best),
            }
        )


class _Rollback(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("rollback")
        self.result = result


async def _fire(
    store: RoutingStore,
    conn: asyncpg.Connection[Any],
    count: int,
    poll: float,
    batch: int,
    tag: str,
) -> dict[str, Any]:
    started = time.monotonic()
    fired = 0
    polls = 0
    while fired < count and time.monotonic() - started < 600:
        n = await store.fire_due_timers(datetime.now(UTC), batch)
        polls += 1
        fired += n
        if n == 0:
            await asyncio.sleep(poll)
    rows = await conn.fetch(
        """SELECT extract(epoch FROM fired_at - due_at) AS late FROM deadline_timers
           WHERE dedupe_key LIKE '%:bench:due:' || $1 AND fired_at IS NOT NULL""",
        tag,
    )
    await conn.execute("DELETE FROM outbox")  # no relay in the benchmark
    await conn.execute(
        "UPDATE cases SET state = 'closed' WHERE receipt_code = 'BENCH-DUE00'"
    )  # the stream's cases are done: only the grown ones stay open
    late = [float(r["late"]) for r in rows]
    return {
        "timers": count,
        "fired": len(late),
        "lateness_s_p50": round(_percentile(late, 0.50), 4),
        "lateness_s_p99": round(_percentile(late, 0.99), 4),
        "lateness_s_max": round(max(late), 4) if late else None,
        "claims": polls,
    }


async def run(
    database_url: str, sizes: list[int], per_case: int, rate: int, duration: float, poll: float
) -> dict[str, Any]:
    name = f"bench_routing_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    settings = DatabaseSettings(url=url, max_pool_size=4)
    conn = await connect(settings, schema=SCHEMA, service="bench")
    results: list[dict[str, Any]] = []
    try:
        await apply_migrations(conn, SCHEMA, load_migrations(MIGRATIONS))
        pool = await create_pool(settings, schema=SCHEMA, service="bench")
        store = RoutingStore(pool)
        await store.seed(wenling(), ())
        have = 0
        for size in sorted(sizes):
            t0 = time.monotonic()
            await _grow(conn, have, size, per_case)
            have = size
            grow_s = time.monotonic() - t0
            try:
                await _claim_cost(conn, 100)
            except _Rollback as done:
                claim = done.result
            count = await _due_stream(conn, rate, duration, str(size))
            firing = await _fire(store, conn, count, poll, batch=500, tag=str(size))
            unfired = await conn.fetchval(
                "SELECT count(*) FROM deadline_timers WHERE fired_at IS NULL"
            )
            results.append(
                {
                    "open_cases": size,
                    "unfired_timers": unfired,
                    "load_s": round(grow_s, 1),
                    "claim_query": claim,
                    "firing": firing,
                }
            )
            typer.echo(json.dumps(results[-1]), err=True)  # progress
        await pool.close()
    finally:
        await conn.close()
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {
        "benchmark": "routing_deadlines",
        "rate_per_s": rate,
        "duration_s": duration,
        "poll_interval_s": poll,
        "timers_per_open_case": per_case,
        "results": results,
    }


def main(
    sizes: Annotated[str, typer.Option(help="Open cases, comma-separated.")] = (
        "10000,100000,1000000"
    ),
    timers_per_case: Annotated[int, typer.Option(help="Future timers per open case.")] = 2,
    rate: Annotated[int, typer.Option(help="Timers falling due per second.")] = 200,
    duration: Annotated[float, typer.Option(help="Seconds of due timers per size.")] = 20.0,
    poll: Annotated[float, typer.Option(help="The firing loop's poll interval (s).")] = 1.0,
    database_url: Annotated[str | None, typer.Option(help="Default: DATABASE_URL.")] = None,
) -> None:
    url = database_url or DatabaseSettings().url
    report = asyncio.run(
        run(url, [int(s) for s in sizes.split(",")], timers_per_case, rate, duration, poll)
    )
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
