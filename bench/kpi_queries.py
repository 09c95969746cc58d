"""KPI queries with a year of data: evaluation's database filled with the aggregates of
20 million opinions, then the queries the console and the API run, timed.

    python -m bench.kpi_queries --database-url postgresql://…/fresh_db [--facts 20000000]

- `kpi_counters`: the rows a year of 20 M opinions leaves (5 dimensions × their keys × 12
  months, 1,248 rows; the number of rows does not grow with the opinions, only their values),
  computed from a seeded distribution and loaded with COPY.
- `case_facts`: one row per case (a case per opinion), `--facts` of them spread over the year,
  generated inside PostgreSQL (`INSERT … SELECT … generate_series`, in chunks, indexes built
  after the load). That is faster than COPY from Python, whose client-side row building is
  the bottleneck at this size.
- `station_activities`: a year of reception days and visits of the 64 stations (COPY).

Then each query runs `--iterations` times (or for `--budget` seconds, whichever ends first),
one at a time: at the SQL level through `EvaluationStore` (exactly the statements the API
runs, with asyncpg's decoding) and through HTTP against one evaluation process (a staff token,
a fresh connection pool). Prints one JSON document.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import SecretStr

from bench.loadgen import percentile
from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.domain import CITY_KEY, METRICS, UNCATEGORIZED
from services.evaluation.store import EvaluationStore
from shared import topics
from shared.auth import AuthSettings, Principal, Role, issue_token
from shared.db.migrations import apply_migrations, load_migrations
from shared.db.pool import connect, create_pool
from shared.messaging.broker import ensure_topics
from shared.reference import wenling
from shared.settings import DatabaseSettings, KafkaSettings

YEAR = 2025
MONTHS = [f"{YEAR}-{m:02d}" for m in range(1, 13)]
BENCH_SECRET = secrets.token_hex(32)  # this run's token key, shared with its evaluation
# The share of assigned cases that reach each counter (with ±10 % per key and month).
RATES = {
    "acknowledged": 0.96,
    "acknowledged_on_time": 0.91,
    "completed": 0.86,
    "completed_on_time": 0.80,
    "rated": 0.62,
    "satisfied": 0.47,
    "basically_satisfied": 0.11,
    "unsatisfied": 0.04,
    "returned": 0.03,
    "reopened": 0.02,
    "overdue": 0.05,
}

app = typer.Typer(add_completion=False)


def _days(month: int) -> int:
    nxt = date(YEAR + month // 12, month % 12 + 1, 1)
    return (nxt - date(YEAR, month, 1)).days


def counter_rows(opinions: int, seed: int = 20) -> list[tuple[Any, ...]]:
    """kpi_counters for a year of `opinions`: each month's cases (by its days, ±15 %) split
    over each dimension's keys by fixed weights; the other counters as shares of `assigned`."""
    rng = random.Random(seed)
    ref = wenling()
    weights: dict[str, dict[str, float]] = {
        "department": {d.id: rng.uniform(0.3, 3) for d in ref.departments},
        "station": {s.id: rng.uniform(0.2, 4) for s in ref.stations},
        "category": {c.id: rng.uniform(0.5, 2) for c in ref.categories} | {UNCATEGORIZED: 0.6},
        "city": {CITY_KEY: 1.0},
    }
    town_of = {s.id: s.town_id for s in ref.stations}
    towns: dict[str, float] = {}
    for station, w in weights["station"].items():
        towns[town_of[station]] = towns.get(town_of[station], 0) + w
    weights["town"] = towns
    raw = [_days(m) * rng.uniform(0.85, 1.15) for m in range(1, 13)]
    per_month = [round(opinions * r / sum(raw)) for r in raw]
    rows = []
    for dimension, keys in weights.items():
        total_w = sum(keys.values())
        for key, w in sorted(keys.items()):
            for month, cases in zip(MONTHS, per_month, strict=True):
                assigned = round(cases * w / total_w)
                counts = {"assigned": assigned} | {
                    m: min(assigned, round(assigned * r * rng.uniform(0.9, 1.1)))
                    for m, r in RATES.items()
                }
                rows.append((dimension, key, month, *(counts[m] for m in METRICS)))
    return rows


