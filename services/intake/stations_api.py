"""Station staff's records and the operator console's counts: activity records (台账), the
reception day (活动日), opinions per day and channel. Thin: a request in, a call out."""

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.intake.api import (
    STAFF_ROLES,
    Deps,
    IdempotencyHeader,
    ReferenceId,
    check_staff,
    conflict,
    idempotency_key_of,
    invalid,
)
from services.intake.domain import (
    RECEPTION_NOTICE_DAYS,
    ActivityKind,
    FieldProblem,
    StationActivity,
    activity_problems,
    china_today,
    daily_counts,
    reception_day_problems,
    scheduled_reception_date,
    stats_range_problems,
)
from services.intake.store import IdempotencyConflict, IdempotencyKey, IntakeStore
from shared.auth import Principal, Role, principal_dependency
from shared.http_errors import errors

log = structlog.get_logger(__name__)

# Who may read a station's records and the counts: staff, plus the committee (supervises).
READ_ROLES = STAFF_ROLES | {Role.COMMITTEE}

Notes = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
ClientId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=128)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]
Month = Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


class ActivityIn(BaseModel):
    """One activity of the station (a reception batch, a visit, a joint session, …)."""

    model_config = ConfigDict(extra="forbid")

    kind: ActivityKind
    activity_date: date = Field(description="The day it took place (not in the future).")
    deputy_ids: list[ReferenceId] = Field(
        default_factory=list, max_length=200, description="Deputies present (any station's)."
    )
    visitor_count: int = Field(default=0, ge=0, le=100_000, description="Voters received.")
    opinion_ids: list[UUID] = Field(
        default_factory=list,
        max_length=500,
        description="Opinions taken during it (entered before; opinions of this station).",
    )
    notes: Notes | None = None
    client_id: ClientId | None = Field(
        default=None,
        description="The client's own id of this record: sending it again records it once "
        "(as an Idempotency-Key would).",
    )


class ActivityOut(BaseModel):
    activity_id: UUID
    station_id: str
    town_id: str
    kind: str
    activity_date: date
    deputy_ids: list[str]
    visitor_count: int
    opinion_ids: list[UUID]
    notes: str | None
    recorded_by: str
    recorded_at: datetime


class ActivitiesOut(BaseModel):
    station_id: str
    count: int
    activities: list[ActivityOut]


class ReceptionDayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_date: date = Field(
        description=f"The new reception date; at least {RECEPTION_NOTICE_DAYS} days after "
        "today (Asia/Shanghai). It moves the reception day of its own month."
    )
    reason: Reason


class ReceptionDayOut(BaseModel):
    station_id: str
    month: str
    rule: str | None = Field(description="The published monthly rule, e.g. 每月15日.")
    reception_date: date | None = Field(description="The month's reception date.")
    moved: bool = Field(description="Moved from the rule's date by an announced change.")
    previous_date: date | None = None
    reason: str | None = None
    announced_at: datetime | None = None


class DayCountOut(BaseModel):
    day: date
    total: int
    by_channel: dict[str, int]


class OpinionStatsOut(BaseModel):
    """Counts only: no content, no voter."""

    from_: date = Field(alias="from")
    to: date
    station_id: str | None
    town_id: str | None
    total: int
    by_channel: dict[str, int]
    days: list[DayCountOut] = Field(description="Every day of the range, in order.")

    model_config = ConfigDict(populate_by_name=True)


