"""Wiring: one NotificationSettings → runtime (consumers, dispatcher, relay) and the app."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from faststream.kafka.annotations import KafkaMessage

from services.notification import handlers
from services.notification.api import build_router
from services.notification.delivery_rules import Clock
from services.notification.providers import WechatProvider, build_sms_provider
from services.notification.settings import NotificationSettings
from services.notification.store import NotificationStore
from services.notification.tokens import PgTokenStore
from shared import topics
from shared.db.pool import Pool, create_pool
from shared.events import (
    EventEnvelope,
    NotificationDeliveredV1,
    NotificationFailedV1,
    NotificationSentV1,
    envelope_schema,
)
from shared.http import install_common
from shared.messaging.consumer import delivery_of, subscriber_options
from shared.metrics import EVENTS_CONSUMED
from shared.reference import wenling
from shared.runtime import LoopSpec, ServiceRuntime
from shared.security_headers import SecurityHeaders

SERVICE = handlers.SERVICE
SCHEMA = "notification"
MIGRATIONS = Path(__file__).parent / "migrations"
CONTACTS_FILE = Path(__file__).parent / "contacts.json"

# Topics whose events somebody hears of (see domain.RULES), and the voters' contacts.
_PLANNED_FROM = (topics.OPINION, topics.CASE, topics.EVALUATION)


def build_runtime(
    settings: NotificationSettings, *, clock: Clock = handlers.utc_now
) -> ServiceRuntime:
    kafka = settings.kafka
    provider = build_sms_provider(settings.sms)
    closers: list[Callable[[], Awaitable[None]]] = [provider.aclose]
    runtime: ServiceRuntime

    wechat: WechatProvider | None = None
    if settings.wechat.enabled:
        wechat = WechatProvider(settings.wechat, PgTokenStore(lambda: runtime.pool, clock=clock))
        closers.append(wechat.aclose)

    dispatchers: dict[str, handlers.Dispatcher] = {}

    def dispatcher_for(pool: Pool) -> handlers.Dispatcher:
        dispatcher = handlers.Dispatcher(
            NotificationStore(pool, topic_prefix=kafka.topic_prefix),
            provider,
            settings.dispatch,
            settings.templates,
            wechat=wechat,
            limits=settings.limits,
            quiet_hours=settings.quiet_hours,
            breaker_settings=settings.breaker,
            clock=clock,
        )
        dispatchers["main"] = dispatcher
        return dispatcher

    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=[*_PLANNED_FROM, topics.CONTACT, topics.NOTIFICATION],
        loops=[
            LoopSpec(
                name="notification-dispatcher",
                channel=f"{SCHEMA}_deliveries",
                work_once=lambda pool: dispatcher_for(pool).dispatch_once,
                poll_interval_s=settings.dispatch.poll_interval_s,
            )
        ],
        closers=closers,
    )
    runtime.dispatchers = dispatchers  # type: ignore[attr-defined]

    def subscribe(topic: str, handle: Any, description: str) -> None:
        name = kafka.topic(topic)
        consumer = f"{SERVICE}.{topic.rsplit('.', 1)[-1]}"

        async def on_message(envelope: EventEnvelope, msg: KafkaMessage) -> None:
            store = NotificationStore(runtime.pool, topic_prefix=kafka.topic_prefix)
            outcome = await handle(store, envelope, delivery_of(msg, consumer))
            EVENTS_CONSUMED.labels(SERVICE, name, outcome).inc()

        runtime.broker.subscriber(
            name,
            **subscriber_options(kafka, service=SERVICE, topic=topic),
            title=f"notification:{topic.rsplit('.', 1)[-1]}",
            description=description,
        )(on_message)

    audiences = tuple(settings.recipients.audiences)

    async def on_event(store: NotificationStore, envelope: EventEnvelope, delivery: Any) -> str:
        return await handlers.on_event(store, envelope, delivery, audiences)

    for topic in _PLANNED_FROM:
        subscribe(topic, on_event, "Plans the messages each event calls for.")
    subscribe(
        topics.CONTACT,
        handlers.on_contact_event,
        "Keeps how to reach each opinion's voter (personal data, never logged).",
    )

    for event_cls, title in (
        (NotificationSentV1, "notification.sent"),
        (NotificationFailedV1, "notification.failed"),
        (NotificationDeliveredV1, "notification.delivered"),
    ):
        runtime.broker.publisher(
            kafka.topic(topics.NOTIFICATION),
            title=title,
            schema=envelope_schema(event_cls),
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

    install_common(
        app,
        service=SERVICE,
        ready=runtime.ready,
        max_body_bytes=settings.callbacks.max_body_bytes,
    )
    app.add_middleware(SecurityHeaders)
    app.include_router(build_router(store_of, settings.auth, settings.callbacks))
    app.state.runtime = runtime
    return app


def staff_contacts(path: Path = CONTACTS_FILE) -> list[dict[str, str]]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    contacts: list[dict[str, str]] = data["contacts"]
    return contacts


async def seed(settings: NotificationSettings) -> str:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await NotificationStore(pool).seed(wenling(), staff_contacts())
    finally:
        await pool.close()
