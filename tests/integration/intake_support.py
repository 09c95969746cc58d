"""Intake in-process (the app's runtime started by hand) with an httpx client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from services.intake.app import MIGRATIONS, SCHEMA, build_app, seed
from services.intake.settings import (
    IntakeSettings,
    RateLimitSettings,
    WeChatSettings,
)
from shared.auth import AuthSettings, Principal, Role, issue_token
from shared.db.pool import Pool
from shared.runtime import ServiceRuntime
from shared.settings import DatabaseSettings, OutboxSettings
from tests.helpers import kafka_settings, migrate

AUTH = AuthSettings(secret=SecretStr("intake-tests-secret-0123456789-abcdefghijklmnop"))
WECHAT_TOKEN = "AAAAA"  # the Token of WeChat's own plaintext-mode example


@dataclass
class Intake:
    http: httpx.AsyncClient
    runtime: ServiceRuntime
    settings: IntakeSettings

    @property
    def pool(self) -> Pool:
        return self.runtime.pool

    async def count(self, table: str, where: str = "true") -> int:
        value: int = await self.pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}")
        return value


def token(role: Role, station_id: str | None = None, subject: str = "clerk-1") -> dict[str, str]:
    principal = Principal(subject=subject, role=role, station_id=station_id)
    return {"Authorization": f"Bearer {issue_token(AUTH, principal)}"}


def make_settings(database_url: str, topic_prefix: str, **overrides: Any) -> IntakeSettings:
    values: dict[str, Any] = {
        "kafka": kafka_settings(topic_prefix),
        "database": DatabaseSettings(url=database_url),
        "outbox": OutboxSettings(poll_interval_s=0.2),
        "auth": AUTH,
        "wechat": WeChatSettings(token=SecretStr(WECHAT_TOKEN), account_id="gh_97417a04a28d"),
        "rate_limit": RateLimitSettings(per_address="10000/minute", per_phone="10000/hour"),
    }
    values.update(overrides)
    return IntakeSettings(**values)


@asynccontextmanager
async def running_intake(
    database_url: str,
    topic_prefix: str,
    *,
    clock: Callable[[], datetime] | None = None,
    wechat_clock: Callable[[], datetime] | None = None,
    **overrides: Any,
) -> AsyncIterator[Intake]:
    """`clock` (aware datetimes) replaces the system clock for the station rules,
    `wechat_clock` for the freshness of WeChat's signed timestamps."""
    settings = make_settings(database_url, topic_prefix, **overrides)
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(settings)
    app = build_app(settings, clock=clock, wechat_clock=wechat_clock)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            yield Intake(http, runtime, settings)
    finally:
        await runtime.stop()


IntakeFactory = Callable[..., Any]
