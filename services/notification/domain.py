"""Notification's rules: who hears of which event, with which template; retry timing. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from shared.events import CaseAssignedV1, EventEnvelope

CHINA = ZoneInfo("Asia/Shanghai")
DELIVERY_NAMESPACE = UUID("6f1c1f3e-4b7a-4c51-9d8e-3a2b1c0d9e8f")


class DispatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(default=50, ge=1)
    max_attempts: int = Field(default=8, ge=1)
    lease_s: float = Field(default=60, gt=0, description="A crashed sender's claim expires.")
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=600, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)


class TemplateSettings(BaseModel):
    """Provider template codes per message kind (registered with the provider)."""

    model_config = ConfigDict(extra="forbid")
    case_assigned_department: str = "SMS_100000001"


# The Chinese text of each template, as registered with the providers (for the console
# provider and for operators reading a delivery).
TEMPLATE_TEXT = {
    "case_assigned_department": (
        "【温岭人大】您单位有新的交办件（回执号{receipt_code}），"
        "请于{acknowledge_due}前签收，{complete_due}前办结。"
    ),
}


@dataclass(frozen=True)
class PlannedDelivery:
    delivery_id: UUID
    source_event_id: UUID
    case_id: UUID | None
    recipient_kind: str
    recipient_ref: str
    channel: str
    template: str
    params: dict[str, str]


def delivery_id(
    source_event_id: UUID, recipient_kind: str, recipient_ref: str, channel: str
) -> UUID:
    """Deterministic: the same event and recipient always give the same delivery."""
    return uuid5(
        DELIVERY_NAMESPACE, f"{source_event_id}|{recipient_kind}|{recipient_ref}|{channel}"
    )


def _local(ts: datetime) -> str:
    return ts.astimezone(CHINA).strftime("%m月%d日%H:%M")


def plan_deliveries(envelope: EventEnvelope) -> list[PlannedDelivery]:
    """Who hears of this event (the recipients table of the notification rules)."""
    if envelope.is_a(CaseAssignedV1):
        case = envelope.payload_as(CaseAssignedV1)
        return [
            PlannedDelivery(
                delivery_id=delivery_id(envelope.event_id, "department", case.department_id, "sms"),
                source_event_id=envelope.event_id,
                case_id=case.case_id,
                recipient_kind="department",
                recipient_ref=case.department_id,
                channel="sms",
                template="case_assigned_department",
                params={
                    "receipt_code": case.receipt_code,
                    "acknowledge_due": _local(case.acknowledge_due_at),
                    "complete_due": _local(case.complete_due_at),
                },
            )
        ]
    return []


def retry_delay(attempts: int, settings: DispatchSettings) -> timedelta:
    """Exponential backoff: base · 2^(attempts-1), capped."""
    seconds = min(settings.backoff_base_s * 2 ** max(0, attempts - 1), settings.backoff_max_s)
    return timedelta(seconds=seconds)
