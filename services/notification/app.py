"""Wiring: one NotificationSettings → runtime (consumers, dispatcher, relay) and the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from faststream.kafka.annotations import KafkaMessage

from services.notification import handlers
from services.notification.api import build_router
from services.notification.providers import build_sms_provider
from services.notification.settings import NotificationSettings
from services.notification.store import NotificationStore
from shared import topics
from shared.db.pool import Pool, create_pool
from shared.events import EventEnvelope, NotificationSentV1, envelope_schema
from shared.http import install_common
from shared.messaging.consumer import delivery_of, subscriber_options
from shared.metrics import EVENTS_CONSUMED
from shared.reference import wenling
from shared.runtime import LoopSpec, ServiceRuntime

SERVICE = handlers.SERVICE
SCHEMA = "notification"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: NotificationSettings) -> ServiceRuntime:
    kafka = settings.kafka
    provider = build_sms_provider(settings.sms)

    def dispatcher_for(pool: Pool) -> handlers.Dispatcher:
        return handlers.Dispatcher(
            NotificationStore(pool, topic_prefix=kafka.topic_prefix),
            provider,
            settings.dispatch,
            settings.templates,
        )

    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=[topics.CASE, topics.NOTIFICATION],
        loops=[
            LoopSpec(
                name="notification-dispatcher",
                channel=f"{SCHEMA}_deliveries",
                work_once=lambda pool: dispatcher_for(pool).dispatch_once,
                poll_interval_s=settings.dispatch.poll_interval_s,
            )
        ],
        closers=[provider.aclose],
    )
    case_topic = kafka.topic(topics.CASE)
    consumer = f"{SERVICE}.case"

    async def on_case(envelope: EventEnvelope, msg: KafkaMessage) -> None:
        store = NotificationStore(runtime.pool, topic_prefix=kafka.topic_prefix)
        outcome = await handlers.on_case_event(store, envelope, delivery_of(msg, consumer))
        EVENTS_CONSUMED.labels(SERVICE, case_topic, outcome).inc()

    runtime.broker.subscriber(
        case_topic,
        **subscriber_options(kafka, service=SERVICE, topic=topics.CASE),
        title="notification:case",
        description="Plans the messages each case event calls for.",
    )(on_case)

    runtime.broker.publisher(
        kafka.topic(topics.NOTIFICATION),
        title="notification.sent",
        schema=envelope_schema(NotificationSentV1),
        description="Key = case id (via the outbox).",
    )
    return runtime


def build_app(settings: NotificationSettings) -> FastAPI:
    runtime = build_runtime(settings)
    app = FastAPI(
        title="Minyi notification",
        version="1.0.0",
        description="Sends SMS and WeChat messages: once per event and recipient, never lost.",
        lifespan=runtime.lifespan,
    )

    def store_of(_request: Request) -> NotificationStore:
        return NotificationStore(runtime.pool, topic_prefix=settings.kafka.topic_prefix)

    install_common(app, service=SERVICE, ready=runtime.ready)
    app.include_router(build_router(store_of))
    app.state.runtime = runtime
    return app


async def seed(settings: NotificationSettings) -> str:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await NotificationStore(pool).seed(wenling())
    finally:
        await pool.close()
