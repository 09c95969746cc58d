"""Wiring: one IntakeSettings → the runtime (pool, broker, relay) and the FastAPI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request

from services.intake.api import SERVICE, build_router
from services.intake.settings import IntakeSettings
from services.intake.store import IntakeStore
from shared import topics
from shared.db.pool import create_pool
from shared.events import OpinionSubmittedV1, envelope_schema
from shared.http import install_common
from shared.reference import wenling
from shared.runtime import ServiceRuntime

SCHEMA = "intake"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: IntakeSettings) -> ServiceRuntime:
    # Intake consumes nothing yet; it publishes opinion events through its outbox.
    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=settings.kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=[topics.OPINION],
    )
    runtime.broker.publisher(
        settings.kafka.topic(topics.OPINION),
        title="opinion.submitted",
        schema=envelope_schema(OpinionSubmittedV1),
        description="OpinionSubmittedV1 in an EventEnvelope, key = opinion id (via the outbox).",
    )
    return runtime


def build_app(settings: IntakeSettings) -> FastAPI:
    runtime = build_runtime(settings)
    app = FastAPI(
        title="Minyi intake",
        version="1.0.0",
        description="Takes voters' opinions from every channel and gives tracking receipts.",
        lifespan=runtime.lifespan,
    )

    def store_of(_request: Request) -> IntakeStore:
        return IntakeStore(runtime.pool, topic_prefix=settings.kafka.topic_prefix)

    install_common(app, service=SERVICE, ready=runtime.ready)
    app.include_router(build_router(store_of, settings.public_base_url))
    app.state.runtime = runtime
    return app


async def seed(settings: IntakeSettings) -> str:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await IntakeStore(pool).seed(wenling())
    finally:
        await pool.close()
