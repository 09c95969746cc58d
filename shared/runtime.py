"""What every service runs on: a pool on its schema, a KafkaBroker, the outbox relay and
other PostgreSQL-driven loops, opened and closed in one lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI

from shared.db.migrations import ensure_current, load_migrations
from shared.db.pool import Pool, connect, create_pool
from shared.messaging.batch import pool_in_scope
from shared.messaging.broker import MinyiBroker, build_broker, ensure_topics
from shared.messaging.consumer import BATCH_MAX_RECORDS, ConsumerMiddleware
from shared.messaging.lag import LagMonitor
from shared.messaging.relay import OutboxRelay
from shared.messaging.worker import NotifiedLoop
from shared.settings import DatabaseSettings, KafkaSettings, OutboxSettings

log = structlog.get_logger(__name__)


@dataclass
class LoopSpec:
    """A NotifiedLoop to run while the service runs, built once the pool exists."""

    name: str
    channel: str
    work_once: Callable[[Pool], Callable[[], Awaitable[int]]]
    poll_interval_s: float = 1.0


@dataclass
class ServiceRuntime:
    service: str
    schema: str
    kafka: KafkaSettings
    database: DatabaseSettings
    outbox: OutboxSettings
    migrations_dir: Path
    topics: Iterable[str] = ()
    loops: list[LoopSpec] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    consume_batch_max_records: int = BATCH_MAX_RECORDS
    """Records per consumed batch and transaction; 1: one message, one transaction."""

    def __post_init__(self) -> None:
        self.middleware = ConsumerMiddleware(
            service=self.service,
            max_attempts=self.kafka.max_attempts,
            retry_backoff_s=self.kafka.retry_backoff_s,
        )
        self.broker: MinyiBroker = build_broker(
            self.kafka,
            service=self.service,
            middleware=self.middleware,
            pool=self._open_pool,
            max_records=self.consume_batch_max_records,
        )
        self.middleware.bind(self.publish_raw)
        self._pool: Pool | None = None
        self._running: list[NotifiedLoop] = []
        self._lag: LagMonitor | None = None

    @property
    def pool(self) -> Pool:
        """The service's pool; while a consumed batch is handled, its transaction's connection
        (shared/messaging/batch.py), so that the handlers' writes join the batch."""
        return pool_in_scope(self._open_pool())

    def _open_pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.service}: the database pool is not open")
        return self._pool

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]
    ) -> None:
        await self.broker.publish(
            value, topic, key=key, headers={"content-type": "application/json", **headers}
        )

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        """Enqueue without waiting; the returned future completes on the broker's ack."""
        future: Awaitable[Any] = await self.broker.publish(
            value,
            topic,
            key=key,
            headers={"content-type": "application/json", **headers},
            no_confirm=True,
        )
        return future

    async def _connect(self) -> asyncpg.Connection[Any]:
        return await connect(self.database, schema=self.schema, service=self.service)

    async def start(self) -> None:
        conn = await self._connect()
        try:
            await ensure_current(conn, self.schema, load_migrations(self.migrations_dir))
        finally:
            await conn.close()
        self._pool = await create_pool(self.database, schema=self.schema, service=self.service)
        await ensure_topics(self.kafka, [self.kafka.topic(t) for t in self.topics])
        await self.broker.start()
        self._lag = LagMonitor(
            service=self.service,
            bootstrap_servers=self.kafka.bootstrap_servers,
            groups={
                str(group): list(getattr(s, "topic_names", ()))
                for s in self.broker.subscribers
                if (group := getattr(s, "group_id", None))
            },
            interval_s=self.kafka.lag_interval_s,
        )
        self._lag.start()
        relay = OutboxRelay(
            pool=self._open_pool(),
            send=self.send_raw,
            service=self.service,
            batch_size=self.outbox.batch_size,
        )
        specs = [
            LoopSpec(
                name=f"{self.service}-outbox-relay",
                channel=f"{self.schema}_outbox",
                work_once=lambda _pool: relay.publish_batch,
                poll_interval_s=self.outbox.poll_interval_s,
            ),
            *self.loops,
        ]
        for spec in specs:
            loop = NotifiedLoop(
                name=spec.name,
                channel=spec.channel,
                connect=self._connect,
                work_once=spec.work_once(self._open_pool()),
                poll_interval_s=spec.poll_interval_s,
            )
            loop.start()
            self._running.append(loop)
        log.info("service_started", kafka=self.kafka.bootstrap_servers)

    async def stop(self) -> None:
        # Stop consuming first: in-flight handlers finish (graceful_timeout), offsets commit.
        await self.broker.stop()
        if self._lag is not None:
            await self._lag.stop()
        for loop in self._running:
            await loop.stop()
        self._running.clear()
        for close in self.closers:
            await close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        log.info("service_stopped")

    async def ready(self) -> dict[str, str]:
        checks = {"postgres": "down", "kafka": "down"}
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.fetchval("SELECT 1"), 2)
                checks["postgres"] = "ok"
            except Exception as exc:
                checks["postgres"] = f"error: {type(exc).__name__}"
        try:
            if await self.broker.ping(timeout=2):
                checks["kafka"] = "ok"
        except Exception as exc:
            checks["kafka"] = f"error: {type(exc).__name__}"
        return checks

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
