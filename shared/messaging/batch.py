"""Consuming in batches: one PostgreSQL transaction and one offset commit per batch of records.

A batch subscriber gets up to `max_records` records at once (`getmany`), in partition order. All
of them are handled in ONE transaction on one connection: while the batch runs,
`ServiceRuntime.pool` is a `BatchPool` whose `acquire()` hands out that connection, so the
services' per-message handlers run unchanged; their own `conn.transaction()` becomes a SAVEPOINT
inside the batch's transaction, and their processed-message row (`claim_once`), state and outbox
rows commit together with every other message's. The offsets are committed (by FastStream's ack)
only after that transaction committed.

If anything in the batch fails, the whole transaction rolls back and the batch is handled again
one message at a time, each in its own transaction, with the per-message policy of
`ConsumerMiddleware.failed` (bounded retries, then `<topic>.dlq` with the reason): a poison message
costs its batch a second pass, never the other messages. A record that cannot even be parsed is
left out of the batch and dead-lettered after it. An infrastructure error in the one-by-one pass
propagates: the batch is sought back and redelivered later (the processed-message rows make the
redelivery change nothing).

What a handler does besides the database waits for the commit: `EVENTS_CONSUMED` increments and
failpoints hit inside the batch take effect after it committed (and are dropped if it rolled
back). Log lines are not held back: a batch that falls back logs its messages a second time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, cast

import structlog
from aiokafka import ConsumerRecord
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.message import KafkaMessage as PlainKafkaMessage
from faststream.kafka.parser import AioKafkaParser

from shared import failpoints
from shared.db.pool import Connection, Pool
from shared.events import EventEnvelope
from shared.messaging.consumer import POISON_ERRORS, ConsumerMiddleware, bind_message_context
from shared.metrics import BATCH_SIZE, CONSUMER_BATCHES, HANDLER_SECONDS, deferred_increments

log = structlog.get_logger(__name__)

PerMessageHandler = Callable[[EventEnvelope, Any], Awaitable[Any]]
"""A service's handler of one message: `(envelope, msg: KafkaMessage)`, as FastStream calls it."""

_BATCH_POOL: ContextVar[BatchPool | None] = ContextVar("minyi_batch_pool", default=None)


def pool_in_scope(default: Pool) -> Pool:
    """The batch's connection as a pool while a batch is being handled, else `default`."""
    batch = _BATCH_POOL.get()
    return default if batch is None else cast("Pool", batch)


def batch_memo() -> dict[Any, Any] | None:
    """A dict that lives as long as the batch being handled (None outside one), for what a
    store reads once per batch instead of once per message (reference data)."""
    batch = _BATCH_POOL.get()
    return None if batch is None else batch.memo


class BatchPool:
    """The pool a handler sees during a batch: every `acquire()` is the batch's connection.

    Handlers run one after another, so the connection is never used by two at once.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.memo: dict[Any, Any] = {}

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        yield self._conn

    async def execute(self, query: str, *args: Any, **kw: Any) -> str:
        return await self._conn.execute(query, *args, **kw)

    async def executemany(self, command: str, args: Any, **kw: Any) -> None:
        await self._conn.executemany(command, args, **kw)

    async def fetch(self, query: str, *args: Any, **kw: Any) -> list[Any]:
        rows: list[Any] = await self._conn.fetch(query, *args, **kw)
        return rows

    async def fetchrow(self, query: str, *args: Any, **kw: Any) -> Any:
        return await self._conn.fetchrow(query, *args, **kw)

    async def fetchval(self, query: str, *args: Any, **kw: Any) -> Any:
        return await self._conn.fetchval(query, *args, **kw)


class BatchConsumer:
    """The FastStream batch subscriber's function around a service's per-message handler."""

    def __init__(
        self,
        *,
        policy: ConsumerMiddleware,
        pool: Callable[[], Pool],
        handler: PerMessageHandler,
    ) -> None:
        self.policy = policy
        self._pool = pool
        self._handler = handler
        # Messages handed to the handler cannot ack: the batch commits its offsets itself.
        self._parser = AioKafkaParser(msg_class=PlainKafkaMessage, regex=None)

    async def __call__(self, msg: KafkaMessage) -> None:
        records = cast("tuple[ConsumerRecord[Any, Any], ...]", msg.raw_message)
        if not records:
            return
        service = self.policy.service
        good: list[tuple[ConsumerRecord[Any, Any], EventEnvelope]] = []
        unparsable: list[tuple[ConsumerRecord[Any, Any], BaseException]] = []
        for record in records:
            try:
                good.append((record, EventEnvelope.model_validate_json(record.value or b"")))
            except POISON_ERRORS as exc:  # invalid JSON or not an envelope
                unparsable.append((record, exc))
        topic = records[0].topic
        BATCH_SIZE.labels(service, topic).observe(len(records))
        try:
            if good:
                try:
                    await self._in_one_transaction(good)
                    CONSUMER_BATCHES.labels(service, topic, "committed").inc()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    CONSUMER_BATCHES.labels(service, topic, "one_by_one").inc()
                    structlog.contextvars.clear_contextvars()
                    structlog.contextvars.bind_contextvars(service=service, topic=topic)
                    log.warning("batch_failed_one_by_one", size=len(good), error=repr(exc))
                    for record, envelope in good:
                        await self._one(record, envelope)
            for record, error in unparsable:
                bind_message_context(service, record)
                await self.policy.failed(record, error)  # poison: dead-lettered at once
        finally:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(service=service)

    async def _in_one_transaction(
        self, items: list[tuple[ConsumerRecord[Any, Any], EventEnvelope]]
    ) -> None:
        service = self.policy.service
        spent: list[tuple[str, float]] = []
        with failpoints.deferred() as hit, deferred_increments() as counted:
            async with self._pool().acquire() as conn, conn.transaction():
                token = _BATCH_POOL.set(BatchPool(conn))
                try:
                    for record, envelope in items:
                        bind_message_context(service, record)
                        started = time.perf_counter()
                        await self._handler(envelope, await self._message(record))
                        spent.append((record.topic, time.perf_counter() - started))
                finally:
                    _BATCH_POOL.reset(token)
                    structlog.contextvars.clear_contextvars()
                    structlog.contextvars.bind_contextvars(service=service)
                commit_started = time.perf_counter()
        # Committed: what the handlers did besides the database takes effect now.
        commit_share = (time.perf_counter() - commit_started) / len(items)
        counted.apply()
        for topic, seconds in spent:
            HANDLER_SECONDS.labels(service, topic).observe(seconds + commit_share)
        for record, _ in items:
            self.policy.attempts.pop((record.topic, record.partition, record.offset), None)
        hit.fire()
        failpoints.failpoint("after_batch_commit")

    async def _one(self, record: ConsumerRecord[Any, Any], envelope: EventEnvelope) -> None:
        """One message in its own transaction(s), retried or dead-lettered as before batches."""
        service = self.policy.service
        while True:
            bind_message_context(service, record)
            started = time.perf_counter()
            try:
                await self._handler(envelope, await self._message(record))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                HANDLER_SECONDS.labels(service, record.topic).observe(time.perf_counter() - started)
                if await self.policy.failed(record, exc):
                    return  # dead-lettered
                continue  # tried again after the policy's backoff
            HANDLER_SECONDS.labels(service, record.topic).observe(time.perf_counter() - started)
            self.policy.attempts.pop((record.topic, record.partition, record.offset), None)
            return

    async def _message(self, record: ConsumerRecord[Any, Any]) -> Any:
        return await self._parser.parse_message(record)
