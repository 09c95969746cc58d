"""Notification's rules: who hears of which event, by which channel, with which template.

No I/O: the recipients an event concerns (the station's head and deputies, the committee, how
the voter can be reached) come in as a `Directory` the store reads in the planning
transaction. Timing rules (backoff, rate limits, quiet hours, breaker) are in `delivery_rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from services.notification.delivery_rules import (
    BreakerSettings,
    DispatchSettings,
    QuietHoursSettings,
    RateLimit,
    RateLimitSettings,
    retry_delay,
)
from services.notification.templates import TEMPLATES, build_params
from shared.events import (
    CaseAssignedV1,
    CaseCompletedV1,
    CaseDeadlineApproachingV1,
    CaseEscalatedV1,
    CaseOverdueV1,
    Event,
    EventEnvelope,
    InvitationDecidedV1,
    InvitationRequestedV1,
    OpinionSubmittedV1,
    RatingInvitedV1,
)
from shared.reference import wenling

__all__ = [
    "CHINA",
    "RULES",
    "BreakerSettings",
    "Directory",
    "DispatchSettings",
    "PlannedDelivery",
    "QuietHoursSettings",
    "RateLimit",
    "RateLimitSettings",
    "RecipientSettings",
    "Rule",
    "TemplateSettings",
    "VoterReach",
    "delivery_id",
    "plan_deliveries",
    "retry_delay",
]

CHINA = ZoneInfo("Asia/Shanghai")
DELIVERY_NAMESPACE = UUID("6f1c1f3e-4b7a-4c51-9d8e-3a2b1c0d9e8f")

VOTER = "voter"
DEPARTMENT = "department"
STATION_STAFF = "station_staff"  # a station's head (站长) and deputy heads
COMMITTEE = "committee"  # 代表与选任工委


def _default_codes(prefix: str, start: int) -> dict[str, str]:
    # case_assigned_department keeps the first code (SMS_100000001), as before #5.
    names = ["case_assigned_department", *(n for n in TEMPLATES if n != "case_assigned_department")]
    return {name: f"{prefix}{start + i}" for i, name in enumerate(names)}


ALL_AUDIENCES = ("department", "voter", "station_staff", "committee")


Audience = Literal["department", "voter", "station_staff", "committee"]


def _departments_only() -> list[Audience]:
    return ["department"]


class RecipientSettings(BaseModel):
    """Which rows of the recipients table are switched on. Default: departments only (as
    before #5); add voter, station_staff, committee once their templates are registered."""

    model_config = ConfigDict(extra="forbid")
    audiences: list[Audience] = Field(default_factory=_departments_only)


class TemplateSettings(BaseModel):
    """Each template's code as registered with each provider."""

    model_config = ConfigDict(extra="forbid")
    aliyun: dict[str, str] = Field(default_factory=lambda: _default_codes("SMS_", 100000001))
    tencent: dict[str, str] = Field(default_factory=lambda: _default_codes("", 2000001))
    wechat: dict[str, str] = Field(
        default_factory=lambda: {name: f"tpl-{name}" for name in TEMPLATES},
        description="Official-account template ids.",
    )

    def code_for(self, provider: str, template: str) -> str:
        table = {"tencent": self.tencent, "wechat": self.wechat}.get(provider, self.aliyun)
        return table.get(template, template)


@dataclass(frozen=True)
class VoterReach:
    """How a voter can be reached (from voter_contact.recorded; never logged)."""

    has_phone: bool
    has_wechat: bool  # an openid and an opt-in


@dataclass(frozen=True)
class Directory:
    """Who stands behind a group, as the store knows it at planning time."""

    station_staff: dict[str, list[str]] = field(default_factory=dict)  # station id → refs
    committee: list[str] = field(default_factory=list)
    voter: VoterReach | None = None


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
    urgent: bool = False


def delivery_id(
    source_event_id: UUID, recipient_kind: str, recipient_ref: str, channel: str
) -> UUID:
    """Deterministic: the same event and recipient always give the same delivery."""
    return uuid5(
        DELIVERY_NAMESPACE, f"{source_event_id}|{recipient_kind}|{recipient_ref}|{channel}"
    )


def _local(ts: datetime) -> str:
    return ts.astimezone(CHINA).strftime("%m月%d日%H:%M")


def _department(department_id: str | None) -> str:
    names = {d.id: d.name for d in wenling().departments}
    return names.get(department_id or "", department_id or "相关部门")


def _station(station_id: str) -> str:
    names = {s.id: s.name for s in wenling().stations}
    return names.get(station_id, station_id)


def _category(category_id: str | None) -> str:
    names = {c.id: c.name for c in wenling().categories}
    return names.get(category_id or "", "未分类")


def _case_ref(case_id: UUID) -> str:
    return str(case_id)[:8].upper()


_DEADLINE = {"acknowledge": "签收", "complete": "办结"}


@dataclass(frozen=True)
class Rule:
    """One row of the table: this event tells this audience, with this template."""

    event: type[Event]
    audience: str  # voter | department | station_staff | committee
    template: str
    params: Callable[[Event], dict[str, str]]
    case_id: Callable[[Event], UUID | None]
    audience_ref: Callable[[Event], str]  # opinion id, department id or station id
    urgent: bool = False


def _p(fn: Callable[..., dict[str, str]]) -> Callable[[Event], dict[str, str]]:
    return fn


def _opinion_params(e: OpinionSubmittedV1) -> dict[str, str]:
    return {
        "receipt_code": e.receipt_code,
        "station": _station(e.station_id),
        "category": _category(e.category_id),
    }


def _assigned_params(e: CaseAssignedV1) -> dict[str, str]:
    return {
        "receipt_code": e.receipt_code,
        "acknowledge_due": _local(e.acknowledge_due_at),
        "complete_due": _local(e.complete_due_at),
        "department": _department(e.department_id),
    }


def _deadline_params(e: CaseDeadlineApproachingV1 | CaseOverdueV1) -> dict[str, str]:
    return {
        "case_ref": _case_ref(e.case_id),
        "due": _local(e.due_at),
        "deadline": _DEADLINE.get(e.deadline, e.deadline),
    }


def _case_id(e: Event) -> UUID | None:
    value = getattr(e, "case_id", None)
    return value if isinstance(value, UUID) else None


def _opinion_ref(e: Event) -> str:
    return str(getattr(e, "opinion_id", ""))


RULES: tuple[Rule, ...] = (
    # The voter: a receipt, where their opinion went, the result, the rating link.
    Rule(
        OpinionSubmittedV1,
        VOTER,
        "opinion_received_voter",
        _p(_opinion_params),
        lambda e: None,
        _opinion_ref,
    ),
    Rule(
        CaseAssignedV1, VOTER, "case_assigned_voter", _p(_assigned_params), _case_id, _opinion_ref
    ),
    Rule(
        CaseCompletedV1,
        VOTER,
        "case_completed_voter",
        _p(lambda e: {"result": e.result_summary}),
        _case_id,
        _opinion_ref,
    ),
    Rule(
        RatingInvitedV1,
        VOTER,
        "rating_invited_voter",
        _p(lambda e: {"url": e.rating_url, "expires": _local(e.expires_at)}),
        _case_id,
        _opinion_ref,
    ),
    # The department's contact: a new task, reminders, overdue.
    Rule(
        CaseAssignedV1,
        DEPARTMENT,
        "case_assigned_department",
        _p(_assigned_params),
        _case_id,
        lambda e: str(getattr(e, "department_id", "")),
    ),
    Rule(
        CaseDeadlineApproachingV1,
        DEPARTMENT,
        "case_deadline_approaching_department",
        _p(_deadline_params),
        _case_id,
        lambda e: str(getattr(e, "department_id", "")),
    ),
    Rule(
        CaseOverdueV1,
        DEPARTMENT,
        "case_overdue_department",
        _p(_deadline_params),
        _case_id,
        lambda e: str(getattr(e, "department_id", "")),
        urgent=True,
    ),
    # The station's head and deputy heads: an opinion at their station, the committee's decision.
    Rule(
        OpinionSubmittedV1,
        STATION_STAFF,
        "opinion_at_station",
        _p(_opinion_params),
        lambda e: None,
        lambda e: str(getattr(e, "station_id", "")),
    ),
    Rule(
        InvitationDecidedV1,
        STATION_STAFF,
        "invitation_decided_station",
        _p(
            lambda e: {
                "case_ref": _case_ref(e.case_id),
                "department": _department(e.department_id),
                "decision": "同意约请" if e.approved else "不予约请",
            }
        ),
        _case_id,
        lambda e: str(getattr(e, "station_id", "")),
    ),
    # The committee: invitations to review, escalated cases to supervise.
    Rule(
        InvitationRequestedV1,
        COMMITTEE,
        "invitation_requested_committee",
        _p(
            lambda e: {
                "station": _station(e.station_id),
                "case_ref": _case_ref(e.case_id),
                "department": _department(e.department_id),
            }
        ),
        _case_id,
        lambda e: "",
    ),
    Rule(
        CaseEscalatedV1,
        COMMITTEE,
        "case_escalated_committee",
        _p(
            lambda e: {
                "case_ref": _case_ref(e.case_id),
                "department": _department(e.department_id),
                "deadline": _DEADLINE.get(e.deadline, e.deadline),
            }
        ),
        _case_id,
        lambda e: "",
        urgent=True,
    ),
)


def rules_for(envelope: EventEnvelope, audiences: Collection[str] = ALL_AUDIENCES) -> list[Rule]:
    return [r for r in RULES if envelope.is_a(r.event) and r.audience in audiences]


def voter_opinion_id(
    envelope: EventEnvelope, audiences: Collection[str] = ALL_AUDIENCES
) -> UUID | None:
    """The opinion whose voter this event concerns (for the store to look up), if any."""
    for rule in rules_for(envelope, audiences):
        if rule.audience == VOTER:
            return UUID(rule.audience_ref(envelope.payload_as(rule.event)))
    return None


def voter_channel(reach: VoterReach | None) -> str | None:
    """WeChat first where the voter has an openid and opted in; SMS otherwise."""
    if reach is None:
        return "sms"  # the contact may still arrive; the dispatcher waits for it
    if reach.has_wechat:
        return "wechat"
    if reach.has_phone:
        return "sms"
    return None  # unreachable voter: nothing to plan


def plan_deliveries(
    envelope: EventEnvelope,
    directory: Directory | None = None,
    audiences: Collection[str] = ALL_AUDIENCES,
) -> list[PlannedDelivery]:
    """Who hears of this event, by which channel (the recipients table, `RULES`)."""
    directory = directory or Directory()
    planned: list[PlannedDelivery] = []
    for rule in rules_for(envelope, audiences):
        event = envelope.payload_as(rule.event)
        ref = rule.audience_ref(event)
        targets: list[tuple[str, str]]  # (recipient_ref, channel)
        if rule.audience == VOTER:
            channel = voter_channel(directory.voter)
            targets = [(ref, channel)] if channel else []
        elif rule.audience == DEPARTMENT:
            targets = [(ref, "sms")]
        elif rule.audience == STATION_STAFF:
            targets = [(r, "sms") for r in directory.station_staff.get(ref, [])]
        else:
            targets = [(r, "sms") for r in directory.committee]
        params = build_params(rule.template, rule.params(event))
        planned.extend(
            PlannedDelivery(
                delivery_id=delivery_id(envelope.event_id, rule.audience, target, channel),
                source_event_id=envelope.event_id,
                case_id=rule.case_id(event),
                recipient_kind=rule.audience,
                recipient_ref=target,
                channel=channel,
                template=rule.template,
                params=params,
                urgent=rule.urgent,
            )
            for target, channel in targets
        )
    return planned
