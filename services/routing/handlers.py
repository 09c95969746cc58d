"""Routing's message handlers: parse, decide with the domain, write through the store."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from services.routing import domain
from services.routing.store import RoutingStore
from shared.events import EventEnvelope, OpinionSubmittedV1
from shared.failpoints import failpoint
from shared.messaging.inbox import Delivery

SERVICE = "routing"
log = structlog.get_logger(__name__)


async def on_opinion_event(
    store: RoutingStore,
    envelope: EventEnvelope,
    delivery: Delivery,
    deadlines: domain.DeadlineSettings,
) -> str:
    """Route one opinion event; returns the outcome (for metrics and tests)."""
    if not envelope.is_a(OpinionSubmittedV1):
        return "ignored"
    opinion = envelope.payload_as(OpinionSubmittedV1)
    structlog.contextvars.bind_contextvars(opinion_id=str(opinion.opinion_id))
    async with store.unit_of_work() as tx:
        if not await tx.claim(delivery, envelope.event_id):
            return "duplicate"
        if await tx.case_for_opinion(opinion.opinion_id) is not None:
            return "duplicate"  # the same opinion published twice under two event ids
        department_id = domain.choose_department(
            await tx.routing_rules(),
            category_id=opinion.category_id,
            town_id=opinion.town_id,
            fallback=await tx.fallback_department(),
        )
        case = domain.assign(
            opinion,
            department_id=department_id,
            kind=await tx.kind_of(opinion.category_id),
            deadlines=deadlines,
            now=datetime.now(UTC),
        )
        assigned = envelope.caused(case.assigned_event(), producer=SERVICE)
        await tx.insert_case(case, cause=envelope, event_id=assigned.event_id)
        await tx.publish(assigned)
    failpoint("after_handler_commit")
    structlog.contextvars.bind_contextvars(case_id=str(case.case_id))
    log.info("case_assigned", department_id=department_id, kind=case.kind.value)
    return "processed"
