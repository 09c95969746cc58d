"""Evaluation's handlers: fold case and notification events into the read model."""

from __future__ import annotations

import structlog

from services.evaluation.store import EvaluationStore
from shared.events import CaseAssignedV1, EventEnvelope, NotificationSentV1
from shared.failpoints import failpoint
from shared.messaging.inbox import Delivery

SERVICE = "evaluation"
log = structlog.get_logger(__name__)


async def on_event(store: EvaluationStore, envelope: EventEnvelope, delivery: Delivery) -> str:
    if envelope.is_a(CaseAssignedV1):
        event = envelope.payload_as(CaseAssignedV1)
        structlog.contextvars.bind_contextvars(case_id=str(event.case_id))
        done = await store.record_assigned(delivery, envelope.event_id, event)
    elif envelope.is_a(NotificationSentV1):
        sent = envelope.payload_as(NotificationSentV1)
        structlog.contextvars.bind_contextvars(case_id=str(sent.case_id))
        done = await store.record_notified(delivery, envelope.event_id, sent)
    else:
        return "ignored"
    if not done:
        return "duplicate"
    failpoint("after_handler_commit")
    log.info("read_model_updated", event_type=envelope.event_type)
    return "processed"
