"""Routing's consumer against real Kafka and PostgreSQL: redelivery, dead letters, retries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.routing.app import MIGRATIONS, SCHEMA, build_runtime, seed
from services.routing.settings import RoutingSettings
from shared import topics
from shared.events import Channel, EventEnvelope, OpinionSubmittedV1
from shared.settings import DatabaseSettings, OutboxSettings
from tests.helpers import eventually, kafka_settings, migrate, produce, produce_envelope, read_topic

pytestmark = pytest.mark.integration


def opinion_envelope(category_id: str | None = "traffic") -> EventEnvelope:
    opinion = OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.STATION_RECEPTION,
        station_id="zeguo-1",
        town_id="zeguo",
        category_id=category_id,
        content="路口红绿灯时间太短，老人过不去",
        submitted_at=datetime.now(UTC),
        voter_reachable=True,
    )
    return EventEnvelope.wrap(opinion, producer="intake", correlation_id=opinion.opinion_id)


async def start_routing(database_url: str, topic_prefix: str, *, seeded: bool = True, **kafka):
    settings = RoutingSettings(
        kafka=kafka_settings(topic_prefix, **kafka),
        database=DatabaseSettings(url=database_url),
        outbox=OutboxSettings(poll_interval_s=0.2),
    )
    await migrate(database_url, SCHEMA, MIGRATIONS)
    if seeded:
        await seed(settings)
    runtime = build_runtime(settings)
    await runtime.start()
    return runtime


@pytest.fixture
async def routing(infra, database_url, topic_prefix):
    runtime = await start_routing(database_url, topic_prefix)
    yield runtime
    await runtime.stop()


async def _cases(runtime) -> int:
    count: int = await runtime.pool.fetchval("SELECT count(*) FROM cases")
    return count


async def test_a_redelivered_event_changes_nothing_the_second_time(routing, topic_prefix):
    envelope = opinion_envelope()
    opinion_topic = topic_prefix + topics.OPINION
    await produce_envelope(opinion_topic, envelope)
    await eventually(lambda: _cases(routing), what="the case")
    # The same event again (a producer retry, a replay), then the same opinion re-published
    # under a new event id (an upstream bug): still one case, one case.assigned.
    await produce_envelope(opinion_topic, envelope)
    await produce_envelope(opinion_topic, envelope.model_copy(update={"event_id": uuid4()}))

    async def processed() -> bool:
        count: int = await routing.pool.fetchval("SELECT count(*) FROM processed_messages")
        return count == 2

    await eventually(processed, what="both redeliveries to be consumed")
    assert await _cases(routing) == 1
    assert await routing.pool.fetchval("SELECT count(*) FROM case_transitions") == 1
    records = await read_topic(topic_prefix + topics.CASE, at_least=1)
    assert len(records) == 1
    assigned = json.loads(records[0].value)
    assert assigned["event_type"] == "case.assigned"
    assert assigned["causation_id"] == str(envelope.event_id)
    assert assigned["correlation_id"] == str(envelope.correlation_id)
    assert assigned["payload"]["department_id"] == "transport"
    assert records[0].key == assigned["aggregate_id"].encode()


async def test_a_poison_message_is_dead_lettered_and_the_next_one_processed(routing, topic_prefix):
    opinion_topic = topic_prefix + topics.OPINION
    await produce(opinion_topic, b"{not json at all", key=b"k1")
    broken = opinion_envelope().model_dump(mode="json")
    broken["payload"]["channel"] = "carrier-pigeon"
    await produce(opinion_topic, json.dumps(broken).encode(), key=b"k2")
    good = opinion_envelope()
    await produce_envelope(opinion_topic, good)

    await eventually(lambda: _cases(routing), what="the good message's case")
    dead = await read_topic(topics.dead_letter(opinion_topic), at_least=2)
    headers = {r.key: dict(r.headers) for r in dead}
    assert sorted(headers) == [b"k1", b"k2"]
    assert all(h["dlq_source_topic"] == opinion_topic.encode() for h in headers.values())
    assert b"ValidationError" in headers[b"k2"]["dlq_reason"]
    assert b"carrier-pigeon" in headers[b"k2"]["dlq_reason"]
    assert (
        await routing.pool.fetchval("SELECT opinion_id FROM cases")
        == good.payload_as(OpinionSubmittedV1).opinion_id
    )


async def test_a_message_that_keeps_failing_is_retried_a_bounded_number_of_times(
    infra, database_url, topic_prefix
):
    # Unseeded: routing has no fallback department, so the handler fails every time.
    runtime = await start_routing(database_url, topic_prefix, seeded=False, max_attempts=3)
    try:
        opinion_topic = topic_prefix + topics.OPINION
        envelope = opinion_envelope(category_id=None)
        await produce_envelope(opinion_topic, envelope)
        dead = await read_topic(topics.dead_letter(opinion_topic), at_least=1)
        headers = dict(dead[0].headers)
        assert headers["dlq_attempts"] == b"3"
        assert b"fallback department" in headers["dlq_reason"]
        assert json.loads(dead[0].value)["event_id"] == str(envelope.event_id)
        # Nothing half-written: the failing transactions rolled back.
        assert await runtime.pool.fetchval("SELECT count(*) FROM processed_messages") == 0
        assert await runtime.pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await runtime.stop()
