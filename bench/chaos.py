"""`make chaos`: drive a steady load through the whole local stack while breaking it on purpose,
then account for every opinion that got a receipt.

The services reach Kafka and PostgreSQL only through Toxiproxy (the harness connects directly).
Faults: SIGKILL of random services (a supervisor restarts them, as Kubernetes would), SIGSTOP of
a consumer past its session timeout (a forced rebalance), SIGKILL + restart of the Kafka broker,
a fast restart of PostgreSQL, poison messages on the topics and, on their own schedule, network
faults between the services and Kafka/PostgreSQL (latency with jitter, connections dropped,
connections reset). Meanwhile departments acknowledge and complete cases through routing's API.
The ledger then checks: every receipt has exactly one case; every case's department got exactly
one SMS at the fake provider and nobody received the same message twice; evaluation holds every
case, notified once, with the acknowledgements and completions routing recorded; evaluation's
KPI counters equal a recount from its per-case facts; no outbox row is stuck; the dead-letter
topics hold exactly the injected poison.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import asyncpg
import httpx
import typer
from rich.console import Console

from bench.loadgen import LOAD_TEST_ENV, opinion_mix
from services.evaluation.domain import METRICS, CaseFacts, recount
from services.routing.settings import DEV_PASSWORD
from shared import topics
from tests.fakes.aliyun_sms import FakeAliyunServer
from tests.helpers import produce, read_topic
from tests.processes import ServiceProcess, run_command, service_env
from tools import stack

ROOT = Path(__file__).resolve().parent.parent
console = Console()
app = typer.Typer(add_completion=False)
SERVICES = ("intake", "routing", "notification", "evaluation")
PROFILE = stack.PROFILES["chaos"]
SESSION_TIMEOUT_S = 10
TOXIPROXY_BIN = ROOT / ".stack" / "go" / "bin" / "toxiproxy-server"  # built by `make chaos`
TOXIPROXY_API_PORT = 31474
PG_PROXY_PORT = 31433
KAFKA_BROKER_PROXIED_PORT, KAFKA_PROXY_PORT = stack.KAFKA_PROXIED_PORTS["chaos"]
PROBE_TIMEOUT_S = 180
SETTLE_MAX_S = 1200
CLIENT_PATIENCE_S = 180  # intake cannot start while Kafka is down: a restart can take a minute


@dataclass
class FaultLog:
    counts: Counter[str] = field(default_factory=Counter)
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    poison: dict[str, set[str]] = field(default_factory=dict)  # topic -> injected keys
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self, kind: str, target: str, recovered_s: float | None, detail: str | None = None
    ) -> None:
        with self.lock:
            self.counts[kind] += 1
            self.recoveries.append(
                {
                    "fault": kind,
                    "target": target,
                    **({"detail": detail} if detail else {}),
                    "recovered_s": None if recovered_s is None else round(recovered_s, 2),
                }
            )
        console.print(
            f"fault: {kind} {target} {detail or ''}→ recovered in "
            f"{recovered_s and round(recovered_s, 2)} s"
        )

    def by_kind(self) -> dict[str, dict[str, Any]]:
        """Per fault kind: how many, and the recovery times (max, median)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.recoveries:
            entry = out.setdefault(r["fault"], {"count": 0, "targets": Counter(), "times": []})
            entry["count"] += 1
            entry["targets"][r["target"]] += 1
            if r["recovered_s"] is not None:
                entry["times"].append(r["recovered_s"])
        return {
            kind: {
                "count": e["count"],
                "targets": dict(e["targets"]),
                "recovered_max_s": max(e["times"], default=None),
                "recovered_median_s": round(statistics.median(e["times"]), 2)
                if e["times"]
                else None,
            }
            for kind, e in sorted(out.items())
        }


