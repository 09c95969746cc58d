"""Intake's rules: what an acceptable opinion is, the receipt a voter gets, the stages a voter
may see. No I/O."""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import phonenumbers

from shared.codes import new_code
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseClosedV1,
    CaseCompletedV1,
    CaseEscalatedV1,
    CaseExtensionDecidedV1,
    CaseExtensionRequestedV1,
    CaseOverdueV1,
    CaseReopenedV1,
    CaseReturnedV1,
    CaseTriagedV1,
    Channel,
    EventEnvelope,
    HandlingEvaluatedV1,
    InvitationDecidedV1,
    InvitationRequestedV1,
    OpinionSubmittedV1,
    ReceptionDayChangedV1,
    SatisfactionRatedV1,
    StationActivityRecordedV1,
    VoterContactRecordedV1,
)

SERVICE = "intake"

# Entered by station staff (offline channels, the mailbox, the hotline) …
STAFF_CHANNELS = frozenset(
    {
        Channel.STATION_RECEPTION,
        Channel.DEPUTY_VISIT,
        Channel.JOINT_SESSION,
        Channel.MAILBOX,
        Channel.HOTLINE,
    }
)
# … or by the voter: the public online form (WeChat has its own callback).
PUBLIC_CHANNELS = frozenset({Channel.ONLINE})

CONTENT_MIN, CONTENT_MAX = 5, 4000
NAME_MAX = 50
CLOCK_SKEW = timedelta(minutes=5)


class InvalidPhone(ValueError):
    pass


def new_receipt_code() -> str:
    """A voter's receipt code, XXXXX-XXXXX (shared/codes.py)."""
    return new_code()


def normalise_mobile(raw: str) -> str:
    """A Chinese mainland mobile number in E.164 (+86…), or InvalidPhone."""
    try:
        number = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if number.country_code != 86 or phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidPhone("not a Chinese mainland mobile number")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid Chinese mainland mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def not_in_future(value: datetime, now: datetime) -> datetime:
    if value > now + CLOCK_SKEW:
        raise ValueError("must not be in the future")
    return value


