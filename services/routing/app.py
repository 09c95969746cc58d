"""Wiring: one RoutingSettings → the runtime (pool, broker, relay, consumers) and the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from faststream.kafka.annotations import KafkaMessage

from services.routing import handlers
from services.routing.api import build_router
from services.routing.settings import RoutingSettings
from services.routing.store import RoutingStore
from shared import topics
from shared.db.pool import create_pool
from shared.events import CaseAssignedV1, EventEnvelope, envelope_schema
from shared.http import install_common
from shared.messaging.consumer import delivery_of, subscriber_options
from shared.metrics import EVENTS_CONSUMED
from shared.reference import wenling
from shared.runtime import ServiceRuntime

SERVICE = handlers.SERVICE
SCHEMA = "routing"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: RoutingSettings) -> ServiceRuntime:
    kafka = settings.kafka
    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=[topics.OPINION, topics.CASE],
    )
    opinion_topic = kafka.topic(topics.OPINION)
    consumer = f"{SERVICE}.opinion"

    async def on_opinion(envelope: EventEnvelope, msg: KafkaMessage) -> None:
        store = RoutingStore(runtime.pool, topic_prefix=kafka.topic_prefix)
        outcome = await handlers.on_opinion_event(
            store, envelope, delivery_of(msg, consumer), settings.deadlines
        )
        EVENTS_CONSUMED.labels(SERVICE, opinion_topic, outcome).inc()

    runtime.broker.subscriber(
        opinion_topic,
        **subscriber_options(kafka, service=SERVICE, topic=topics.OPINION),
        title="routing:opinion",
        description="Routes each submitted opinion to a department as a case.",
    )(on_opinion)

    runtime.broker.publisher(
        kafka.topic(topics.CASE),
        title="case.assigned",
        schema=envelope_schema(CaseAssignedV1),
        description="Key = case id (via the outbox).",
    )
    return runtime


def build_app(settings: RoutingSettings) -> FastAPI:
    runtime = build_runtime(settings)
    app = FastAPI(
        title="Minyi routing",
        version="1.0.0",
        description="Assigns opinions to departments as cases and tracks their deadlines.",
        lifespan=runtime.lifespan,
    )

    def store_of(_request: Request) -> RoutingStore:
        return RoutingStore(runtime.pool, topic_prefix=settings.kafka.topic_prefix)

    install_common(app, service=SERVICE, ready=runtime.ready)
    app.include_router(build_router(store_of))
    app.state.runtime = runtime
    return app


async def seed(settings: RoutingSettings) -> str:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await RoutingStore(pool).seed(wenling())
    finally:
        await pool.close()
