"""Wiring: one RoutingSettings → the runtime (pool, broker, relay, consumers, deadline timers)
and the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Request
from faststream.kafka.annotations import KafkaMessage

from services.routing import handlers
from services.routing.accounts import dev_password_forbidden, refuse_dev_passwords, seed_accounts
from services.routing.api import build_router, install_auth
from services.routing.domain.triage import DEFAULT_KEYWORD_RULES
from services.routing.live import TaskHub
from services.routing.sessions_api import build_sessions_router
from services.routing.settings import RoutingSettings
from services.routing.store import RoutingStore
from shared import topics
from shared.db.pool import Pool, connect, create_pool
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseClosedV1,
    CaseCompletedV1,
    CaseDeadlineApproachingV1,
    CaseEscalatedV1,
    CaseExtensionDecidedV1,
    CaseExtensionRequestedV1,
    CaseOverdueV1,
    CaseReopenedV1,
    CaseReturnedV1,
    CaseTriagedV1,
    EventEnvelope,
    InvitationDecidedV1,
    InvitationRequestedV1,
    envelope_schema,
)
from shared.http import install_common
from shared.messaging.consumer import delivery_of, subscriber_options
from shared.metrics import EVENTS_CONSUMED
from shared.reference import wenling
from shared.runtime import LoopSpec, ServiceRuntime
from shared.security_headers import SecurityHeaders

SERVICE = handlers.SERVICE
SCHEMA = "routing"
MIGRATIONS = Path(__file__).parent / "migrations"

PUBLISHED = (
    CaseTriagedV1,
    InvitationRequestedV1,
    InvitationDecidedV1,
    CaseAssignedV1,
    CaseAcknowledgedV1,
    CaseExtensionRequestedV1,
    CaseExtensionDecidedV1,
    CaseReturnedV1,
    CaseCompletedV1,
    CaseReopenedV1,
    CaseClosedV1,
    CaseDeadlineApproachingV1,
    CaseOverdueV1,
    CaseEscalatedV1,
)


def build_runtime(settings: RoutingSettings) -> ServiceRuntime:
    kafka = settings.kafka

    def fire_timers(pool: Pool) -> Callable[[], Awaitable[int]]:
        store = RoutingStore(pool, topic_prefix=kafka.topic_prefix)

        async def once() -> int:
            return await store.fire_due_timers(datetime.now(UTC), settings.timers.batch_size)

        return once

    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=[topics.OPINION, topics.CASE, topics.EVALUATION],
        loops=[
            LoopSpec(
                name="routing-deadline-timers",
                channel=f"{SCHEMA}_deadline_timers",
                work_once=fire_timers,
                poll_interval_s=settings.timers.poll_interval_s,
            )
        ],
    )
    opinion_topic = kafka.topic(topics.OPINION)
    evaluation_topic = kafka.topic(topics.EVALUATION)

    async def on_opinion(envelope: EventEnvelope, msg: KafkaMessage) -> None:
        store = RoutingStore(runtime.pool, topic_prefix=kafka.topic_prefix)
        outcome = await handlers.on_opinion_event(
            store, envelope, delivery_of(msg, f"{SERVICE}.opinion"), settings
        )
        EVENTS_CONSUMED.labels(SERVICE, opinion_topic, outcome).inc()

    async def on_evaluation(envelope: EventEnvelope, msg: KafkaMessage) -> None:
        store = RoutingStore(runtime.pool, topic_prefix=kafka.topic_prefix)
        outcome = await handlers.on_evaluation_event(
            store, envelope, delivery_of(msg, f"{SERVICE}.evaluation"), settings
        )
        EVENTS_CONSUMED.labels(SERVICE, evaluation_topic, outcome).inc()

    runtime.broker.subscriber(
        opinion_topic,
        **subscriber_options(kafka, service=SERVICE, topic=topics.OPINION),
        title="routing:opinion",
        description="Triages each submitted opinion and routes it to a department as a case.",
    )(on_opinion)
    runtime.broker.subscriber(
        evaluation_topic,
        **subscriber_options(kafka, service=SERVICE, topic=topics.EVALUATION),
        title="routing:evaluation",
        description="Voters' ratings: satisfied closes a completed case, unsatisfied reopens it "
        "(once).",
    )(on_evaluation)

    for event_cls in PUBLISHED:
        runtime.broker.publisher(
            kafka.topic(topics.CASE),
            title=event_cls.event_type,
            schema=envelope_schema(event_cls),
            description="Key = case id (via the outbox).",
        )
    return runtime


def build_app(settings: RoutingSettings) -> FastAPI:
    runtime = build_runtime(settings)
    hub = TaskHub(lambda: connect(settings.database, schema=SCHEMA, service=SERVICE))
    runtime.closers.append(hub.close)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await check_accounts(settings)
        async with runtime.lifespan(app):
            yield

    app = FastAPI(
        title="Minyi routing",
        version="1.0.0",
        description="Triages opinions, assigns them to departments as cases, supervises their "
        "deadlines and carries them through acknowledgement, extension, completion and rating.",
        lifespan=lifespan,
    )

    def store_of(_request: Request) -> RoutingStore:
        return RoutingStore(runtime.pool, topic_prefix=settings.kafka.topic_prefix)

    install_common(
        app, service=SERVICE, ready=runtime.ready, max_body_bytes=settings.limits.max_body_bytes
    )
    app.add_middleware(SecurityHeaders)
    install_auth(app, settings)
    app.include_router(build_router(store_of, settings, hub))
    app.include_router(build_sessions_router(lambda: runtime.pool, settings.auth))
    app.state.runtime = runtime
    return app


async def check_accounts(settings: RoutingSettings) -> None:
    """Before routing starts: DevPasswordInUse outside the dev profile while an active account
    has the published development password (services/routing/accounts.py)."""
    if not dev_password_forbidden():
        return
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        await refuse_dev_passwords(RoutingStore(pool))
    except asyncpg.UndefinedTableError:
        return  # not migrated yet: the runtime refuses to start with that reason
    finally:
        await pool.close()


async def seed(settings: RoutingSettings) -> str:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        store = RoutingStore(pool)
        summary = await store.seed(wenling(), DEFAULT_KEYWORD_RULES)
        return "\n".join([summary, *await seed_accounts(store, settings.accounts)])
    finally:
        await pool.close()
