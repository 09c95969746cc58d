"""The transactional outbox against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.events import Channel, EventEnvelope, OpinionSubmittedV1
from shared.messaging.broker import ensure_topics
from shared.messaging.outbox import add_to_outbox
from shared.messaging.relay import OutboxRelay
from tests.helpers import bootstrap, kafka_settings, migrate, open_pool, read_topic

pytestmark = pytest.mark.integration
SCHEMA = "plumbing"
NO_SERVICE_MIGRATIONS = Path(__file__).parent / "no_migrations"


def _envelope() -> EventEnvelope:
    opinion = OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.ONLINE,
        station_id="taiping-1",
        town_id="taiping",
        content="公交站台缺少遮雨棚",
        submitted_at=datetime.now(UTC),
        voter_reachable=False,
    )
    return EventEnvelope.wrap(opinion, producer="test", correlation_id=opinion.opinion_id)


class Boom(Exception):
    pass


@pytest.fixture
async def relay_setup(infra, database_url, topic_prefix):
    await migrate(database_url, SCHEMA, NO_SERVICE_MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    kafka = kafka_settings(topic_prefix)
    await ensure_topics(kafka, [kafka.topic(topics.OPINION)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), acks="all", enable_idempotence=True)
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes, headers: dict[str, str]):
        return await producer.send(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )

    def relay(batch_size: int = 100) -> OutboxRelay:
        return OutboxRelay(pool=pool, send=send, service="test", batch_size=batch_size)

    yield pool, relay, kafka.topic(topics.OPINION)
    await producer.stop()
    await pool.close()


async def test_an_event_whose_transaction_rolls_back_is_never_published(relay_setup):
    pool, relay, topic = relay_setup
    rolled_back, committed = _envelope(), _envelope()
    prefix = topic.removesuffix(topics.OPINION)

    async def write_then_fail() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, [rolled_back], topic_prefix=prefix)
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [committed], topic_prefix=prefix)

    assert await relay().publish_batch() == 1
    assert await relay().publish_batch() == 0
    records = await read_topic(topic, at_least=1)
    assert [json.loads(r.value)["event_id"] for r in records] == [str(committed.event_id)]
    assert records[0].key == committed.aggregate_id.encode()
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_outbox_rows_need_a_transaction(relay_setup):
    pool, _, _ = relay_setup
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await add_to_outbox(conn, [_envelope()])


async def test_concurrent_relays_keep_each_aggregates_order(relay_setup):
    pool, relay, topic = relay_setup
    prefix = topic.removesuffix(topics.OPINION)
    first = _envelope()
    # 200 events of one aggregate, committed in order in separate transactions.
    same_key = [first] + [
        first.caused(first.payload_as(OpinionSubmittedV1), producer="t") for _ in range(199)
    ]
    for envelope in same_key:
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, [envelope], topic_prefix=prefix)
    relays = [relay(batch_size=7) for _ in range(4)]

    async def drain(r: OutboxRelay) -> None:
        while await pool.fetchval("SELECT count(*) FROM outbox"):
            await r.publish_batch()

    await asyncio.gather(*(drain(r) for r in relays))
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    records = await read_topic(topic, at_least=200)
    assert [json.loads(r.value)["event_id"] for r in records] == [str(e.event_id) for e in same_key]


async def test_concurrent_relays_publish_each_row_once(relay_setup):
    pool, relay, topic = relay_setup
    prefix = topic.removesuffix(topics.OPINION)
    envelopes = [_envelope() for _ in range(300)]
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, envelopes, topic_prefix=prefix)

    relays = [relay(batch_size=20) for _ in range(3)]

    async def drain(r: OutboxRelay) -> int:
        total = 0
        while n := await r.publish_batch():
            total += n
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    while n := await relays[0].publish_batch():  # a relay that lost the lock stopped early
        counts.append(n)
    assert sum(counts) == 300
    records = await read_topic(topic, at_least=300)
    ids = [json.loads(r.value)["event_id"] for r in records]
    assert sorted(ids) == sorted(str(e.event_id) for e in envelopes)
