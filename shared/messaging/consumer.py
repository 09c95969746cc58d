"""Consumer plumbing: per-message log context, metrics, bounded retries and dead-lettering.

Subscribers use `AckPolicy.NACK_ON_ERROR` with auto-commit off, so the offset is committed only
after the handler (and the database transaction inside it) returned. The broker turns them into
batch subscribers (shared/messaging/batch.py: one transaction per batch, then one offset commit);
a batch whose transaction failed is handled one message at a time with this policy: a failing
message is retried up to `max_attempts` times, then published to `<topic>.dlq` with the
reason in its headers and acknowledged, so the consumer goes on. Messages that cannot even be
parsed are dead-lettered at once. Errors of the infrastructure itself (PostgreSQL down) are
retried without limit: the message is fine, the world is not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import asyncpg
import pydantic
import structlog
from aiokafka import ConsumerRecord
from faststream import BaseMiddleware
from faststream._internal.context.repository import ContextRepo
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy

from shared.messaging.inbox import Delivery
from shared.metrics import DEAD_LETTERED, EVENTS_CONSUMED, HANDLER_SECONDS
from shared.settings import KafkaSettings
from shared.topics import dead_letter

log = structlog.get_logger(__name__)

BATCH_MAX_RECORDS = 250
"""Records one batch subscriber takes at most per `getmany` (and per transaction)."""
BATCH_TIMEOUT_MS = 20
"""How long `getmany` waits when nothing is buffered (FastStream then sleeps as long again)."""

PublishDeadLetter = Callable[[str, bytes | None, bytes, dict[str, str]], Awaitable[Any]]

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be processed."""


POISON_ERRORS: tuple[type[BaseException], ...] = (
    PoisonMessage,
    pydantic.ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)


def subscriber_options(settings: KafkaSettings, *, service: str, topic: str) -> dict[str, Any]:
    """Options every Minyi subscriber uses: its own group, commit only after success."""
    return {
        "group_id": group_id(settings, service=service, topic=topic),
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
    }


def group_id(settings: KafkaSettings, *, service: str, topic: str) -> str:
    return f"{settings.topic_prefix}minyi.{service}.{topic.rsplit('.', 1)[-1]}"


def bind_message_context(service: str, record: ConsumerRecord[Any, Any]) -> None:
    """The log context of one message (handlers add their domain ids as they learn them)."""
    structlog.contextvars.clear_contextvars()
    headers = dict(record.headers or ())
    structlog.contextvars.bind_contextvars(
        service=service,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        correlation_id=(headers.get("correlation_id") or b"").decode() or None,
        event_type=(headers.get("event_type") or b"").decode() or None,
    )


def delivery_of(message: KafkaMessage, consumer: str) -> Delivery:
    record = message.raw_message
    assert isinstance(record, ConsumerRecord)
    return Delivery(
        consumer=consumer, topic=record.topic, partition=record.partition, offset=record.offset
    )


class ConsumerMiddleware:
    """Broker middleware factory; `bind` it to a publisher of dead letters before start."""

    def __init__(self, *, service: str, max_attempts: int, retry_backoff_s: float) -> None:
        self.service = service
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.attempts: dict[tuple[str, int, int], int] = {}
        self._publish: PublishDeadLetter | None = None

    def bind(self, publish: PublishDeadLetter) -> None:
        self._publish = publish

    async def dead_letter(
        self, record: ConsumerRecord[Any, Any], error: BaseException, attempts: int
    ) -> None:
        assert self._publish is not None, "ConsumerMiddleware.bind() was not called"
        headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
        headers.update(
            {
                "dlq_reason": f"{type(error).__name__}: {error}"[:2000],
                "dlq_error_type": type(error).__name__,
                "dlq_source_topic": record.topic,
                "dlq_source_partition": str(record.partition),
                "dlq_source_offset": str(record.offset),
                "dlq_consumer": self.service,
                "dlq_attempts": str(attempts),
            }
        )
        await self._publish(dead_letter(record.topic), record.key, record.value or b"", headers)
        DEAD_LETTERED.labels(self.service, record.topic).inc()

    async def failed(self, record: ConsumerRecord[Any, Any], error: BaseException) -> bool:
        """After a handler failed on `record`: True once the message is dead-lettered (done
        with), False when it is to be tried again (the backoff is slept here).

        Infrastructure errors are retried without limit; poison at once and anything else after
        `max_attempts` goes to `<topic>.dlq`.
        """
        topic = record.topic
        if isinstance(error, INFRASTRUCTURE_ERRORS):
            EVENTS_CONSUMED.labels(self.service, topic, "retried").inc()
            log.warning("infrastructure_error_retrying", error=repr(error))
            await asyncio.sleep(max(self.retry_backoff_s, 1.0))
            return False
        key = (topic, record.partition, record.offset)
        attempts = self.attempts.get(key, 0) + 1
        self.attempts[key] = attempts
        if isinstance(error, POISON_ERRORS) or attempts >= self.max_attempts:
            await self.dead_letter(record, error, attempts)
            self.attempts.pop(key, None)
            EVENTS_CONSUMED.labels(self.service, topic, "dead_lettered").inc()
            log.error("dead_lettered", error=repr(error), attempts=attempts)
            return True
        EVENTS_CONSUMED.labels(self.service, topic, "failed").inc()
        log.warning("handler_failed_will_retry", error=repr(error), attempts=attempts)
        await asyncio.sleep(self.retry_backoff_s * attempts)
        return False

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> _PerMessage:
        return _PerMessage(msg, context=context, policy=self)


class _PerMessage(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: ContextRepo, policy: ConsumerMiddleware) -> None:
        super().__init__(msg, context=context)
        self.policy = policy
        self.started = time.perf_counter()

    @property
    def record(self) -> ConsumerRecord[Any, Any] | None:
        return self.msg if isinstance(self.msg, ConsumerRecord) else None

    async def on_receive(self) -> None:
        record = self.record
        structlog.contextvars.clear_contextvars()
        if record is not None:
            bind_message_context(self.policy.service, record)

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        record = self.record
        try:
            if record is None:
                if isinstance(self.msg, tuple) and isinstance(exc_val, Exception):
                    # A batch that could not even be handled one by one (Kafka, PostgreSQL
                    # away): it is sought back and redelivered, after a pause.
                    log.warning("batch_failed_will_retry", error=repr(exc_val))
                    await asyncio.sleep(max(self.policy.retry_backoff_s, 1.0))
                return False
            HANDLER_SECONDS.labels(self.policy.service, record.topic).observe(
                time.perf_counter() - self.started
            )
            if exc_val is None:
                self.policy.attempts.pop((record.topic, record.partition, record.offset), None)
                return False
            if isinstance(exc_val, asyncio.CancelledError):
                return False
            # True: handled, the message is acknowledged and the consumer goes on.
            return await self.policy.failed(record, exc_val)
        finally:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(service=self.policy.service)