class Toxiproxy:
    """Toxiproxy's server and its two proxies, driven through its HTTP API: `kafka` (in front of
    the broker's PROXIED listener, which advertises the proxy's port) and `postgres`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_path = log_dir / "toxiproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://{stack.HOST}:{TOXIPROXY_API_PORT}", timeout=10)

    @property
    def bootstrap_servers(self) -> str:
        return f"{stack.HOST}:{KAFKA_PROXY_PORT}"

    @property
    def database_url(self) -> str:
        return PROFILE.database_url.replace(f":{PROFILE.pg_port}/", f":{PG_PROXY_PORT}/")

    def start(self) -> Toxiproxy:
        if not TOXIPROXY_BIN.exists():
            raise RuntimeError(f"{TOXIPROXY_BIN} missing: `make {TOXIPROXY_BIN.relative_to(ROOT)}`")
        for port in (TOXIPROXY_API_PORT, KAFKA_PROXY_PORT, PG_PROXY_PORT):
            if stack.port_open(port):
                raise RuntimeError(f"port {port} (Toxiproxy) is in use")
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(TOXIPROXY_BIN), "-host", stack.HOST, "-port", str(TOXIPROXY_API_PORT)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "LOG_LEVEL": "warn"},  # not a line per connection
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.http.get("/version").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"toxiproxy did not start (log {self.log_path})") from None
                time.sleep(0.1)
        self._call("POST", "/reset")
        for name, listen, upstream in (
            ("kafka", KAFKA_PROXY_PORT, KAFKA_BROKER_PROXIED_PORT),
            ("postgres", PG_PROXY_PORT, PROFILE.pg_port),
        ):
            self._call(
                "POST",
                "/proxies",
                {
                    "name": name,
                    "listen": f"{stack.HOST}:{listen}",
                    "upstream": f"{stack.HOST}:{upstream}",
                    "enabled": True,
                },
            )
        return self

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        self.http.request(method, path, json=body).raise_for_status()

    def add_toxic(
        self, proxy: str, name: str, kind: str, attributes: dict[str, int], stream: str
    ) -> None:
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": name,
                "type": kind,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            },
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def stop(self) -> None:
        self.http.close()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Supervisor:
    """Restarts a service that died, like a Deployment would (unless it is paused on purpose)."""

    def __init__(self, services: dict[str, ServiceProcess]) -> None:
        self.services = services
        self.paused: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, proc in self.services.items():
                if name in self.paused or proc.proc is None:
                    continue
                if proc.proc.poll() is not None:
                    proc.proc = None
                    proc.start(wait_ready=False)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def wait_ready(proc: ServiceProcess, timeout: float = 180) -> float:
    started = time.monotonic()
    deadline = started + timeout
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{proc.url}/health/ready", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not recover in {timeout}s:\n{proc.log_tail()}")


class Killer:
    """SIGKILLs on schedule: each victim's recovery is awaited in the background, so the kills
    keep their pace; at most MAX_DOWN services are down at once, and a service still coming
    back is not picked again until it is ready."""

    MAX_DOWN = 2

    def __init__(self, services: dict[str, ServiceProcess], log: FaultLog) -> None:
        self.services = services
        self.log = log
        self.recovering: set[str] = set()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def _up(self, name: str) -> bool:
        proc = self.services[name].proc
        return name not in self.recovering and proc is not None and proc.poll() is None

    def kill(self, rng: random.Random) -> None:
        deadline = time.monotonic() + 180
        while True:
            with self.lock:
                candidates = [n for n in SERVICES if self._up(n)]
                if candidates and len(self.recovering) < self.MAX_DOWN:
                    name = rng.choice(candidates)
                    self.recovering.add(name)
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("no service to kill for 180 s")
            time.sleep(0.5)
        proc = self.services[name].proc
        assert proc is not None
        killed_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        thread = threading.Thread(target=self._recover, args=(name, killed_at), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _recover(self, name: str, killed_at: float) -> None:
        try:
            time.sleep(0.3)
            wait_ready(self.services[name])
            self.log.record("sigkill_service", name, time.monotonic() - killed_at)
        except Exception as exc:  # reported, not hidden
            console.print(f"[red]{name} did not recover: {str(exc)[:200]}[/]")
            self.log.record("sigkill_service", name, None, "not ready within 180 s")
        finally:
            with self.lock:
                self.recovering.discard(name)

    def wait_until_ready(self, name: str) -> None:
        while True:
            with self.lock:
                if name not in self.recovering:
                    return
            time.sleep(0.2)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


def pause_consumer(services: dict[str, ServiceProcess], sup: Supervisor, log: FaultLog) -> None:
    proc = services["routing"]
    if proc.proc is None:
        return
    sup.paused.add("routing")
    started = time.monotonic()
    os.kill(proc.proc.pid, signal.SIGSTOP)
    time.sleep(SESSION_TIMEOUT_S + 5)  # past the session timeout: the group rebalances
    os.kill(proc.proc.pid, signal.SIGCONT)
    sup.paused.discard("routing")
    wait_ready(proc)
    log.record("sigstop_consumer", "routing", time.monotonic() - started - SESSION_TIMEOUT_S - 5)


def restart_kafka(log: FaultLog) -> None:
    proc = stack.kafka_process(PROFILE)
    if proc is None:
        return
    started = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(2)
    stack.start_kafka(PROFILE)
    give_up = time.monotonic() + 180  # a loaded 2-core machine can take over a minute
    while True:
        try:
            stack.wait_kafka(PROFILE.bootstrap_servers, PROFILE)
            break
        except stack.StackError:
            if time.monotonic() > give_up or stack.kafka_process(PROFILE) is None:
                raise
    log.record("kill_kafka", "broker", time.monotonic() - started - 2)


def restart_postgres(log: FaultLog) -> None:
    started = time.monotonic()
    stack.run_pg_tool(
        [
            stack.pg_bin("pg_ctl"),
            "-D",
            str(PROFILE.pgdata),
            "-w",
            "-m",
            "fast",
            "restart",
            "-o",
            " ".join(
                [
                    "-h",
                    stack.HOST,
                    "-p",
                    str(PROFILE.pg_port),
                    "-k",
                    str(stack.pg_socket_dir(PROFILE)),
                    *stack.postgres_settings(PROFILE),
                ]
            ),
        ],
        stack.pg_run_as(),
        timeout=60,
    )
    stack.wait_postgres(PROFILE.database_url, PROFILE)
    log.record("restart_postgres", "server", time.monotonic() - started)


def inject_poison(prefix: str, rng: random.Random, log: FaultLog) -> None:
    topic = rng.choice([topics.OPINION, topics.CASE])
    key = f"poison-{uuid.uuid4().hex[:8]}"
    asyncio.run(produce(prefix + topic, b"\x00not an event" + key.encode(), key=key.encode()))
    log.poison.setdefault(prefix + topic, set()).add(key)
    log.record("poison_message", topic, None)


class Probe:
    """One fresh opinion sent after a fault ends; the seconds until it has gone all the way
    (receipt, case, department SMS recorded in evaluation's facts) are the recovery time."""

    def __init__(self, intake_url: str, database_url: str, receipts: dict[str, str]) -> None:
        self.intake_url = intake_url
        self.database_url = database_url
        self.receipts = receipts
        self.make = opinion_mix(seed=11)
        self.sent = 0

    def __call__(self) -> tuple[float | None, str]:
        """(seconds until done or None after PROBE_TIMEOUT_S, when each stage was reached)."""
        return asyncio.run(self._run())

    async def _run(self) -> tuple[float | None, str]:
        started = time.monotonic()
        deadline = started + PROBE_TIMEOUT_S
        self.sent += 1
        body = self.make(self.sent)
        key = f"probe-{uuid.uuid4().hex}"
        stages: dict[str, float] = {}
        opinion_id: str | None = None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while opinion_id is None and time.monotonic() < deadline:
                try:
                    async with session.post(
                        f"{self.intake_url}/api/v1/opinions",
                        json=body,
                        headers={"Idempotency-Key": key},
                    ) as resp:
                        if resp.status == 201:
                            data = await resp.json()
                            opinion_id = data["opinion_id"]
                            self.receipts[data["receipt_code"]] = opinion_id
                            stages["receipt"] = time.monotonic() - started
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        conn: asyncpg.Connection | None = None
        while opinion_id is not None and time.monotonic() < deadline:
            try:  # the harness's own connection may be cut by a PostgreSQL restart
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.database_url, timeout=5)
                row = await conn.fetchrow(
                    "SELECT c.id, f.first_notified_at IS NOT NULL AS notified FROM routing.cases c"
                    " LEFT JOIN evaluation.case_facts f ON f.case_id = c.id"
                    " WHERE c.opinion_id = $1",
                    uuid.UUID(opinion_id),
                )
            except Exception:
                conn = None
                row = None
            if row is not None:
                stages.setdefault("case", time.monotonic() - started)
                if row["notified"]:
                    stages["notified"] = time.monotonic() - started
                    break
            await asyncio.sleep(0.2)
        if conn is not None:
            await conn.close()
        trace = "probe: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
        return stages.get("notified"), trace


