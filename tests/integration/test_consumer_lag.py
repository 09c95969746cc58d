"""Consumer lag as exported by every service (end offset − committed offset)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from shared.messaging.broker import ensure_topics
from shared.messaging.lag import group_lag
from tests.helpers import bootstrap, kafka_settings, produce

pytestmark = pytest.mark.integration


async def test_lag_is_what_the_group_has_not_committed(infra, topic_prefix):
    kafka = kafka_settings(topic_prefix).model_copy(update={"partitions": 1})
    topic = kafka.topic("minyi.lagtest")
    await ensure_topics(kafka, [topic])
    for i in range(5):
        await produce(topic, f"m{i}".encode(), key=b"k")
    group = f"{topic_prefix}lag-group"
    committer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(), group_id=group, enable_auto_commit=False
    )
    await committer.start()
    committer.assign([TopicPartition(topic, 0)])
    await committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "")})
    await committer.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        assert await group_lag(admin, reader, group, [topic]) == {topic: 3}
        assert await group_lag(admin, reader, f"{group}-new", [topic]) == {topic: 5}
    finally:
        await reader.stop()
        await admin.close()
