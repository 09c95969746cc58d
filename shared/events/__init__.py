"""Versioned event contracts shared by the services."""

from shared.events.case import (
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
    InvitationDecidedV1,
    InvitationRequestedV1,
)
from shared.events.envelope import Event, EventEnvelope, envelope_schema
from shared.events.evaluation import HandlingEvaluatedV1, RatingInvitedV1, SatisfactionRatedV1
from shared.events.notification import (
    NotificationDeliveredV1,
    NotificationFailedV1,
    NotificationSentV1,
)
from shared.events.opinion import Channel, OpinionSubmittedV1, VoterContactRecordedV1
from shared.events.reference import (
    ReceptionDayChangedV1,
    ReferenceDataChangedV1,
    StationActivityRecordedV1,
)

__all__ = [
    "CaseAcknowledgedV1",
    "CaseAssignedV1",
    "CaseClosedV1",
    "CaseCompletedV1",
    "CaseDeadlineApproachingV1",
    "CaseEscalatedV1",
    "CaseExtensionDecidedV1",
    "CaseExtensionRequestedV1",
    "CaseOverdueV1",
    "CaseReopenedV1",
    "CaseReturnedV1",
    "CaseTriagedV1",
    "Channel",
    "Event",
    "EventEnvelope",
    "HandlingEvaluatedV1",
    "InvitationDecidedV1",
    "InvitationRequestedV1",
    "NotificationDeliveredV1",
    "NotificationFailedV1",
    "NotificationSentV1",
    "OpinionSubmittedV1",
    "RatingInvitedV1",
    "ReceptionDayChangedV1",
    "ReferenceDataChangedV1",
    "SatisfactionRatedV1",
    "StationActivityRecordedV1",
    "VoterContactRecordedV1",
    "envelope_schema",
]
