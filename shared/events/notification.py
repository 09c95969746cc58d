"""Events of the notification aggregate (owned by notification)."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime

from shared.events.envelope import Event


class NotificationSentV1(Event):
    """A provider accepted a message for one recipient.

    Keyed by the case it is about, so a case's story stays in order downstream.
    """

    event_type: ClassVar[str] = "notification.sent"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "notification"

    delivery_id: UUID
    case_id: UUID | None
    source_event_id: UUID
    recipient_kind: str
    recipient_ref: str
    channel: str
    template: str
    provider: str
    provider_message_id: str | None
    sent_at: AwareDatetime

    def aggregate_id(self) -> str:
        return str(self.case_id or self.delivery_id)


class NotificationFailedV1(Event):
    """A message could not be sent (a permanent provider error, or attempts exhausted)."""

    event_type: ClassVar[str] = "notification.failed"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "notification"

    delivery_id: UUID
    case_id: UUID | None
    source_event_id: UUID
    recipient_kind: str
    recipient_ref: str
    channel: str
    template: str
    provider: str | None
    error_code: str
    attempts: int
    failed_at: AwareDatetime

    def aggregate_id(self) -> str:
        return str(self.case_id or self.delivery_id)


class NotificationDeliveredV1(Event):
    """The provider's status report: the message reached (or did not reach) the handset."""

    event_type: ClassVar[str] = "notification.delivered"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "notification"

    delivery_id: UUID
    case_id: UUID | None
    provider: str
    provider_message_id: str
    delivered: bool
    status_code: str
    reported_at: AwareDatetime

    def aggregate_id(self) -> str:
        return str(self.case_id or self.delivery_id)