# (kind, proxy): each is injected once per round of network faults.
NETWORK_FAULTS: tuple[tuple[str, str], ...] = (
    ("latency", "kafka"),
    ("latency", "postgres"),
    ("drop", "kafka"),
    ("drop", "postgres"),
    ("reset", "kafka"),
    ("reset", "postgres"),
)


def network_fault(
    kind: str,
    proxy: str,
    toxi: Toxiproxy,
    rng: random.Random,
    probe: Callable[[], tuple[float | None, str]],
    log: FaultLog,
) -> threading.Thread:
    """latency: every answer to the services delayed 200–1000 ms ± half that, for 10–20 s;
    drop: the proxy disabled for 3–8 s (open connections cut, new ones refused);
    reset: every connection reset by peer (TCP RST) for 2–5 s."""
    if kind == "latency":
        latency = rng.randint(200, 1000)
        hold = rng.uniform(10, 20)
        detail = f"+{latency}±{latency // 2} ms for {hold:.0f} s"
        toxi.add_toxic(
            proxy, "latency", "latency", {"latency": latency, "jitter": latency // 2}, "downstream"
        )
        try:
            time.sleep(hold)
        finally:
            toxi.remove_toxic(proxy, "latency")
    elif kind == "drop":
        hold = rng.uniform(3, 8)
        detail = f"proxy down for {hold:.1f} s"
        toxi.set_enabled(proxy, False)
        try:
            time.sleep(hold)
        finally:
            toxi.set_enabled(proxy, True)
    else:
        hold = rng.uniform(2, 5)
        detail = f"connections reset for {hold:.1f} s"
        toxi.add_toxic(proxy, "reset", "reset_peer", {"timeout": 0}, "upstream")
        try:
            time.sleep(hold)
        finally:
            toxi.remove_toxic(proxy, "reset")

    def measure() -> None:
        recovered, trace = probe()
        log.record(f"network_{kind}", proxy, recovered, f"{detail}; {trace}")

    # The probe runs on its own, so that the next fault keeps its schedule.
    thread = threading.Thread(target=measure, daemon=True)
    thread.start()
    return thread


def run_network_faults(
    plan: list[tuple[str, str]],
    *,
    started: float,
    duration: float,
    toxi: Toxiproxy,
    rng: random.Random,
    probe: Callable[[], tuple[float | None, str]],
    log: FaultLog,
) -> None:
    """The network faults on their own schedule (they overlap the process faults)."""
    gap = duration / (len(plan) + 1)
    probes: list[threading.Thread] = []
    for i, (kind, proxy) in enumerate(plan):
        wait = started + gap * (i + 0.5) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            probes.append(network_fault(kind, proxy, toxi, rng, probe, log))
        except Exception as exc:  # reported, not hidden
            console.print(f"[red]network fault {kind} {proxy} failed: {exc!r}[/]")
            with log.lock:
                log.counts[f"network_{kind}_failed"] += 1
    for thread in probes:
        thread.join()


async def department_work(
    routing_url: str,
    database_url: str,
    *,
    per_tick: tuple[int, int],
    stop: threading.Event,
    actions: Counter[str],
) -> None:
    """Departments at work through routing's API: each second, acknowledge some assigned cases
    and complete some acknowledged ones (routing's tables say which), so that evaluation's
    acknowledged/completed figures have something to agree with."""
    tokens: dict[str, str] = {}
    today = datetime.now(UTC).date()
    bodies = {
        "acknowledge": {
            "responsible_person": "值班员",
            "contact": "办公室分机 8001",
            "planned_completion_date": (today + timedelta(days=7)).isoformat(),
        },
        "complete": {
            "handling_situation": "已现场核查并处理。",
            "handling_result": "已解决。",
            "responsible_person": "值班员",
            "contact": "办公室分机 8001",
            "completion_date": today.isoformat(),
        },
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def act(action: str, case_id: uuid.UUID, department: str) -> None:
            try:
                if department not in tokens:
                    async with http.post(
                        f"{routing_url}/api/v1/auth/token",
                        json={"client_id": f"dept-{department}", "client_secret": DEV_PASSWORD},
                    ) as resp:
                        if resp.status != 200:
                            actions[f"sign_in_{resp.status}"] += 1
                            return
                        tokens[department] = (await resp.json())["access_token"]
                async with http.post(
                    f"{routing_url}/api/v1/cases/{case_id}/{action}",
                    json=bodies[action],
                    headers={"authorization": f"Bearer {tokens[department]}"},
                ) as resp:
                    actions[action if resp.status == 200 else f"{action}_{resp.status}"] += 1
                    if resp.status == 401:
                        tokens.pop(department, None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                actions[f"{action}_{type(exc).__name__}"] += 1

        conn: asyncpg.Connection | None = None
        while not stop.is_set():
            await asyncio.sleep(1)
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(database_url, timeout=5)
                rows = await conn.fetch(
                    "(SELECT id, department_id, 'acknowledge' AS action FROM routing.cases"
                    " WHERE state = 'assigned' ORDER BY random() LIMIT $1)"
                    " UNION ALL (SELECT id, department_id, 'complete' FROM routing.cases"
                    " WHERE state = 'acknowledged' ORDER BY random() LIMIT $2)",
                    *per_tick,
                )
            except Exception:  # the harness's direct connection, e.g. during the restart
                conn = None
                actions["database_unavailable"] += 1
                continue
            await asyncio.gather(*(act(r["action"], r["id"], r["department_id"]) for r in rows))
        if conn is not None:
            await conn.close()


async def load(
    url: str, *, rate: float, duration: float, receipts: dict[str, str], failures: Counter[str]
) -> None:
    """Open-loop opinions; a failed request is retried with its Idempotency-Key, as a phone
    client would, until it gets a receipt or CLIENT_PATIENCE_S pass."""
    make = opinion_mix(seed=3)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one(i: int) -> None:
            body = make(i)
            key = f"chaos-{i}-{uuid.uuid4().hex}"
            deadline = time.monotonic() + CLIENT_PATIENCE_S
            while time.monotonic() < deadline:
                try:
                    async with session.post(
                        f"{url}/api/v1/opinions", json=body, headers={"Idempotency-Key": key}
                    ) as resp:
                        if resp.status == 201:
                            data = await resp.json()
                            receipts[data["receipt_code"]] = data["opinion_id"]
                            return
                        failures[str(resp.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures[type(exc).__name__] += 1
                await asyncio.sleep(0.5)
            failures["gave_up"] += 1

        start = time.monotonic()
        tasks = []
        for i in range(int(rate * duration)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)


async def kpi_recount(conn: asyncpg.Connection) -> dict[str, Any]:
    """Evaluation's incremental KPI counters against a recount from its per-case facts (the
    domain's own `recount`), and its facts against routing's cases (the source of truth):
    each case's department, whether it was acknowledged, whether it is completed."""
    facts = [
        CaseFacts.from_row(dict(r)) for r in await conn.fetch("SELECT * FROM evaluation.case_facts")
    ]
    expected = recount(facts)
    counters = {
        (r["dimension"], r["key"], r["month"]): {m: r[m] for m in METRICS}
        for r in await conn.fetch("SELECT * FROM evaluation.kpi_counters")
    }
    counters = {k: v for k, v in counters.items() if any(v.values())}
    counter_mismatches = [
        {"row": list(k), "counters": counters.get(k), "recount": expected.get(k)}
        for k in sorted(set(counters) | set(expected))
        if counters.get(k) != expected.get(k)
    ]
    routing = {
        r["id"]: (r["department_id"], r["acknowledged"], r["completed"])
        for r in await conn.fetch(
            "SELECT id, department_id, acknowledged_at IS NOT NULL AS acknowledged,"
            " completed_at IS NOT NULL AS completed FROM routing.cases"
            " WHERE assigned_at IS NOT NULL"  # not the aggregates of common opinions (triaged)
        )
    }
    evaluation = {
        f.case_id: (f.department_id, f.acknowledged_at is not None, f.completed)
        for f in facts
        if f.assigned_at is not None
    }
    disagreeing = sorted(
        str(c) for c in set(routing) | set(evaluation) if routing.get(c) != evaluation.get(c)
    )

    def per_department(cases: dict[uuid.UUID, tuple[str | None, bool, bool]]) -> dict[str, Any]:
        out: dict[str, dict[str, int]] = {}
        for department, acknowledged, completed in cases.values():
            row = out.setdefault(str(department), {"cases": 0, "acknowledged": 0, "completed": 0})
            row["cases"] += 1
            row["acknowledged"] += int(acknowledged)
            row["completed"] += int(completed)
        return dict(sorted(out.items()))

    city = {m: sum(v[m] for k, v in counters.items() if k[0] == "city") for m in METRICS}
    return {
        "facts": len(facts),
        "counter_rows": len(counters),
        "counters_equal_recount": not counter_mismatches,
        "counter_mismatches": counter_mismatches[:20],
        "city_totals": {m: city[m] for m in ("assigned", "acknowledged", "completed")},
        "routing_cases": len(routing),
        "facts_agree_with_routing": not disagreeing,
        "cases_disagreeing_with_routing": len(disagreeing),
        "disagreeing_case_ids": disagreeing[:20],
        "per_department_routing": per_department(routing),
        "per_department_evaluation": per_department(evaluation),
    }


def provider_duplicates(sent: list[dict[str, Any]]) -> int:
    """Messages a recipient received more than once at the fake provider: same numbers, same
    template, same parameters (whatever the OutId: a resend and a second plan look alike)."""
    same = Counter(
        (
            r.get("phone_numbers"),
            r.get("template_code"),
            json.dumps(r.get("template_param"), sort_keys=True, ensure_ascii=False),
        )
        for r in sent
    )
    return sum(n - 1 for n in same.values() if n > 1)


async def ledger(
    database_url: str,
    prefix: str,
    receipts: dict[str, str],
    sms: FakeAliyunServer,
    log: FaultLog,
    settle_s: float,
) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        opinion_ids = [uuid.UUID(v) for v in receipts.values()]
        # Settled when everything is accounted for; given up when nothing has moved for
        # settle_s (a backlog still draining is waited for, up to SETTLE_MAX_S in all).
        settle_started = time.monotonic()
        deadline = settle_started + settle_s
        last_progress: tuple[int, ...] = ()
        while True:
            cases = await conn.fetch(
                "SELECT opinion_id, count(*) AS n FROM routing.cases"
                " WHERE opinion_id = ANY($1::uuid[]) GROUP BY opinion_id",
                opinion_ids,
            )
            sent = sms.requests()
            per_receipt = Counter(
                (r.get("template_param") or {}).get("receipt_code")
                for r in sent
                if r.get("template_code") == "SMS_100000001"
            )
            facts = await conn.fetchval(
                "SELECT count(*) FROM evaluation.case_facts f JOIN routing.cases c"
                " ON c.id = f.case_id WHERE c.opinion_id = ANY($1::uuid[])"
                " AND f.first_notified_at IS NOT NULL AND f.assigned_at IS NOT NULL",
                opinion_ids,
            )
            backlog = sum(
                [await conn.fetchval(f"SELECT count(*) FROM {s}.outbox") for s in SERVICES]
            )
            done = (
                len(cases) == len(receipts)
                and facts == len(receipts)
                and all(per_receipt[c] >= 1 for c in receipts)
                and backlog == 0
            )
            progress = (len(cases), facts, len(sent), backlog)
            if progress != last_progress:
                last_progress = progress
                deadline = min(time.monotonic() + settle_s, settle_started + SETTLE_MAX_S)
            if done or time.monotonic() > deadline:
                # Acknowledgements and completions still on their way settle too.
                kpis = await kpi_recount(conn)
                agreed = kpis["counters_equal_recount"] and kpis["facts_agree_with_routing"]
                if agreed or time.monotonic() > deadline:
                    break
            await asyncio.sleep(1)
        settled_in_s = round(time.monotonic() - settle_started, 1)
        duplicate_cases = sum(r["n"] - 1 for r in cases if r["n"] > 1)

        def delivery_of(out_id: Any) -> str | None:
            """The delivery an OutId names (`<delivery>` or, per attempt, `<delivery>:<n>`)."""
            return str(out_id).split(":", 1)[0] if out_id else None

        # The same delivery sent again (whatever its attempt's OutId), and a receipt's
        # department told by two different deliveries (a planning duplicate).
        per_delivery = Counter(delivery_of(r.get("out_id")) for r in sent)
        resent = {d: n - 1 for d, n in per_delivery.items() if d and n > 1}
        deliveries_per_receipt: dict[str, set[str]] = {}
        for r in sent:
            code = (r.get("template_param") or {}).get("receipt_code")
            if r.get("template_code") == "SMS_100000001" and code in receipts:
                deliveries_per_receipt.setdefault(code, set()).add(
                    str(delivery_of(r.get("out_id")))
                )
        planned_twice = sum(len(v) - 1 for v in deliveries_per_receipt.values() if len(v) > 1)
        same_message_twice = provider_duplicates(sent)
        duplicate_sms = max(same_message_twice, sum(resent.values()) + planned_twice)
        # A resend is "explained" when an earlier attempt of that delivery never got its
        # outcome recorded (its sender was killed during the provider call).
        explained = 0
        resent_ids = []
        for d in resent:
            try:
                resent_ids.append(uuid.UUID(d))
            except ValueError:
                continue
        if resent_ids:
            explained_ids = {
                str(r["delivery_id"])
                for r in await conn.fetch(
                    "SELECT DISTINCT delivery_id FROM notification.delivery_attempts"
                    " WHERE delivery_id = ANY($1::uuid[])"
                    " AND (outcome IS NULL OR outcome IN ('unknown', 'not_sent'))",
                    resent_ids,
                )
            }
            explained = sum(n for d, n in resent.items() if d in explained_ids)
        notified_twice = await conn.fetchval(
            "SELECT count(*) FROM evaluation.case_facts WHERE notifications_sent > 1"
        )
        # Every poison message must be dead-lettered (by each consumer group of its topic), and
        # nothing else: a legitimate message in a dead-letter topic is a lost message.
        dead: dict[str, dict[str, list[str]]] = {}
        for topic in topics.ALL:
            dlq = await read_topic(topics.dead_letter(prefix + topic), quiet_s=1.0, timeout=15)
            by_key: dict[str, list[str]] = {}
            for record in dlq:
                consumer = dict(record.headers).get("dlq_consumer", b"?").decode()
                by_key.setdefault((record.key or b"").decode(), []).append(consumer)
            if by_key:
                dead[prefix + topic] = by_key
        injected = {t: sorted(keys) for t, keys in log.poison.items()}
        unexpected = {t: sorted(set(k) - set(injected.get(t, []))) for t, k in dead.items()}
        missing = {t: sorted(set(k) - set(dead.get(t, {}))) for t, k in injected.items()}
        return {
            "settled_in_s": settled_in_s,
            "opinions_receipted": len(receipts),
            "cases": len(cases),
            "lost_cases": len(receipts) - len(cases),
            "lost_sms": sum(1 for c in receipts if per_receipt[c] == 0),
            "lost_in_evaluation": len(receipts) - facts,
            "duplicated_cases": duplicate_cases,
            "sms_at_provider": len(sent),
            "duplicated_sms": duplicate_sms,
            "duplicated_sms_same_message_to_same_recipient": same_message_twice,
            "duplicated_sms_same_out_id": sum(resent.values()),
            "duplicated_sms_planned_twice": planned_twice,
            "duplicated_sms_after_a_sender_died_mid_call": explained,
            "notified_twice_in_evaluation": notified_twice,
            "outbox_backlog": backlog,
            "dead_letters": dead,
            "poison_injected": injected,
            "dead_lettered_but_not_poison": {t: k for t, k in unexpected.items() if k},
            "poison_not_dead_lettered": {t: k for t, k in missing.items() if k},
            "dead_letters_match_poison": not any(unexpected.values()) and not any(missing.values()),
            "kpi_recount": kpis,
        }
    finally:
        await conn.close()


@app.command()
def main(
    duration: Annotated[float, typer.Option(help="Seconds of load with faults.")] = 600,
    rate: Annotated[float, typer.Option(help="Opinions per second offered.")] = 10,
    kills: Annotated[int, typer.Option(help="Service SIGKILLs (spread over the run).")] = 24,
    seed: Annotated[int, typer.Option()] = 42,
    network_rounds: Annotated[
        int,
        typer.Option(
            help="Rounds of network faults (each: latency, drop and reset, on Kafka and on "
            "PostgreSQL); 0 = one round per 300 s, at least one."
        ),
    ] = 0,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    tolerate_mid_call_resends: Annotated[
        bool,
        typer.Option(
            help="Pass when the only duplicates are SMS resent because their sender died during "
            "the provider call (dispatch.resend_uncertain, by design); still reported."
        ),
    ] = False,
) -> None:
    rng = random.Random(seed)
    try:
        stack.infra_up(PROFILE, fresh=True)
    except BaseException:
        stack.down(PROFILE)  # nothing left running (e.g. PostgreSQL when Kafka failed)
        raise
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = PROFILE.bootstrap_servers
    os.environ["DATABASE_URL"] = PROFILE.database_url
    prefix = f"c{uuid.uuid4().hex[:6]}."
    log_dir = Path(tempfile.mkdtemp(prefix="minyi-chaos-"))
    log = FaultLog()
    sms = FakeAliyunServer(access_key_id="chaos", access_key_secret="chaos-secret").start()
    # The services go through Toxiproxy; the harness (ledger, poison, probes) does not.
    toxi = Toxiproxy(log_dir)
    services: dict[str, ServiceProcess] = {}
    sup: Supervisor | None = None
    receipts: dict[str, str] = {}
    failures: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    load_done = threading.Event()
    try:
        toxi.start()
        for name in SERVICES:
            env = service_env(
                name,
                database_url=toxi.database_url,
                topic_prefix=prefix,
                extra={
                    **LOAD_TEST_ENV,
                    "KAFKA_BOOTSTRAP_SERVERS": toxi.bootstrap_servers,
                    f"MINYI_{name.upper()}__KAFKA__SESSION_TIMEOUT_MS": str(
                        SESSION_TIMEOUT_S * 1000
                    ),
                    **(
                        {
                            "MINYI_NOTIFICATION__SMS__PROVIDER": "aliyun",
                            "MINYI_NOTIFICATION__SMS__ALIYUN__ENDPOINT": sms.endpoint,
                            "MINYI_NOTIFICATION__SMS__ALIYUN__PROTOCOL": "http",
                            "MINYI_NOTIFICATION__SMS__ALIYUN__ACCESS_KEY_ID": "chaos",
                            "MINYI_NOTIFICATION__SMS__ALIYUN__ACCESS_KEY_SECRET": "chaos-secret",
                        }
                        if name == "notification"
                        else {}
                    ),
                },
            )
            run_command(name, "migrate", env)
            run_command(name, "seed", env)
            services[name] = ServiceProcess(name, env, log_dir)
            services[name].start(wait_ready=False)
        for proc in services.values():  # they start side by side
            proc.wait_ready(timeout=180)
        sup = Supervisor(services)
        sup.start()

        loader = threading.Thread(
            target=lambda: asyncio.run(
                load(
                    services["intake"].url,
                    rate=rate,
                    duration=duration,
                    receipts=receipts,
                    failures=failures,
                )
            ),
            daemon=True,
        )
        departments = threading.Thread(
            target=lambda: asyncio.run(
                department_work(
                    services["routing"].url,
                    PROFILE.database_url,
                    per_tick=(max(1, round(rate * 0.2)), max(1, round(rate * 0.1))),
                    stop=load_done,
                    actions=actions,
                )
            ),
            daemon=True,
        )
        rounds = network_rounds or max(1, int(duration // 300))
        network_plan = list(NETWORK_FAULTS) * rounds
        rng.shuffle(network_plan)
        probe = Probe(services["intake"].url, PROFILE.database_url, receipts)
        started = time.monotonic()
        network = threading.Thread(
            target=run_network_faults,
            args=(network_plan,),
            kwargs={
                "started": started,
                "duration": duration,
                "toxi": toxi,
                "rng": random.Random(seed + 1),
                "probe": probe,
                "log": log,
            },
            daemon=True,
        )
        loader.start()
        departments.start()
        network.start()
        # The fault schedule: kills spread evenly, the other faults once each, in random order.
        plan = ["kill"] * kills + ["pause", "kafka", "postgres", "poison", "poison", "poison"]
        rng.shuffle(plan)
        gap = duration / (len(plan) + 1)
        killer = Killer(services, log)
        for i, fault in enumerate(plan):
            wait = started + gap * (i + 1) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if fault == "kill":
                    killer.kill(rng)
                elif fault == "pause":
                    killer.wait_until_ready("routing")
                    with killer.lock:  # not killed while stopped
                        killer.recovering.add("routing")
                    try:
                        pause_consumer(services, sup, log)
                    finally:
                        with killer.lock:
                            killer.recovering.discard("routing")
                elif fault == "kafka":
                    restart_kafka(log)
                elif fault == "postgres":
                    restart_postgres(log)
                else:
                    inject_poison(prefix, rng, log)
            except Exception as exc:  # a fault that could not be injected is reported, not hidden
                console.print(f"[red]fault {fault} failed: {exc!r}[/]")
                log.counts[f"{fault}_failed"] += 1
        killer.join()
        loader.join()
        network.join()
        load_done.set()
        departments.join()
        console.print(f"load done: {len(receipts)} receipts; client-side failures {dict(failures)}")
        console.print(f"department actions: {dict(actions)}")
        result = asyncio.run(ledger(PROFILE.database_url, prefix, receipts, sms, log, settle_s=180))
    finally:
        if sup is not None:
            sup.stop()
        for proc in services.values():
            proc.stop()
        load_done.set()
        sms.stop()
        toxi.stop()
        stack.down(PROFILE)
    lost = result["lost_cases"] + result["lost_sms"] + result["lost_in_evaluation"]
    duplicated = (
        result["duplicated_cases"]
        + result["duplicated_sms"]
        + result["notified_twice_in_evaluation"]
    )
    recoveries = [r["recovered_s"] for r in log.recoveries if r["recovered_s"] is not None]
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": duration,
        "offered_rate_per_s": rate,
        "faults": dict(log.counts),
        "faults_total": sum(log.counts.values()),
        "faults_by_kind": log.by_kind(),
        "client_failures_before_receipt": dict(failures),
        "department_actions": dict(actions),
        "probes_sent": probe.sent,
        "lost": lost,
        "duplicated": duplicated,
        "kpis_equal_recount": result["kpi_recount"]["counters_equal_recount"],
        "evaluation_agrees_with_routing": result["kpi_recount"]["facts_agree_with_routing"],
        "max_recovery_s": max(recoveries, default=None),
        "faults_not_recovered_in_time": [
            r for r in log.recoveries if r["recovered_s"] is None and r["fault"] != "poison_message"
        ],
        "recoveries": log.recoveries,
        **result,
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    console.print(text)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text + "\n")
    unexplained = duplicated - result["duplicated_sms_after_a_sender_died_mid_call"]
    failed_faults = {k: n for k, n in log.counts.items() if k.endswith("_failed")}
    # A fault that could not be injected fails the run (it did not test what it claims); one
    # that took longer than its timeout to recover is reported (a loaded machine is slow to
    # restart processes) and the ledger decides.
    unrecovered = summary["faults_not_recovered_in_time"]
    ok = (
        lost == 0
        and (unexplained if tolerate_mid_call_resends else duplicated) == 0
        and result["outbox_backlog"] == 0
        and result["dead_letters_match_poison"]
        and summary["kpis_equal_recount"]
        and summary["evaluation_agrees_with_routing"]
        and not failed_faults
    )
    kpis = result["kpi_recount"]
    console.print(
        f"[{'green' if ok else 'red'}]lost {lost}, duplicated {duplicated} "
        f"({duplicated - unexplained} of them resent after a sender died mid-call); "
        f"KPI counters {'=' if kpis['counters_equal_recount'] else '≠'} recount "
        f"({kpis['counter_rows']} rows), evaluation vs routing: "
        f"{kpis['cases_disagreeing_with_routing']} cases disagree "
        f"(acknowledged {kpis['city_totals']['acknowledged']}, "
        f"completed {kpis['city_totals']['completed']}); "
        f"faults not injected {failed_faults or 0}, faults not recovered within their "
        f"timeout {len(unrecovered)}[/]"
    )
    raise typer.Exit(0 if ok else 1)


if __name__ == "__main__":
    app()