def request_fingerprint(body: Mapping[str, Any]) -> str:
    """A stable hash of a request's meaning (for idempotency keys: same key, same request)."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


@dataclass(frozen=True)
class ReferenceSnapshot:
    """The ids an opinion may name (live records only; retired ones are refused)."""

    station_towns: Mapping[str, str]
    categories: frozenset[str]
    deputies: frozenset[str]

    def problems(
        self, *, station_id: str, category_id: str | None, deputy_id: str | None
    ) -> list[FieldProblem]:
        found = []
        if station_id not in self.station_towns:
            found.append(FieldProblem("station_id", f"unknown id {station_id!r}"))
        if category_id is not None and category_id not in self.categories:
            found.append(FieldProblem("category_id", f"unknown id {category_id!r}"))
        if deputy_id is not None and deputy_id not in self.deputies:
            found.append(FieldProblem("deputy_id", f"unknown id {deputy_id!r}"))
        return found


@dataclass(frozen=True)
class Opinion:
    opinion_id: UUID
    receipt_code: str
    channel: Channel
    station_id: str
    town_id: str
    category_id: str | None
    deputy_id: str | None
    content: str
    voter_name: str | None
    voter_phone: str | None
    submitted_at: datetime
    wechat_openid: str | None = None
    entered_by: str | None = None
    import_key: str | None = None

    def submitted_event(self) -> OpinionSubmittedV1:
        return OpinionSubmittedV1(
            opinion_id=self.opinion_id,
            receipt_code=self.receipt_code,
            channel=self.channel,
            station_id=self.station_id,
            town_id=self.town_id,
            category_id=self.category_id,
            deputy_id=self.deputy_id,
            content=self.content,
            submitted_at=self.submitted_at,
            voter_reachable=self.voter_phone is not None or self.wechat_openid is not None,
        )

    def contact_event(self) -> VoterContactRecordedV1 | None:
        """How to reach the voter (personal data, restricted topic), when we can at all."""
        if self.voter_phone is None and self.wechat_openid is None:
            return None
        return VoterContactRecordedV1(
            opinion_id=self.opinion_id,
            phone_e164=self.voter_phone,
            wechat_openid=self.wechat_openid,
            # A voter who wrote to the official account may be answered there.
            wechat_opted_in=self.wechat_openid is not None,
        )

    def envelopes(self) -> list[EventEnvelope]:
        """What this opinion publishes (through the outbox, with its row)."""
        submitted = EventEnvelope.wrap(
            self.submitted_event(), producer=SERVICE, correlation_id=self.opinion_id
        )
        contact = self.contact_event()
        if contact is None:
            return [submitted]
        return [submitted, submitted.caused(contact, producer=SERVICE)]


# ---------------------------------------------------------------------------------------------
# The voter's view of a case: stages, by event type. Nothing personal, nothing internal.


@dataclass(frozen=True)
class Stage:
    case_id: UUID
    stage: str
    at: datetime
    opinion_ids: tuple[UUID, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


def _day(value: date | datetime) -> str:
    return value.isoformat()


COMMON = "common"
GROUPED_NOTE = (
    "您的意见已与本镇（街道）同类意见一并汇总为一件建议，由有关部门统一研究；"
    "您的意见仍按原进度办理，办理结果会继续在此显示。"
)


@dataclass(frozen=True)
class Grouping:
    """Opinions gathered into a common-problem suggestion (a case of its own): a note on each
    member's receipt, never a stage — a member's stages are those of its own case."""

    suggestion_case_id: UUID
    opinion_ids: tuple[UUID, ...]
    at: datetime


def grouping_of(envelope: EventEnvelope) -> Grouping | None:
    """The grouping a `case.triaged` of a common-problem suggestion announces, or None."""
    if not envelope.is_a(CaseTriagedV1):
        return None
    t = envelope.payload_as(CaseTriagedV1)
    if t.classification != COMMON:
        return None
    return Grouping(t.case_id, tuple(t.opinion_ids), t.triaged_at)


def grouped_note(at: datetime) -> dict[str, Any]:
    """The note a grouping leaves on a member's receipt."""
    return {"kind": "grouped", "at": at, "text": GROUPED_NOTE}


