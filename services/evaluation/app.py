"""Wiring: one EvaluationSettings → runtime (consumers, relay) and the FastAPI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from faststream.kafka.annotations import KafkaMessage

from services.evaluation import handlers
from services.evaluation.api import build_router
from services.evaluation.settings import EvaluationSettings
from services.evaluation.store import EvaluationStore
from shared import topics
from shared.events import EventEnvelope
from shared.http import install_common
from shared.messaging.consumer import delivery_of, subscriber_options
from shared.metrics import EVENTS_CONSUMED
from shared.runtime import ServiceRuntime

SERVICE = handlers.SERVICE
SCHEMA = "evaluation"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: EvaluationSettings) -> ServiceRuntime:
    kafka = settings.kafka
    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=[topics.CASE, topics.NOTIFICATION],
    )
    for source in (topics.CASE, topics.NOTIFICATION):
        _subscribe(runtime, settings, source)
    return runtime


def _subscribe(runtime: ServiceRuntime, settings: EvaluationSettings, source: str) -> None:
    kafka = settings.kafka
    topic = kafka.topic(source)
    consumer = f"{SERVICE}.{source.rsplit('.', 1)[-1]}"

    async def on_event(envelope: EventEnvelope, msg: KafkaMessage) -> None:
        outcome = await handlers.on_event(
            EvaluationStore(runtime.pool), envelope, delivery_of(msg, consumer)
        )
        EVENTS_CONSUMED.labels(SERVICE, topic, outcome).inc()

    runtime.broker.subscriber(
        topic,
        **subscriber_options(kafka, service=SERVICE, topic=source),
        title=f"evaluation:{source.rsplit('.', 1)[-1]}",
        description="Folds events into the case read model and the KPIs.",
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
        return EvaluationStore(runtime.pool)

    install_common(app, service=SERVICE, ready=runtime.ready)
    app.include_router(build_router(store_of))
    app.state.runtime = runtime
    return app