def activity_rows(seed: int = 21) -> list[tuple[Any, ...]]:
    """A year of station activity: a reception day a month (most stations) and some visits."""
    rng = random.Random(seed)
    rows = []
    for s in wenling().stations:
        for month in range(1, 13):
            kinds = ["reception"] * (rng.random() < 0.9) + ["visit"] * rng.randint(0, 2)
            for kind in kinds:
                rows.append(
                    (
                        uuid.uuid4(),
                        s.id,
                        s.town_id,
                        kind,
                        date(YEAR, month, rng.randint(1, 28)),
                        rng.randint(1, 4),
                        rng.randint(0, 40),
                        rng.randint(0, 12),
                        datetime(YEAR, month, 28, 12, tzinfo=UTC),
                    )
                )
    return rows


# One case per row: department, station (and its town), category by the row number; times
# spread evenly over the year; outcomes by random() at the shares above.
_FILL_FACTS = """
INSERT INTO case_facts (case_id, opinion_id, department_id, station_id, town_id, category_id,
    kind, dims_at, assigned_at, acknowledge_due_at, complete_due_at, first_notified_at,
    notifications_sent, acknowledged_at, acknowledged_on_time, completions, first_completed_at,
    last_completed_at, last_completed_on_time, closed_at, rating_level, rating_score, rated_at)
SELECT gen_random_uuid(), gen_random_uuid(),
       ($3::text[])[1 + (i * 7919) % cardinality($3::text[])],
       ($4::text[])[1 + (i * 104729) % cardinality($4::text[])],
       ($5::text[])[1 + (i * 104729) % cardinality($5::text[])],
       ($6::text[])[1 + (i * 15485863) % cardinality($6::text[])],
       'general', t, t, t + interval '1 day', t + interval '15 days', t + interval '3 seconds',
       1,
       CASE WHEN r < 0.96 THEN t + interval '5 hours' END, r < 0.91,
       (r < 0.86)::int,
       CASE WHEN r < 0.86 THEN t + interval '9 days' END,
       CASE WHEN r < 0.86 THEN t + interval '9 days' END,
       r < 0.80,
       CASE WHEN r < 0.62 THEN t + interval '12 days' END,
       CASE WHEN r < 0.47 THEN 'satisfied' WHEN r < 0.58 THEN 'basically_satisfied'
            WHEN r < 0.62 THEN 'unsatisfied' END,
       CASE WHEN r < 0.62 THEN 5 - floor(r * 6)::int END,
       CASE WHEN r < 0.62 THEN t + interval '11 days' END
FROM (SELECT i, random() AS r,
             $7::timestamptz + (i::float8 / $8) * interval '365 days' AS t
      FROM generate_series($1::bigint, $2::bigint - 1) AS i) AS g"""


async def fill(database_url: str, *, opinions: int, facts: int, chunk: int) -> dict[str, Any]:
    conn = await connect(DatabaseSettings(url=database_url), schema=SCHEMA, service="kpi-bench")
    started = time.perf_counter()
    try:
        await apply_migrations(conn, SCHEMA, load_migrations(MIGRATIONS))
        pool = await create_pool(DatabaseSettings(url=database_url), schema=SCHEMA, service="b")
        try:
            await EvaluationStore(pool).seed(wenling())  # the stations, as `seed` does
        finally:
            await pool.close()
        counters = counter_rows(opinions)
        await conn.copy_records_to_table(
            "kpi_counters", records=counters, columns=["dimension", "key", "month", *METRICS]
        )
        activities = activity_rows()
        await conn.copy_records_to_table(
            "station_activities",
            records=activities,
            columns=[
                "activity_id",
                "station_id",
                "town_id",
                "kind",
                "activity_date",
                "deputies",
                "visitor_count",
                "issues",
                "recorded_at",
            ],
        )
        # Indexes are built once after the load (as a restore would), then put back as the
        # migrations define them.
        indexes = await conn.fetch(
            """SELECT indexname, indexdef FROM pg_indexes
               WHERE schemaname = $1 AND tablename = 'case_facts'""",
            SCHEMA,
        )
        await conn.execute("ALTER TABLE case_facts DROP CONSTRAINT case_facts_pkey")
        for ix in indexes:
            if ix["indexname"] != "case_facts_pkey":
                await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
        ref = wenling()
        loaded = time.perf_counter()
        for lo in range(0, facts, chunk):
            await conn.execute(
                _FILL_FACTS,
                lo,
                min(facts, lo + chunk),
                [d.id for d in ref.departments],
                [s.id for s in ref.stations],
                [s.town_id for s in ref.stations],
                [c.id for c in ref.categories] + [None],
                datetime(YEAR, 1, 1, tzinfo=UTC),
                float(facts),
                timeout=3600,
            )
        facts_s = time.perf_counter() - loaded
        indexed = time.perf_counter()
        await conn.execute("ALTER TABLE case_facts ADD PRIMARY KEY (case_id)", timeout=3600)
        for ix in indexes:
            if ix["indexname"] != "case_facts_pkey":
                await conn.execute(ix["indexdef"], timeout=3600)
        index_s = time.perf_counter() - indexed
        await conn.execute("VACUUM (ANALYZE) case_facts", timeout=3600)
        await conn.execute("VACUUM (ANALYZE) kpi_counters")
        await conn.execute("VACUUM (ANALYZE) station_activities")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('case_facts'))")
        return {
            "opinions": opinions,
            "kpi_counter_rows": len(counters),
            "case_fact_rows": facts,
            "station_activity_rows": len(activities),
            "case_facts_size": size,
            "fill_s": round(time.perf_counter() - started, 1),
            "facts_insert_s": round(facts_s, 1),
            "facts_index_s": round(index_s, 1),
        }
    finally:
        await conn.close()


