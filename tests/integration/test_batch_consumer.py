"""Batch consumption on real Kafka and PostgreSQL: one transaction per batch, and every guarantee
of the per-message consumer kept (dead letters, exactly-once effects, crash between the database
commit and the offset commit, redelivery)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka.annotations import KafkaMessage

from services.routing.app import MIGRATIONS, SCHEMA, build_runtime, seed
from services.routing.settings import RoutingSettings
from shared import topics
from shared.events import EventEnvelope, OpinionSubmittedV1
from shared.messaging.broker import ensure_topics
from shared.messaging.consumer import group_id, subscriber_options
from shared.metrics import CONSUMER_BATCHES, EVENTS_CONSUMED
from shared.runtime import ServiceRuntime
from shared.settings import DatabaseSettings, KafkaSettings, OutboxSettings
from tests.helpers import (
    bootstrap,
    eventually,
    kafka_settings,
    migrate,
    open_pool,
    produce,
    produce_envelope,
    read_topic,
)
from tests.integration.test_routing_consumer import opinion_envelope
from tests.processes import ServiceProcess, service_env

pytestmark = pytest.mark.integration

GOOD = 8


def _settings(database_url: str, kafka: KafkaSettings) -> RoutingSettings:
    return RoutingSettings(
        kafka=kafka,
        database=DatabaseSettings(url=database_url),
        outbox=OutboxSettings(poll_interval_s=0.2),
    )


async def _prepared(database_url: str, topic_prefix: str) -> RoutingSettings:
    kafka = kafka_settings(topic_prefix)
    await migrate(database_url, SCHEMA, MIGRATIONS)
    settings = _settings(database_url, kafka)
    await seed(settings)
    # Topics first, so that everything produced below waits for the consumer's first getmany.
    await ensure_topics(kafka, [kafka.topic(t) for t in (topics.OPINION, topics.CASE)])
    await eventually(lambda: _has_leaders(kafka.topic(topics.OPINION)), what="the new topic")
    return settings


async def _has_leaders(topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = described.get("partitions", [])
    return (
        described.get("error_code") == 0
        and bool(partitions)
        and all(p.get("leader", -1) >= 0 for p in partitions)
    )


def _poison() -> bytes:
    """A valid envelope whose payload the handler rejects (a ValidationError in the handler)."""
    broken = opinion_envelope().model_dump(mode="json")
    broken["payload"]["channel"] = "carrier-pigeon"
    return json.dumps(broken).encode()


def _value(metric: object) -> float:
    return float(metric._value.get())  # type: ignore[attr-defined]


async def _count(runtime: ServiceRuntime, table: str) -> int:
    count: int = await runtime.pool.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def _committed_offsets(group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def test_a_poison_message_in_a_batch_is_dead_lettered_and_the_others_processed_once(
    infra, database_url, topic_prefix
):
    settings = await _prepared(database_url, topic_prefix)
    opinion_topic = settings.kafka.topic(topics.OPINION)
    # One key, one partition: a single batch, the poison in the middle of it.
    good = [opinion_envelope() for _ in range(GOOD)]
    for envelope in good[: GOOD // 2]:
        await produce(opinion_topic, envelope.model_dump_json().encode(), key=b"one")
    await produce(opinion_topic, _poison(), key=b"one")
    await produce(opinion_topic, b"{not json", key=b"one")  # cannot even be parsed
    for envelope in good[GOOD // 2 :]:
        await produce(opinion_topic, envelope.model_dump_json().encode(), key=b"one")

    fell_back = CONSUMER_BATCHES.labels("routing", opinion_topic, "one_by_one")
    processed = EVENTS_CONSUMED.labels("routing", opinion_topic, "processed")
    fell_back_before, processed_before = _value(fell_back), _value(processed)
    runtime = build_runtime(settings)
    await runtime.start()
    try:
        dead = await read_topic(topics.dead_letter(opinion_topic), at_least=2)
        await eventually(lambda: _all_cases(runtime, GOOD), what="the good messages' cases")
        reasons = sorted(dict(r.headers)["dlq_reason"] for r in dead)
        assert len(dead) == 2
        assert b"carrier-pigeon" in reasons[0] or b"carrier-pigeon" in reasons[1]
        assert all(dict(r.headers)["dlq_error_type"] == b"ValidationError" for r in dead)
        # Every good message exactly once: one case, one processed row, one case.assigned each.
        assert await _opinion_cases(runtime) == GOOD
        assert await _count(runtime, "processed_messages") == GOOD
        opinions = {e.payload_as(OpinionSubmittedV1).opinion_id for e in good}
        rows = await runtime.pool.fetch("SELECT opinion_id FROM cases WHERE opinion_id IS NOT NULL")
        assert {r["opinion_id"] for r in rows} == opinions
        records = await read_topic(settings.kafka.topic(topics.CASE), at_least=GOOD)
        assert _assigned_per_opinion(records) == Counter({str(o): 1 for o in opinions})
        # The batch's transaction failed on the poison and was handled one by one; what the
        # rolled-back pass counted was dropped.
        assert _value(fell_back) - fell_back_before >= 1
        assert _value(processed) - processed_before == GOOD
    finally:
        await runtime.stop()


async def _all_cases(runtime: ServiceRuntime, expected: int) -> bool:
    return await _opinion_cases(runtime) == expected


async def _opinion_cases(runtime: ServiceRuntime) -> int:
    """Cases of one opinion each (similar opinions also open an aggregate case, opinion_id NULL)."""
    count: int = await runtime.pool.fetchval(
        "SELECT count(*) FROM cases WHERE opinion_id IS NOT NULL"
    )
    return count


def _assigned_per_opinion(records: list[Any]) -> Counter[str]:
    return Counter(
        e["payload"]["opinion_id"]
        for e in (json.loads(r.value) for r in records)
        if e["event_type"] == "case.assigned" and e["payload"].get("opinion_id")
    )


async def test_a_redelivered_batch_changes_nothing(infra, database_url, topic_prefix):
    settings = await _prepared(database_url, topic_prefix)
    opinion_topic = settings.kafka.topic(topics.OPINION)
    batch = [opinion_envelope() for _ in range(GOOD)]
    for envelope in batch:
        await produce_envelope(opinion_topic, envelope)
    committed = CONSUMER_BATCHES.labels("routing", opinion_topic, "committed")
    committed_before = _value(committed)
    runtime = build_runtime(settings)
    await runtime.start()
    try:
        await eventually(lambda: _all_cases(runtime, GOOD), what="the batch's cases")
        assert _value(committed) > committed_before
        before = {
            table: await _count(runtime, table)
            for table in ("cases", "case_transitions", "processed_messages", "deadline_timers")
        }
        duplicates = EVENTS_CONSUMED.labels("routing", opinion_topic, "duplicate")
        duplicates_before = _value(duplicates)
        # The whole batch again (a replay, or a rebalance before the offset commit).
        for envelope in batch:
            await produce_envelope(opinion_topic, envelope)

        async def all_seen() -> bool:
            return _value(duplicates) - duplicates_before >= GOOD

        await eventually(all_seen, what="the redelivered batch")
        after = {table: await _count(runtime, table) for table in before}
        assert after == before
        records = await read_topic(settings.kafka.topic(topics.CASE), at_least=GOOD)
        opinions = {str(e.payload_as(OpinionSubmittedV1).opinion_id) for e in batch}
        assert _assigned_per_opinion(records) == Counter(dict.fromkeys(opinions, 1))
    finally:
        await runtime.stop()


async def test_killed_after_the_batch_commit_before_the_offset_commit(
    infra, database_url, topic_prefix, tmp_path
):
    settings = await _prepared(database_url, topic_prefix)
    kafka = settings.kafka
    batch = [opinion_envelope() for _ in range(GOOD)]
    for envelope in batch:
        await produce_envelope(kafka.topic(topics.OPINION), envelope)
    routing = ServiceProcess(
        "routing",
        service_env("routing", database_url=database_url, topic_prefix=topic_prefix),
        tmp_path,
    )
    pool = await open_pool(database_url, SCHEMA)
    group = group_id(kafka, service="routing", topic=topics.OPINION)
    try:
        routing.start(wait_ready=False, extra_env={"MINYI_FAILPOINTS": "after_batch_commit"})
        # The process dies the instant its first batch commits: no offset commit, no relay.
        assert routing.wait_exit(timeout=60) == 137
        done = await pool.fetchval("SELECT count(*) FROM processed_messages")
        assert done >= 1
        assert (
            await pool.fetchval("SELECT count(*) FROM cases WHERE opinion_id IS NOT NULL") == done
        )
        assert await pool.fetchval("SELECT count(*) FROM outbox") >= done
        assert await _committed_offsets(group) == 0

        routing.start()

        async def all_committed() -> bool:
            return await _committed_offsets(group) == GOOD

        await eventually(all_committed, what="every offset committed after the restart")
        assert (
            await pool.fetchval("SELECT count(*) FROM cases WHERE opinion_id IS NOT NULL") == GOOD
        )
        assert await pool.fetchval("SELECT count(*) FROM processed_messages") == GOOD
        records = await read_topic(kafka.topic(topics.CASE), at_least=GOOD)
        opinions = {str(e.payload_as(OpinionSubmittedV1).opinion_id) for e in batch}
        assert _assigned_per_opinion(records) == Counter(dict.fromkeys(opinions, 1))
    finally:
        routing.stop()
        await pool.close()


def test_subscribers_consume_in_batches_and_the_contract_stays_per_message(topic_prefix):
    settings = _settings("postgresql://127.0.0.1:1/unused", kafka_settings(topic_prefix))
    runtime = build_runtime(settings)
    assert {type(s).__name__ for s in runtime.broker.subscribers} == {"BatchSubscriber"}
    # The AsyncAPI document is declared per message: the envelope is what is on the topic.
    declared = runtime.broker.asyncapi_broker.subscribers
    assert {type(s).__name__ for s in declared} == {"DefaultSubscriber"}
    assert len(declared) == len(runtime.broker.subscribers)

    one_at_a_time = ServiceRuntime(
        service="routing",
        schema=SCHEMA,
        kafka=settings.kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        consume_batch_max_records=1,
    )

    async def on_event(envelope: EventEnvelope, msg: KafkaMessage) -> None:
        return None

    options = subscriber_options(settings.kafka, service="routing", topic=topics.OPINION)
    one_at_a_time.broker.subscriber(settings.kafka.topic(topics.OPINION), **options)(on_event)
    assert [type(s).__name__ for s in one_at_a_time.broker.subscribers] == ["DefaultSubscriber"]
