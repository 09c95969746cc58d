"""The raw limits on this machine: Kafka and PostgreSQL moving the same data with no processing."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def kafka_produce_consume(bootstrap: str, *, count: int, size: int) -> dict[str, Any]:
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    await admin.close()
    payload = b"x" * size
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, payload, key=str(i % 997).encode()) for i in range(count)]
    await asyncio.gather(*futures)
    produce_s = time.perf_counter() - started
    await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    started = time.perf_counter()
    seen = 0
    while seen < count:
        batch = await consumer.getmany(timeout_ms=500, max_records=5000)
        seen += sum(len(v) for v in batch.values())
        await consumer.commit()
    consume_s = time.perf_counter() - started
    await consumer.stop()
    return {
        "messages": count,
        "message_bytes": size,
        "produce_per_s": round(count / produce_s),
        "consume_per_s": round(count / consume_s),
    }


async def postgres_writes(database_url: str, *, count: int, size: int) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TEMP TABLE raw_rows (id uuid PRIMARY KEY, receipt text, content text,"
            " created_at timestamptz DEFAULT now())"
        )
        rows = [(uuid.uuid4(), f"R{i:09d}", "x" * size) for i in range(count)]
        # One transaction per row, as a request handler commits: the per-request limit.
        single = rows[: min(count, 5000)]
        started = time.perf_counter()
        for row in single:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO raw_rows (id, receipt, content) VALUES ($1, $2, $3)", *row
                )
        per_tx_s = time.perf_counter() - started
        await conn.execute("TRUNCATE raw_rows")
        started = time.perf_counter()
        await conn.executemany(
            "INSERT INTO raw_rows (id, receipt, content) VALUES ($1, $2, $3)", rows
        )
        many_s = time.perf_counter() - started
        await conn.execute("TRUNCATE raw_rows")
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "raw_rows", records=rows, columns=["id", "receipt", "content"]
        )
        copy_s = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "rows": count,
        "row_bytes": size,
        "one_tx_per_row_per_s": round(len(single) / per_tx_s),
        "executemany_per_s": round(count / many_s),
        "copy_per_s": round(count / copy_s),
    }