Query = Callable[[], Awaitable[Any]]


async def measure(query: Query, *, iterations: int, budget_s: float) -> dict[str, Any]:
    await query()  # warm: the plan, the pages
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(latencies) < iterations and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        await query()
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "n": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
    }


def _cases(month: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Name → (path, query) of what the console and the API ask evaluation for."""
    ref = wenling()
    department, town = ref.departments[0].id, ref.towns[0].id
    year = month[:4]
    return {
        "city month (console overview)": ("/api/v1/kpis", {"dimension": "city", "month": month}),
        "department month (console department page)": (
            "/api/v1/kpis",
            {"dimension": "department", "key": department, "month": month},
        ),
        "town year series (12 months)": ("/api/v1/kpis", {"dimension": "town", "key": town}),
        "city month series (12 months)": (
            "/api/v1/kpis",
            {"dimension": "city", "key": CITY_KEY},
        ),
        "all stations of a month (top-N stations)": (
            "/api/v1/kpis",
            {"dimension": "station", "month": month},
        ),
        "all departments of a month (city report)": (
            "/api/v1/kpis",
            {"dimension": "department", "month": month},
        ),
        "every counter of a month": ("/api/v1/kpis", {"month": month}),
        "department summary (case_facts)": (f"/api/v1/departments/{department}/summary", {}),
        "station activity of the year (console stations)": (
            "/api/v1/stations/activity",
            {"from": f"{year}-01", "to": f"{year}-12"},
        ),
        "monthly report of a town, xlsx": (
            "/api/v1/reports/monthly",
            {"month": month, "town": town, "format": "xlsx"},
        ),
        "monthly report of the city, xlsx": (
            "/api/v1/reports/monthly",
            {"month": month, "format": "xlsx"},
        ),
    }


def _sql_calls(store: EvaluationStore, month: str) -> dict[str, Query]:
    """The same cases at the SQL level: the store methods the handlers call."""
    ref = wenling()
    department, town = ref.departments[0].id, ref.towns[0].id
    first = date(int(month[:4]), int(month[5:]), 1)

    async def town_report() -> Any:
        stations = await store.stations_of_town(town)
        await store.kpis(dimension="town", key=town, month=month)
        await store.kpis(dimension="station", month=month, keys=stations)
        return await store.station_activity(first, first, town_id=town)

    async def city_report() -> Any:
        await store.kpis(dimension="city", key=CITY_KEY, month=month)
        await store.kpis(dimension="town", month=month)
        await store.kpis(dimension="department", month=month)
        return await store.station_activity(first, first)

    return {
        "city month (console overview)": lambda: store.kpis(dimension="city", month=month),
        "department month (console department page)": lambda: store.kpis(
            dimension="department", key=department, month=month
        ),
        "town year series (12 months)": lambda: store.kpis(dimension="town", key=town),
        "city month series (12 months)": lambda: store.kpis(dimension="city", key=CITY_KEY),
        "all stations of a month (top-N stations)": lambda: store.kpis(
            dimension="station", month=month
        ),
        "all departments of a month (city report)": lambda: store.kpis(
            dimension="department", month=month
        ),
        "every counter of a month": lambda: store.kpis(month=month),
        "department summary (case_facts)": lambda: store.department_summary(department),
        "station activity of the year (console stations)": lambda: store.station_activity(
            date(first.year, 1, 1), date(first.year, 12, 1)
        ),
        "monthly report of a town, xlsx": town_report,
        "monthly report of the city, xlsx": city_report,
    }


async def sql_level(database_url: str, *, iterations: int, budget_s: float) -> dict[str, Any]:
    pool = await create_pool(DatabaseSettings(url=database_url), schema=SCHEMA, service="bench")
    try:
        store = EvaluationStore(pool)
        calls = _sql_calls(store, MONTHS[-2])
        return {
            name: await measure(call, iterations=iterations, budget_s=budget_s)
            for name, call in calls.items()
        }
    finally:
        await pool.close()


async def http_level(url: str, *, iterations: int, budget_s: float) -> dict[str, Any]:
    auth = AuthSettings(secret=SecretStr(BENCH_SECRET))
    staff = issue_token(auth, Principal(subject="bench-operator", role=Role.OPERATOR))
    headers = {"Authorization": f"Bearer {staff}"}
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        for name, (path, params) in _cases(MONTHS[-2]).items():

            async def call(path: str = path, params: dict[str, str] = params) -> Any:
                reply = await http.get(path, params=params)
                reply.raise_for_status()
                return reply.content

            out[name] = await measure(call, iterations=iterations, budget_s=budget_s)
    return out


def run(
    database_url: str,
    *,
    opinions: int = 20_000_000,
    facts: int = 20_000_000,
    chunk: int = 1_000_000,
    iterations: int = 200,
    budget_s: float = 20.0,
    http: bool = True,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Fill `database_url` (a fresh, empty database), then measure. Returns the results."""
    result: dict[str, Any] = {
        "data": asyncio.run(fill(database_url, opinions=opinions, facts=facts, chunk=chunk))
    }
    result["sql"] = asyncio.run(sql_level(database_url, iterations=iterations, budget_s=budget_s))
    if http:
        from tests.processes import ServiceProcess, service_env

        prefix = f"k{uuid.uuid4().hex[:6]}."
        # The topics evaluation consumes are created by their producers (routing, …), which
        # do not run here.
        kafka = KafkaSettings(topic_prefix=prefix)
        asyncio.run(ensure_topics(kafka, [kafka.topic(t) for t in topics.ALL]))
        env = service_env(
            "evaluation",
            database_url=database_url,
            topic_prefix=prefix,
            extra={"MINYI_AUTH_SECRET": BENCH_SECRET, "MINYI_EVALUATION__LOG__LEVEL": "WARNING"},
        )
        process = ServiceProcess(
            "evaluation", env, log_dir or Path(tempfile.mkdtemp(prefix="minyi-kpi-"))
        )
        try:
            try:
                process.start()
            except AssertionError:  # e.g. Kafka too slow to create its topics: once more
                process.stop()
                process.start()
            result["http"] = asyncio.run(
                http_level(process.url, iterations=iterations, budget_s=budget_s)
            )
        except Exception as exc:  # keep the SQL figures of a long fill
            result["http"] = {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}
        finally:
            process.stop()
    return result


@app.command()
def main(
    database_url: Annotated[str, typer.Option(help="A fresh, empty database.")] = os.environ.get(
        "DATABASE_URL", ""
    ),
    opinions: Annotated[int, typer.Option(help="Opinions the counters stand for.")] = 20_000_000,
    facts: Annotated[int, typer.Option(help="case_facts rows (one per case).")] = 20_000_000,
    chunk: Annotated[int, typer.Option(help="case_facts rows per INSERT.")] = 1_000_000,
    iterations: Annotated[int, typer.Option(help="Runs of each query at most.")] = 200,
    budget: Annotated[float, typer.Option(help="Seconds per query at most.")] = 20.0,
    http: Annotated[bool, typer.Option(help="Also through one evaluation process.")] = True,
) -> None:
    result = run(
        database_url,
        opinions=opinions,
        facts=facts,
        chunk=chunk,
        iterations=iterations,
        budget_s=budget,
        http=http,
    )
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    app()
