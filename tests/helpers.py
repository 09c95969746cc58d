"""Small helpers for tests against real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.db.migrations import apply_migrations, load_migrations
from shared.db.pool import Pool, connect, create_pool
from shared.events import EventEnvelope
from shared.settings import DatabaseSettings, KafkaSettings

T = TypeVar("T")


def bootstrap() -> str:
    return os.environ["KAFKA_BOOTSTRAP_SERVERS"]


def kafka_settings(topic_prefix: str, **overrides: Any) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap(),
        topic_prefix=topic_prefix,
        partitions=3,
        retry_backoff_s=0.05,
        **overrides,
    )


async def migrate(database_url: str, schema: str, migrations_dir: Path) -> None:
    conn = await connect(DatabaseSettings(url=database_url), schema=schema, service="test")
    try:
        await apply_migrations(conn, schema, load_migrations(migrations_dir))
    finally:
        await conn.close()


async def open_pool(database_url: str, schema: str) -> Pool:
    return await create_pool(DatabaseSettings(url=database_url), schema=schema, service="test")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy (the test's patience, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def produce(
    topic: str, value: bytes, *, key: bytes | None = None, headers: dict[str, str] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value,
            key=key,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
        )
    finally:
        await producer.stop()


async def produce_envelope(topic: str, envelope: EventEnvelope) -> None:
    await produce(
        topic,
        envelope.model_dump_json().encode(),
        key=envelope.aggregate_id.encode(),
        headers={"content-type": "application/json", **envelope.headers()},
    )


async def read_topic(
    topic: str, *, at_least: int = 0, quiet_s: float = 1.5, timeout: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic`, waiting for `at_least`, then for `quiet_s` without new ones."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap(),
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            fresh = [r for rs in batch.values() for r in rs]
            if fresh:
                records.extend(fresh)
                last_new = time.monotonic()
            elif len(records) >= at_least and time.monotonic() - last_new >= quiet_s:
                break
    finally:
        await consumer.stop()
    if len(records) < at_least:
        raise AssertionError(f"{topic}: expected at least {at_least} records, got {len(records)}")
    return records
