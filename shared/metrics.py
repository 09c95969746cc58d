"""Prometheus metrics shared by all services (one name each, labelled by service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "minyi_events_consumed_total",
    "Events handled by a consumer, by outcome "
    "(processed, duplicate, ignored, retried, failed, dead_lettered).",
    ["service", "topic", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "minyi_handler_seconds",
    "Time to handle one consumed event.",
    ["service", "topic"],
)
EVENTS_PUBLISHED = Counter(
    "minyi_events_published_total",
    "Events published by the outbox relay.",
    ["service", "topic"],
)
OUTBOX_BACKLOG = Gauge(
    "minyi_outbox_backlog",
    "Outbox rows not yet published, as last seen by the relay.",
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
