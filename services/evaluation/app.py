"""Wiring: one EvaluationSettings → runtime (consumers, relay) and the FastAPI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from faststream.kafka.annotations import KafkaMessage

from services.evaluation import handlers
from services.evaluation.api import build_router
from services.evaluation.ratings import RatingLinks
from services.evaluation.settings import EvaluationSettings
from services.evaluation.store import EvaluationStore
from shared import topics
from shared.db.pool import create_pool
from shared.events import (
    EventEnvelope,
    HandlingEvaluatedV1,
    RatingInvitedV1,
    SatisfactionRatedV1,
    envelope_schema,
)
from shared.http import install_common
from shared.messaging.consumer import delivery_of, subscriber_options
from shared.metrics import EVENTS_CONSUMED
from shared.ratelimit import RateLimiter
from shared.reference import wenling
from shared.runtime import ServiceRuntime
from shared.security_headers import SecurityHeaders

SERVICE = handlers.SERVICE
SCHEMA = "evaluation"
MIGRATIONS = Path(__file__).parent / "migrations"
SOURCES = (topics.CASE, topics.NOTIFICATION, topics.EVALUATION, topics.STATION)


def rating_links(settings: EvaluationSettings) -> RatingLinks:
    return RatingLinks(settings.auth, settings.rating)


def build_runtime(settings: EvaluationSettings) -> ServiceRuntime:
    kafka = settings.kafka
    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=list(SOURCES),
    )
    for source in SOURCES:
        _subscribe(runtime, settings, source)
    for event_cls, what in (
        (RatingInvitedV1, "A completed case's voter is invited to rate it (notification sends)."),
        (SatisfactionRatedV1, "The voter rated; 不满意 asks routing to reopen (once)."),
        (HandlingEvaluatedV1, "A station or the committee evaluated an invitation (评议)."),
    ):
        runtime.broker.publisher(
            kafka.topic(topics.EVALUATION),
            title=event_cls.event_type,
            schema=envelope_schema(event_cls),
            description=f"{what} Key = case id (via the outbox).",
        )
    return runtime


def _subscribe(runtime: ServiceRuntime, settings: EvaluationSettings, source: str) -> None:
    kafka = settings.kafka
    topic = kafka.topic(source)
    consumer = f"{SERVICE}.{source.rsplit('.', 1)[-1]}"
    links = rating_links(settings)

    async def on_event(envelope: EventEnvelope, msg: KafkaMessage) -> None:
        outcome = await handlers.on_event(
            EvaluationStore(runtime.pool, topic_prefix=kafka.topic_prefix),
            envelope,
            delivery_of(msg, consumer),
            links=links,
        )
        EVENTS_CONSUMED.labels(SERVICE, topic, outcome).inc()

    runtime.broker.subscriber(
        topic,
        **subscriber_options(kafka, service=SERVICE, topic=source),
        title=f"evaluation:{source.rsplit('.', 1)[-1]}",
        description="Folds events into the case facts, the KPIs and station activity.",
    )(on_event)


def build_app(settings: EvaluationSettings) -> FastAPI:
    runtime = build_runtime(settings)
    app = FastAPI(
        title="Minyi evaluation",
        version="1.0.0",
        description="Satisfaction, evaluations and the KPIs people already use.",
        lifespan=runtime.lifespan,
    )

    def store_of(_request: Request) -> EvaluationStore:
        return EvaluationStore(runtime.pool, topic_prefix=settings.kafka.topic_prefix)

    limits = settings.limits
    install_common(app, service=SERVICE, ready=runtime.ready, max_body_bytes=limits.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    limiter = RateLimiter(
        enabled=limits.rate_limit_enabled, trusted_proxies=settings.http.trusted_proxies
    )
    app.include_router(
        build_router(
            store_of,
            auth=settings.auth,
            links=rating_links(settings),
            limiter=limiter,
            per_address=limits.per_address,
        )
    )
    app.state.runtime = runtime
    return app


async def seed(settings: EvaluationSettings) -> str:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await EvaluationStore(pool).seed(wenling())
    finally:
        await pool.close()
