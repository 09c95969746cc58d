"""Prometheus metrics shared by all services (one name each, labelled by service)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prometheus_client import Counter, Gauge, Histogram


class _Pending:
    """Increments made inside a batch's transaction, applied once it committed."""

    def __init__(self) -> None:
        self._increments: list[tuple[Any, float]] = []

    def add(self, child: Any, amount: float) -> None:
        self._increments.append((child, amount))

    def apply(self) -> None:
        for child, amount in self._increments:
            child.inc(amount)
        self._increments.clear()


_PENDING: ContextVar[_Pending | None] = ContextVar("minyi_pending_increments", default=None)


class _DeferredChild:
    def __init__(self, child: Any, pending: _Pending) -> None:
        self._child = child
        self._pending = pending

    def inc(self, amount: float = 1) -> None:
        self._pending.add(self._child, amount)


class TransactionalCounter(Counter):
    """A Counter whose increments inside `deferred_increments()` wait for `apply()`: a batch
    that rolls back and is handled again one by one counts each message once."""

    def labels(self, *values: Any, **labelkwargs: Any) -> Any:
        child = super().labels(*values, **labelkwargs)
        pending = _PENDING.get()
        return child if pending is None else _DeferredChild(child, pending)


@contextmanager
def deferred_increments() -> Iterator[_Pending]:
    pending = _Pending()
    token = _PENDING.set(pending)
    try:
        yield pending
    finally:
        _PENDING.reset(token)


EVENTS_CONSUMED = TransactionalCounter(
    "minyi_events_consumed_total",
    "Events handled by a consumer, by outcome "
    "(processed, duplicate, ignored, retried, failed, dead_lettered).",
    ["service", "topic", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "minyi_handler_seconds",
    "Time to handle one consumed event (in a batch: its handler plus its share of the commit).",
    ["service", "topic"],
)
CONSUMER_BATCHES = Counter(
    "minyi_consumer_batches_total",
    "Batches of consumed events, by outcome (committed in one transaction, or one_by_one "
    "after the batch's transaction failed).",
    ["service", "topic", "outcome"],
)
BATCH_SIZE = Histogram(
    "minyi_consumer_batch_size",
    "Records per consumed batch.",
    ["service", "topic"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 250, 500),
)
EVENTS_PUBLISHED = Counter(
    "minyi_events_published_total",
    "Events published by the outbox relay.",
    ["service", "topic"],
)
OUTBOX_BACKLOG = Gauge(
    "minyi_outbox_backlog",
    "Outbox rows not yet published, as last seen by the relay (0 after a batch that was not "
    "full, else estimated from the ids left behind).",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "minyi_consumer_lag",
    "Messages not yet processed by a consumer group, per topic (end offset − committed).",
    ["service", "group", "topic"],
)
DEAD_LETTERED = Counter(
    "minyi_dead_lettered_total",
    "Messages sent to a dead-letter topic.",
    ["service", "topic"],
)
HTTP_REQUESTS = Counter(
    "minyi_http_requests_total",
    "HTTP requests by route and status.",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "minyi_http_request_seconds",
    "HTTP request latency by route.",
    ["service", "method", "route"],
)
