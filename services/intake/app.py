"""Wiring: one IntakeSettings → the runtime (pool, broker, relay, consumers) and the app."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka.annotations import KafkaMessage

from services.intake import handlers
from services.intake.api import Deps, _system_clock, build_router
from services.intake.domain import SERVICE
from services.intake.reference_api import build_reference_router
from services.intake.reference_cache import ReferenceCache
from services.intake.settings import IntakeSettings
from services.intake.stations_api import build_stations_router
from services.intake.store import IntakeStore, ReferenceStore
from services.intake.writer import GroupWriter
from shared import topics
from shared.db.pool import create_pool
from shared.events import (
    EventEnvelope,
    OpinionSubmittedV1,
    ReceptionDayChangedV1,
    ReferenceDataChangedV1,
    StationActivityRecordedV1,
    VoterContactRecordedV1,
    envelope_schema,
)
from shared.http import install_common
from shared.messaging.consumer import delivery_of, subscriber_options
from shared.metrics import EVENTS_CONSUMED
from shared.ratelimit import RateLimiter
from shared.reference import wenling
from shared.runtime import ServiceRuntime
from shared.security_headers import SecurityHeaders

SCHEMA = "intake"
MIGRATIONS = Path(__file__).parent / "migrations"
BATCH_PATH = r"/api/v1/stations/[^/]+/opinions/batch"


def build_runtime(settings: IntakeSettings) -> ServiceRuntime:
    kafka = settings.kafka
    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        kafka=kafka,
        database=settings.database,
        outbox=settings.outbox,
        migrations_dir=MIGRATIONS,
        topics=[
            topics.OPINION,
            topics.CONTACT,
            topics.CASE,
            topics.EVALUATION,
            topics.REFERENCE,
            topics.STATION,
        ],
    )

    def stage_consumer(full: str, consumer: str) -> Any:
        async def on_event(envelope: EventEnvelope, msg: KafkaMessage) -> None:
            store = IntakeStore(runtime.pool, topic_prefix=kafka.topic_prefix)
            outcome = await handlers.on_case_event(store, envelope, delivery_of(msg, consumer))
            EVENTS_CONSUMED.labels(SERVICE, full, outcome).inc()

        return on_event

    for topic, what in (
        (topics.CASE, "each case's stages (assigned, acknowledged, completed, …)"),
        (topics.EVALUATION, "ratings and evaluations of each case"),
    ):
        short = topic.rsplit(".", 1)[-1]
        runtime.broker.subscriber(
            kafka.topic(topic),
            **subscriber_options(kafka, service=SERVICE, topic=topic),
            title=f"intake:{short}",
            description=f"Keeps the voter's stage history: {what}.",
        )(stage_consumer(kafka.topic(topic), f"{SERVICE}.{short}"))

    runtime.broker.publisher(
        kafka.topic(topics.OPINION),
        title="opinion.submitted",
        schema=envelope_schema(OpinionSubmittedV1),
        description="OpinionSubmittedV1 in an EventEnvelope, key = opinion id (via the outbox).",
    )
    runtime.broker.publisher(
        kafka.topic(topics.REFERENCE),
        title="reference.changed",
        schema=envelope_schema(ReferenceDataChangedV1),
        description="A town, station, category, department or deputy created, changed or "
        "retired (admin API, CLI, seed), key = kind:id (via the outbox).",
    )
    runtime.broker.publisher(
        kafka.topic(topics.STATION),
        title="station.activity_recorded",
        schema=envelope_schema(StationActivityRecordedV1),
        description="A station's activity record (台账), key = station id (via the outbox).",
    )
    runtime.broker.publisher(
        kafka.topic(topics.STATION),
        title="station.reception_day_changed",
        schema=envelope_schema(ReceptionDayChangedV1),
        description="A station's reception day moved (announced at least 3 days ahead), "
        "key = station id (via the outbox).",
    )
    runtime.broker.publisher(
        kafka.topic(topics.CONTACT),
        title="voter_contact.recorded",
        schema=envelope_schema(VoterContactRecordedV1),
        description="How to reach the voter (personal data; notification only), key = opinion "
        "id, in the transaction of the opinion whenever a phone or WeChat openid is given.",
    )
    return runtime


_ITEM = re.compile(r"^items\.(\d+)(?:\.|$)")


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def build_app(
    settings: IntakeSettings,
    *,
    clock: Callable[[], datetime] | None = None,
    wechat_clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The app; `clock` (aware datetimes) replaces the system clock for the station rules,
    `wechat_clock` for the freshness of WeChat callbacks' signed timestamps."""
    runtime = build_runtime(settings)
    app = FastAPI(
        title="Minyi intake",
        version="1.0.0",
        description="Takes voters' opinions from every channel (online form, WeChat, station "
        "staff, batches, imports) and gives tracking receipts.",
        lifespan=runtime.lifespan,
        # No OpenTelemetry here (Prometheus metrics instead): FastAPI's native telemetry
        # otherwise asks the global OTel providers on every request (≈ 10 % of intake's CPU
        # at load, docs/bench/profiles/intake-after.txt).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    def store_of(_request: Request) -> IntakeStore:
        return IntakeStore(runtime.pool, topic_prefix=settings.kafka.topic_prefix)

    install_common(
        app,
        service=SERVICE,
        ready=runtime.ready,
        max_body_bytes=settings.limits.max_body_bytes,
        body_overrides=[(BATCH_PATH, settings.limits.batch_max_body_bytes)],
    )
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """As shared.http's, plus the batch's errors grouped by item index."""
        fields = [
            {"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        body: dict[str, Any] = {
            "error": "validation_failed",
            "message": "Invalid request — "
            + "; ".join(f"{f['field']}: {f['message']}" for f in fields),
            "fields": fields,
        }
        items = sorted({int(m.group(1)) for f in fields if (m := _ITEM.match(f["field"]))})
        if items:
            body["items"] = items
            body["message"] = f"Invalid item(s) {items} (nothing was recorded) — " + body[
                "message"
            ].removeprefix("Invalid request — ")
        return JSONResponse(body, status_code=422)

    limiter = RateLimiter(
        enabled=settings.rate_limit.enabled,
        trusted_proxies=settings.http.trusted_proxies,
    )

    def store() -> IntakeStore:
        return IntakeStore(runtime.pool, topic_prefix=settings.kafka.topic_prefix)

    references = ReferenceCache(
        lambda: store().reference_snapshot(), ttl_s=settings.reference_cache.ttl_s
    )
    writer = None
    if settings.write.group_commit:
        writer = GroupWriter(
            lambda pending: store().save_many(pending),
            lambda p: store().save_opinions(
                p.opinions, response=p.response, idempotency=p.idempotency
            ),
            writers=settings.write.writers,
            max_rows=settings.write.max_rows,
        )
        runtime.closers.append(writer.close)  # before the pool closes
    deps = Deps(
        store_of,
        settings,
        limiter,
        clock or _system_clock,
        wechat_clock or _system_clock,
        references=references,
        writer=writer,
    )
    app.include_router(build_router(deps))
    app.include_router(build_stations_router(deps))
    app.include_router(
        build_reference_router(
            settings.auth,
            lambda _r: ReferenceStore(
                runtime.pool,
                topic_prefix=settings.kafka.topic_prefix,
                on_change=references.invalidate,
            ),
        )
    )
    app.state.runtime = runtime
    app.state.limiter = limiter
    app.state.references = references
    return app


async def seed(settings: IntakeSettings) -> str:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await ReferenceStore(pool, topic_prefix=settings.kafka.topic_prefix).seed(wenling())
    finally:
        await pool.close()
