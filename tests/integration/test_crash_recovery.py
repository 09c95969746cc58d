"""A service killed between its database commit and its offset commit does no double work."""

from __future__ import annotations

import json
import signal

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.routing.app import MIGRATIONS, SCHEMA, seed
from services.routing.settings import RoutingSettings
from shared import topics
from shared.messaging.consumer import group_id
from shared.settings import DatabaseSettings
from tests.helpers import (
    bootstrap,
    eventually,
    kafka_settings,
    migrate,
    open_pool,
    produce_envelope,
    read_topic,
)
from tests.integration.test_routing_consumer import opinion_envelope
from tests.processes import ServiceProcess, service_env

pytestmark = pytest.mark.integration


async def _committed_offsets(group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def test_killed_after_db_commit_before_offset_commit(
    infra, database_url, topic_prefix, tmp_path
):
    kafka = kafka_settings(topic_prefix)
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(RoutingSettings(kafka=kafka, database=DatabaseSettings(url=database_url)))
    routing = ServiceProcess(
        "routing",
        service_env("routing", database_url=database_url, topic_prefix=topic_prefix),
        tmp_path,
    )
    pool = await open_pool(database_url, SCHEMA)
    try:
        routing.start(extra_env={"MINYI_FAILPOINTS": "after_handler_commit"})
        envelope = opinion_envelope()
        await produce_envelope(kafka.topic(topics.OPINION), envelope)

        # The process dies the instant its transaction commits: no offset commit, no relay.
        assert routing.wait_exit(timeout=60) == 137
        assert await pool.fetchval("SELECT count(*) FROM cases") == 1
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
        group = group_id(kafka, service="routing", topic=topics.OPINION)
        assert await _committed_offsets(group) == 0

        # Restarted: Kafka redelivers the message, the inbox recognises it, the offset moves on.
        routing.start()

        async def offset_committed() -> bool:
            return await _committed_offsets(group) == 1

        await eventually(offset_committed, what="the redelivered message's offset commit")
        assert await pool.fetchval("SELECT count(*) FROM cases") == 1
        assert await pool.fetchval("SELECT count(*) FROM processed_messages") == 1
        records = await read_topic(kafka.topic(topics.CASE), at_least=1)
        assert len(records) == 1
        assert json.loads(records[0].value)["causation_id"] == str(envelope.event_id)
        # SIGTERM: a graceful stop (uvicorn re-raises the signal once shutdown is complete).
        assert routing.stop() in (0, -signal.SIGTERM), routing.log_tail()
        assert '"service_stopped"' in routing.log_text()
    finally:
        routing.stop()
        await pool.close()