def stage_of(envelope: EventEnvelope) -> Stage | None:
    """The stage a case or evaluation event means to the voter, or None (not shown). A
    suggestion's triage is a grouping (`grouping_of`), not a stage."""
    if envelope.is_a(CaseTriagedV1):
        t = envelope.payload_as(CaseTriagedV1)
        if t.classification == COMMON:
            return None
        return Stage(
            t.case_id,
            "triaged",
            t.triaged_at,
            tuple(t.opinion_ids),
            {"classification": t.classification},
        )
    if envelope.is_a(InvitationRequestedV1):
        r = envelope.payload_as(InvitationRequestedV1)
        return Stage(r.case_id, "invitation_requested", r.requested_at)
    if envelope.is_a(InvitationDecidedV1):
        d = envelope.payload_as(InvitationDecidedV1)
        stage = "invitation_approved" if d.approved else "invitation_declined"
        return Stage(d.case_id, stage, d.decided_at)
    if envelope.is_a(CaseAssignedV1):
        a = envelope.payload_as(CaseAssignedV1)
        return Stage(
            a.case_id,
            "assigned",
            a.assigned_at,
            (a.opinion_id,),
            {"department_id": a.department_id, "complete_due_at": _day(a.complete_due_at)},
        )
    if envelope.is_a(CaseAcknowledgedV1):
        k = envelope.payload_as(CaseAcknowledgedV1)
        return Stage(
            k.case_id,
            "acknowledged",
            k.acknowledged_at,
            detail={
                "department_id": k.department_id,
                "planned_completion_date": _day(k.planned_completion_date),
            },
        )
    if envelope.is_a(CaseExtensionRequestedV1):
        q = envelope.payload_as(CaseExtensionRequestedV1)
        return Stage(q.case_id, "extension_requested", q.requested_at)
    if envelope.is_a(CaseExtensionDecidedV1):
        x = envelope.payload_as(CaseExtensionDecidedV1)
        return Stage(
            x.case_id,
            "extension_granted" if x.granted else "extension_refused",
            x.decided_at,
            detail={"complete_due_at": _day(x.complete_due_at)},
        )
    if envelope.is_a(CaseReturnedV1):
        b = envelope.payload_as(CaseReturnedV1)
        return Stage(b.case_id, "returned", b.returned_at)
    if envelope.is_a(CaseCompletedV1):
        c = envelope.payload_as(CaseCompletedV1)
        return Stage(
            c.case_id,
            "completed",
            c.completed_at,
            (c.opinion_id,),
            {"result_summary": c.result_summary, "on_time": c.on_time},
        )
    if envelope.is_a(CaseReopenedV1):
        o = envelope.payload_as(CaseReopenedV1)
        return Stage(o.case_id, "reopened", o.reopened_at)
    if envelope.is_a(CaseClosedV1):
        z = envelope.payload_as(CaseClosedV1)
        return Stage(z.case_id, "closed", z.closed_at)
    if envelope.is_a(CaseOverdueV1):
        v = envelope.payload_as(CaseOverdueV1)
        return Stage(v.case_id, "overdue", v.fired_at, detail={"deadline": v.deadline})
    if envelope.is_a(CaseEscalatedV1):
        e = envelope.payload_as(CaseEscalatedV1)
        return Stage(e.case_id, "supervised", e.fired_at)
    if envelope.is_a(SatisfactionRatedV1):
        s = envelope.payload_as(SatisfactionRatedV1)
        return Stage(s.case_id, "rated", s.rated_at, (s.opinion_id,), {"level": s.level})
    if envelope.is_a(HandlingEvaluatedV1):
        h = envelope.payload_as(HandlingEvaluatedV1)
        return Stage(h.case_id, "evaluated", h.evaluated_at, detail={"by": h.evaluator_kind})
    return None