def build_stations_router(deps: Deps) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    current = principal_dependency(deps.settings.auth)

    async def station_or_422(store: IntakeStore, station_id: str) -> dict[str, Any]:
        station = await store.station(station_id)
        if station is None:
            raise invalid([FieldProblem("station_id", f"unknown id {station_id!r}")])
        return station

    @router.post(
        "/stations/{station_id}/activities",
        tags=["station staff"],
        status_code=status.HTTP_201_CREATED,
        response_model=ActivityOut,
        summary="Record a station activity (台账): reception, visit, joint session, study, other "
        "(publishes station.activity_recorded)",
        description="Idempotent by `client_id` (per station) or `Idempotency-Key` (per account): "
        "a retry returns the first record (header `Idempotent-Replayed: true`).",
        responses=errors(
            401,
            403,
            409,
            422,
            notes={
                403: "Not this station's account.",
                409: "The client id or key was used for another record.",
                422: "A field is invalid (named), or the station is unknown; nothing was recorded.",
            },
        ),
    )
    async def record_activity(
        station_id: str,
        body: ActivityIn,
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(current)],
        idempotency_key: IdempotencyHeader = None,
    ) -> dict[str, Any]:
        check_staff(principal, station_id, action="record station activities")
        store = deps.store_of(request)
        station = await station_or_422(store, station_id)
        now = deps.clock()
        deputy_ids = list(dict.fromkeys(body.deputy_ids))
        opinion_ids = list(dict.fromkeys(body.opinion_ids))
        problems = activity_problems(
            activity_date=body.activity_date,
            today=china_today(now),
            deputy_ids=deputy_ids,
            known_deputies=await store.live_deputies(deputy_ids),
            opinion_ids=opinion_ids,
            station_opinions=await store.station_opinions(station_id, opinion_ids),
        )
        if problems:
            raise invalid(problems)
        activity = StationActivity(
            activity_id=uuid4(),
            station_id=station_id,
            town_id=station["town_id"],
            kind=body.kind,
            activity_date=body.activity_date,
            deputy_ids=tuple(deputy_ids),
            visitor_count=body.visitor_count,
            opinion_ids=tuple(opinion_ids),
            notes=body.notes,
            recorded_at=now,
            recorded_by=principal.subject,
            client_id=body.client_id,
        )
        result = ActivityOut(
            activity_id=activity.activity_id,
            station_id=station_id,
            town_id=activity.town_id,
            kind=activity.kind.value,
            activity_date=activity.activity_date,
            deputy_ids=deputy_ids,
            visitor_count=activity.visitor_count,
            opinion_ids=opinion_ids,
            notes=activity.notes,
            recorded_by=activity.recorded_by,
            recorded_at=now,
        ).model_dump(mode="json")
        meaning = {"station_id": station_id, **body.model_dump(mode="json")}
        idem: IdempotencyKey | None
        if body.client_id is not None:
            idem = idempotency_key_of(f"activity:{station_id}", body.client_id, meaning)
        else:
            idem = idempotency_key_of(principal.subject, idempotency_key, meaning)
        try:
            saved = await store.save_activity(activity, response=result, idempotency=idem)
        except IdempotencyConflict as exc:
            raise conflict() from exc
        if saved.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        else:
            log.info("station_activity_recorded", station_id=station_id, kind=body.kind.value)
        return saved.response

    @router.get(
        "/stations/{station_id}/activities",
        tags=["station staff"],
        response_model=ActivitiesOut,
        summary="A station's activity records, by activity date (inclusive range)",
        responses=errors(401, 403, 422, notes={422: "Bad range or unknown station."}),
    )
    async def list_activities(
        station_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(current)],
        first: Annotated[date | None, Query(alias="from")] = None,
        last: Annotated[date | None, Query(alias="to")] = None,
    ) -> ActivitiesOut:
        check_staff(principal, station_id, action="read station activities", roles=READ_ROLES)
        if first is not None and last is not None and last < first:
            raise invalid([FieldProblem("to", f"must not be before from ({first})")])
        store = deps.store_of(request)
        if not await store.station_exists(station_id):
            raise invalid([FieldProblem("station_id", f"unknown id {station_id!r}")])
        rows = await store.activities(station_id, first, last)
        return ActivitiesOut(
            station_id=station_id,
            count=len(rows),
            activities=[ActivityOut(**r) for r in rows],
        )

    @router.put(
        "/stations/{station_id}/reception-day",
        tags=["station staff"],
        response_model=ReceptionDayOut,
        summary="Move this month's reception day (活动日) — announced at least "
        f"{RECEPTION_NOTICE_DAYS} days ahead (publishes station.reception_day_changed)",
        description=f"Refused (422) when `new_date` − today < {RECEPTION_NOTICE_DAYS} days "
        "(Asia/Shanghai). The same date and reason again change nothing.",
        responses=errors(401, 403, 422, notes={422: "Too late, invalid, or an unknown station."}),
    )
    async def move_reception_day(
        station_id: str,
        body: ReceptionDayIn,
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(current)],
    ) -> ReceptionDayOut:
        check_staff(principal, station_id, action="change the reception day")
        now = deps.clock()
        problems = reception_day_problems(body.new_date, china_today(now))
        if problems:
            raise invalid(problems)
        store = deps.store_of(request)
        station = await station_or_422(store, station_id)
        moved = await store.move_reception_day(
            change_id=uuid4(),
            station_id=station_id,
            new_date=body.new_date,
            reason=body.reason,
            at=now,
            by=principal.subject,
        )
        if moved is None:  # retired in between
            raise invalid([FieldProblem("station_id", f"unknown id {station_id!r}")])
        change, new = moved
        if new:
            log.info("reception_day_moved", station_id=station_id, new_date=str(change.new_date))
        else:
            response.headers["Idempotent-Replayed"] = "true"
        return ReceptionDayOut(
            station_id=station_id,
            month=change.month,
            rule=station["reception_day"],
            reception_date=change.new_date,
            moved=True,
            previous_date=change.previous_date,
            reason=change.reason,
            announced_at=change.announced_at,
        )

    @router.get(
        "/stations/{station_id}/reception-day",
        tags=["stations"],
        response_model=ReceptionDayOut,
        summary="A station's reception date of a month (public: it is published)",
        responses=errors(404, notes={404: "No such station."}),
    )
    async def reception_day(
        station_id: str,
        request: Request,
        month: Annotated[Month | None, Query(description="YYYY-MM; this month if absent.")] = None,
    ) -> ReceptionDayOut:
        store = deps.store_of(request)
        station = await store.station(station_id)
        if station is None:
            raise HTTPException(404, detail={"message": f"No station {station_id!r}."})
        today = china_today(deps.clock())
        month = month or f"{today.year:04d}-{today.month:02d}"
        year, mon = (int(p) for p in month.split("-"))
        change = await store.reception_day(station_id, month)
        rule = station["reception_day"]
        if change is None:
            return ReceptionDayOut(
                station_id=station_id,
                month=month,
                rule=rule,
                reception_date=scheduled_reception_date(rule, year, mon),
                moved=False,
            )
        return ReceptionDayOut(
            station_id=station_id,
            month=month,
            rule=rule,
            reception_date=change["new_date"],
            moved=True,
            previous_date=change["previous_date"],
            reason=change["reason"],
            announced_at=change["announced_at"],
        )

    @router.get(
        "/stats/opinions",
        tags=["operator console"],
        response_model=OpinionStatsOut,
        summary="Opinions per day (Asia/Shanghai, by when raised) and channel — counts only",
        description="Staff roles (station, operator, admin, committee); a station account sees "
        "its own station only (the default when `station_id` is absent). At most 366 days.",
        responses=errors(401, 403, 422, notes={422: "Bad range or unknown id."}),
    )
    async def opinion_stats(
        request: Request,
        principal: Annotated[Principal, Depends(current)],
        first: Annotated[date, Query(alias="from")],
        last: Annotated[date, Query(alias="to")],
        station_id: Annotated[ReferenceId | None, Query()] = None,
        town_id: Annotated[ReferenceId | None, Query()] = None,
    ) -> OpinionStatsOut:
        if principal.role is Role.STATION and station_id is None:
            station_id = principal.station_id or ""
        # (Without station_id the caller is not a station account: any station passes.)
        check_staff(principal, station_id or "", action="read opinion counts", roles=READ_ROLES)
        problems = stats_range_problems(first, last)
        store = deps.store_of(request)
        if station_id is not None and not await store.station_exists(station_id):
            problems.append(FieldProblem("station_id", f"unknown id {station_id!r}"))
        if town_id is not None and not await store.town_exists(town_id):
            problems.append(FieldProblem("town_id", f"unknown id {town_id!r}"))
        if problems:
            raise invalid(problems)
        rows = await store.opinion_counts(first, last, station_id=station_id, town_id=town_id)
        days, totals = daily_counts(rows, first, last)
        return OpinionStatsOut(
            from_=first,
            to=last,
            station_id=station_id,
            town_id=town_id,
            total=sum(totals.values()),
            by_channel=totals,
            days=[DayCountOut(**d) for d in days],
        )

    return router
