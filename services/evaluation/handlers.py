"""Evaluation's handlers: fold case, notification and rating events into the case facts and
the KPIs; keep station activity; invite the voter to rate a completed case."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import structlog

from services.evaluation.ratings import RatingLinks
from services.evaluation.store import EvaluationStore, Invitation, invited_event
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseClosedV1,
    CaseCompletedV1,
    CaseExtensionDecidedV1,
    CaseOverdueV1,
    CaseReopenedV1,
    CaseReturnedV1,
    Event,
    EventEnvelope,
    InvitationDecidedV1,
    NotificationSentV1,
    SatisfactionRatedV1,
    StationActivityRecordedV1,
)
from shared.failpoints import failpoint
from shared.messaging.inbox import Delivery

SERVICE = "evaluation"
log = structlog.get_logger(__name__)

CASE_FACT_EVENTS: tuple[type[Event], ...] = (
    CaseAssignedV1,
    CaseAcknowledgedV1,
    CaseExtensionDecidedV1,
    CaseReturnedV1,
    CaseCompletedV1,
    CaseReopenedV1,
    CaseOverdueV1,
    CaseClosedV1,
    InvitationDecidedV1,
    SatisfactionRatedV1,
    NotificationSentV1,
)


def _case_event(envelope: EventEnvelope) -> tuple[UUID, Event] | None:
    for cls in CASE_FACT_EVENTS:
        if envelope.is_a(cls):
            event = envelope.payload_as(cls)
            case_id = getattr(event, "case_id", None)
            return (case_id, event) if isinstance(case_id, UUID) else None
    return None


async def on_event(
    store: EvaluationStore,
    envelope: EventEnvelope,
    delivery: Delivery,
    *,
    links: RatingLinks | None,
    now: datetime | None = None,
) -> str:
    """Handle one event; returns the outcome (for metrics and tests).

    `links` signs the rating invitation a completed case gets (None: no invitations).
    """
    if envelope.is_a(StationActivityRecordedV1):
        activity = envelope.payload_as(StationActivityRecordedV1)
        structlog.contextvars.bind_contextvars(station_id=activity.station_id)
        done = await store.record_activity(delivery, envelope.event_id, activity)
    else:
        found = _case_event(envelope)
        if found is None:
            return "ignored"
        case_id, event = found
        structlog.contextvars.bind_contextvars(case_id=str(case_id))
        invitation = None
        if isinstance(event, CaseCompletedV1) and links is not None:
            link = links.issue(case_id, event.opinion_id, now=now or datetime.now(UTC))
            invitation = Invitation(
                case_id=case_id,
                opinion_id=event.opinion_id,
                token_id=link.token_id,
                expires_at=link.expires_at,
                envelope=invited_event(
                    envelope,
                    case_id=case_id,
                    opinion_id=event.opinion_id,
                    url=links.url(link.token),
                    expires_at=link.expires_at,
                ),
            )
        done = await store.fold_case_event(
            delivery, envelope.event_id, case_id, event, invitation=invitation
        )
    if not done:
        return "duplicate"
    failpoint("after_handler_commit")
    log.info("read_model_updated", event_type=envelope.event_type)
    return "processed"
