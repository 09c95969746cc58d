"""The services as processes for the security tests: one stack per module (a fresh database,
a topic prefix of its own, seeded reference data and dev accounts), and sign-in helpers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from tests.infra import Infra
from tests.processes import ServiceProcess, run_command, service_env

SERVICES = ("intake", "routing", "notification", "evaluation")
DEV_PASSWORD = "minyi-dev-password"
WECHAT_TOKEN = "security-test-wechat-token"

T = TypeVar("T")


@dataclass
class Stack:
    services: dict[str, ServiceProcess]
    database_url: str
    topic_prefix: str
    tokens: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.services[name].url

    def sign_in(self, client_id: str) -> str:
        if client_id not in self.tokens:
            answer = httpx.post(
                f"{self.url('routing')}/api/v1/auth/token",
                json={"client_id": client_id, "client_secret": DEV_PASSWORD},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            self.tokens[client_id] = answer.json()["access_token"]
        return self.tokens[client_id]

    def bearer(self, client_id: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.sign_in(client_id)}"}


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def running_stack(
    infra: Infra,
    log_dir: Path,
    *,
    services: tuple[str, ...] = SERVICES,
    extra_env: dict[str, dict[str, str]] | None = None,
) -> Iterator[Stack]:
    """`services` as processes on a database and topic prefix of their own (dropped after)."""
    name = f"t_sec_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(infra.database_url, f'CREATE DATABASE "{name}"'))
    database_url = _with_database(infra.database_url, name)
    topic_prefix = f"t{uuid.uuid4().hex[:10]}."
    processes: dict[str, ServiceProcess] = {}
    try:
        for service in services:
            env = service_env(
                service,
                database_url=database_url,
                topic_prefix=topic_prefix,
                extra=(extra_env or {}).get(service),
            )
            run_command(service, "migrate", env)
            run_command(service, "seed", env)
            processes[service] = ServiceProcess(service, env, log_dir)
        for process in processes.values():
            process.start(wait_ready=False)
        for process in processes.values():
            process.wait_ready()
        yield Stack(processes, database_url, topic_prefix)
    finally:
        for process in processes.values():
            process.stop()
        asyncio.run(_admin(infra.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def eventually(probe: Callable[[], T | None], *, timeout: float = 60, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def submit_opinion(stack: Stack, *, station_id: str = "zeguo-1", **extra: Any) -> dict[str, Any]:
    """An online-form opinion about traffic (routed to `transport`); its receipt."""
    body = {
        "channel": "online",
        "station_id": station_id,
        "category_id": "traffic",
        "content": "泽国镇文化路口红绿灯时间太短，老人过马路来不及",
        **extra,
    }
    answer = httpx.post(f"{stack.url('intake')}/api/v1/opinions", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    receipt: dict[str, Any] = answer.json()
    return receipt


def case_of(stack: Stack, opinion_id: str) -> dict[str, Any]:
    """Routing's case made from the opinion (waits for it)."""

    def probe() -> dict[str, Any] | None:
        r = httpx.get(
            f"{stack.url('routing')}/api/v1/cases",
            params={"opinion_id": opinion_id},
            headers=stack.bearer("operator"),
            timeout=30,
        )
        return r.json() if r.status_code == 200 else None

    return eventually(probe, what=f"the case of opinion {opinion_id}")


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
