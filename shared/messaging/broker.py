"""The KafkaBroker every service builds (idempotent producer, acks=all) and its topics."""

from __future__ import annotations

import contextlib
import logging
import typing
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage as KafkaMessageAnnotation
from faststream.middlewares import AckPolicy

from shared.db.pool import Pool
from shared.events import EventEnvelope
from shared.messaging.batch import BatchConsumer
from shared.messaging.consumer import BATCH_MAX_RECORDS, BATCH_TIMEOUT_MS, ConsumerMiddleware
from shared.settings import KafkaSettings
from shared.topics import dead_letter

log = structlog.get_logger(__name__)


class MinyiBroker(KafkaBroker):
    """A KafkaBroker whose commit-after-success subscribers consume in batches.

    A service declares a subscriber as always, `broker.subscriber(topic, **subscriber_options(
    ...))(handler)` with `handler(envelope: EventEnvelope, msg: KafkaMessage)`; this broker
    registers a FastStream batch subscriber that runs the handler once per record inside one
    transaction per batch (shared/messaging/batch.py). `max_records=1` keeps FastStream's
    per-message subscribers. The AsyncAPI document describes the messages, not how they are
    read: it is generated from `asyncapi_broker`, a broker that is never started, on which every
    subscriber and publisher is declared per message.
    """

    def __init__(
        self,
        *args: Any,
        policy: ConsumerMiddleware,
        pool: Callable[[], Pool],
        max_records: int = BATCH_MAX_RECORDS,
        batch_timeout_ms: int = BATCH_TIMEOUT_MS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, middlewares=[policy], **kwargs)
        self.asyncapi_broker = KafkaBroker(*args, **kwargs)
        self._policy = policy
        self._pool = pool
        self._max_records = max_records
        self._batch_timeout_ms = batch_timeout_ms

    def publisher(self, *args: Any, **kwargs: Any) -> Any:
        self.asyncapi_broker.publisher(*args, **kwargs)
        return super().publisher(*args, **kwargs)

    def subscriber(self, *topics: Any, **options: Any) -> Any:
        def register(handler: Callable[..., Any]) -> Any:
            self.asyncapi_broker.subscriber(*topics, **options)(handler)
            if not self._batches(options, handler):
                return super(MinyiBroker, self).subscriber(*topics, **options)(handler)
            consumer = BatchConsumer(policy=self._policy, pool=self._pool, handler=handler)

            async def consume_batch(msg: KafkaMessageAnnotation) -> None:
                await consumer(msg)

            return super(MinyiBroker, self).subscriber(
                *topics,
                batch=True,
                max_records=self._max_records,
                batch_timeout_ms=self._batch_timeout_ms,
                include_in_schema=False,
                **options,
            )(consume_batch)

        return register

    def _batches(self, options: dict[str, Any], handler: Callable[..., Any]) -> bool:
        if self._max_records <= 1 or options.get("batch"):
            return False
        if options.get("ack_policy") is not AckPolicy.NACK_ON_ERROR:
            return False
        return _is_per_message_handler(handler)


def _is_per_message_handler(handler: Callable[..., Any]) -> bool:
    """`handler(envelope: EventEnvelope, msg: KafkaMessage)`, what BatchConsumer calls."""
    try:
        hints = typing.get_type_hints(handler, include_extras=True)
    except Exception:
        return False
    params = [name for name in hints if name != "return"]
    return (
        len(params) == 2
        and hints[params[0]] is EventEnvelope
        and hints[params[1]] == KafkaMessageAnnotation
    )


def build_broker(
    settings: KafkaSettings,
    *,
    service: str,
    middleware: ConsumerMiddleware,
    pool: Callable[[], Pool],
    max_records: int = BATCH_MAX_RECORDS,
) -> MinyiBroker:
    return MinyiBroker(
        settings.bootstrap_servers,
        policy=middleware,
        pool=pool,
        max_records=max_records,
        client_id=f"minyi-{service}",
        acks="all",
        enable_idempotence=True,
        linger_ms=5,  # the relay enqueues a whole batch: let the producer fill its requests
        graceful_timeout=settings.graceful_timeout_s,
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