def history_order(stages: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Stages by when they happened (not by when we heard of them: events arrive out of
    order across topics)."""
    return sorted(stages, key=lambda s: (s["at"], s["stage"]))


# ---------------------------------------------------------------------------------------------
# Stations: activity records (台账) and the published reception day (活动日).

CHINA = ZoneInfo("Asia/Shanghai")
RECEPTION_NOTICE_DAYS = 3  # a reception day change is announced at least this many days ahead
STATS_MAX_DAYS = 366


def china_today(now: datetime) -> date:
    """The calendar day in Wenling at `now` (an aware datetime)."""
    return now.astimezone(CHINA).date()


class ActivityKind(StrEnum):
    RECEPTION = "reception"  # 坐诊: a reception batch on the reception day
    VISIT = "visit"  # 出诊: deputies visiting voters
    JOINT_SESSION = "joint_session"  # 会诊: with departments
    STUDY = "study"
    OTHER = "other"


@dataclass(frozen=True)
class StationActivity:
    activity_id: UUID
    station_id: str
    town_id: str
    kind: ActivityKind
    activity_date: date
    deputy_ids: tuple[str, ...]
    visitor_count: int
    opinion_ids: tuple[UUID, ...]
    notes: str | None
    recorded_at: datetime
    recorded_by: str
    client_id: str | None = None

    def event(self) -> StationActivityRecordedV1:
        return StationActivityRecordedV1(
            activity_id=self.activity_id,
            station_id=self.station_id,
            town_id=self.town_id,
            kind=self.kind.value,
            activity_date=self.activity_date,
            deputy_ids=list(self.deputy_ids),
            visitor_count=self.visitor_count,
            opinion_ids=list(self.opinion_ids),
            recorded_at=self.recorded_at,
        )

    def envelope(self) -> EventEnvelope:
        return EventEnvelope.wrap(self.event(), producer=SERVICE, correlation_id=self.activity_id)


def activity_problems(
    *,
    activity_date: date,
    today: date,
    deputy_ids: Sequence[str],
    known_deputies: frozenset[str],
    opinion_ids: Sequence[UUID],
    station_opinions: frozenset[UUID],
) -> list[FieldProblem]:
    """What is wrong with an activity record: a future date, deputies we don't know (any
    station's: deputies join other stations' sessions), opinions not taken at this station."""
    found = []
    if activity_date > today:
        found.append(
            FieldProblem(
                "activity_date", f"must not be in the future (today is {today}, Asia/Shanghai)"
            )
        )
    for index, deputy in enumerate(deputy_ids):
        if deputy not in known_deputies:
            found.append(FieldProblem(f"deputy_ids.{index}", f"unknown deputy {deputy!r}"))
    for index, opinion in enumerate(opinion_ids):
        if opinion not in station_opinions:
            found.append(
                FieldProblem(f"opinion_ids.{index}", f"no opinion {opinion} of this station")
            )
    return found


_MONTHLY_DAY = re.compile(r"(\d{1,2})\s*[日号]")


def monthly_reception_day(rule: str | None) -> int | None:
    """The day of the month of a published rule such as "每月15日" (None if it names none)."""
    match = _MONTHLY_DAY.search(rule or "")
    if match is None:
        return None
    day = int(match.group(1))
    return day if 1 <= day <= 31 else None


def scheduled_reception_date(rule: str | None, year: int, month: int) -> date | None:
    """The month's reception date by the station's published rule (the 31st → the last day)."""
    day = monthly_reception_day(rule)
    if day is None:
        return None
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def reception_day_problems(new_date: date, today: date) -> list[FieldProblem]:
    """A reception day may move only when announced at least RECEPTION_NOTICE_DAYS ahead."""
    ahead = (new_date - today).days
    if ahead >= RECEPTION_NOTICE_DAYS:
        return []
    return [
        FieldProblem(
            "new_date",
            f"a reception day change must be announced at least {RECEPTION_NOTICE_DAYS} days "
            f"ahead (rule: new_date − today ≥ {RECEPTION_NOTICE_DAYS} days, Asia/Shanghai); "
            f"{new_date} is {ahead} day(s) from today ({today})",
        )
    ]


@dataclass(frozen=True)
class ReceptionDayChange:
    change_id: UUID
    station_id: str
    month: str  # YYYY-MM: the month whose reception day moves (the new date's month)
    previous_date: date | None
    new_date: date
    reason: str
    announced_at: datetime
    announced_by: str

    def event(self) -> ReceptionDayChangedV1:
        return ReceptionDayChangedV1(
            station_id=self.station_id,
            previous_date=self.previous_date,
            new_date=self.new_date,
            reason=self.reason,
            announced_at=self.announced_at,
        )

    def envelope(self) -> EventEnvelope:
        return EventEnvelope.wrap(self.event(), producer=SERVICE, correlation_id=self.change_id)


def stats_range_problems(first: date, last: date) -> list[FieldProblem]:
    if last < first:
        return [FieldProblem("to", f"must not be before from ({first})")]
    if (last - first).days + 1 > STATS_MAX_DAYS:
        return [FieldProblem("to", f"the range may span at most {STATS_MAX_DAYS} days")]
    return []


def daily_counts(
    rows: Iterable[tuple[date, str, int]], first: date, last: date
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(day, channel, count) rows → every day of the range with its counts by channel (days
    without opinions included), and the totals by channel."""
    by_day: dict[date, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for day, channel, count in rows:
        by_day.setdefault(day, {})[channel] = count
        totals[channel] = totals.get(channel, 0) + count
    days = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        counts = dict(sorted(by_day.get(day, {}).items()))
        days.append({"day": day, "total": sum(counts.values()), "by_channel": counts})
    return days, dict(sorted(totals.items()))
