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
