"""Versioned event contracts shared by the services."""

from shared.events.case import CaseAssignedV1
from shared.events.envelope import Event, EventEnvelope, envelope_schema
from shared.events.notification import NotificationSentV1
from shared.events.opinion import Channel, OpinionSubmittedV1

__all__ = [
    "CaseAssignedV1",
    "Channel",
    "Event",
    "EventEnvelope",
    "NotificationSentV1",
    "OpinionSubmittedV1",
    "envelope_schema",
]
