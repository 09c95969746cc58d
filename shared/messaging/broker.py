"""The KafkaBroker every service builds (idempotent producer, acks=all) and its topics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from shared.messaging.consumer import ConsumerMiddleware
from shared.settings import KafkaSettings
from shared.topics import dead_letter

log = structlog.get_logger(__name__)


def build_broker(
    settings: KafkaSettings, *, service: str, middleware: ConsumerMiddleware
) -> KafkaBroker:
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=f"minyi-{service}",
        acks="all",
        enable_idempotence=True,
        graceful_timeout=settings.graceful_timeout_s,
        middlewares=[middleware],
        logger=logging.getLogger(f"minyi.{service}.faststream"),
        description=f"Minyi {service} service",
    )


async def ensure_topics(settings: KafkaSettings, names: Iterable[str]) -> None:
    """Create each topic and its `.dlq` if missing (partitions and replication from settings)."""
    wanted = sorted({n for name in names for n in (name, dead_letter(name))})
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return
        with contextlib.suppress(TopicAlreadyExistsError):  # another replica was quicker
            await admin.create_topics(
                [
                    NewTopic(
                        name=n,
                        num_partitions=settings.partitions,
                        replication_factor=settings.replication_factor,
                    )
                    for n in missing
                ]
            )
        log.info("topics_created", topics=missing)
    finally:
        await admin.close()
