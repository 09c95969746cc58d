"""Evaluation's HTTP handlers: the case as evaluation sees it, KPIs, voters' ratings,
evaluations of handling (评议), report-back sessions (述职评议), station activity, reports."""

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from services.evaluation import domain
from services.evaluation.domain import Dimension, Level
from services.evaluation.ratings import ForgedLink, RatingLinks, resolve_level
from services.evaluation.reports import build_report
from services.evaluation.reports.pdf import render_pdf
from services.evaluation.reports.xlsx import render_xlsx
from services.evaluation.stations import advanced_stations, distribution, parse_month
from services.evaluation.store import EvaluationStore
from shared.auth import AuthSettings, Principal, Role, principal_dependency, require_roles
from shared.events import EventEnvelope, HandlingEvaluatedV1
from shared.http_errors import errors
from shared.ratelimit import RateLimiter

SERVICE = "evaluation"
STAFF = (Role.STATION, Role.DEPARTMENT, Role.COMMITTEE, Role.OPERATOR, Role.ADMIN)
SCOPED = (Role.STATION, Role.DEPARTMENT)  # see their own cases only
REFERENCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2025-03"])]


class CaseFactsOut(BaseModel):
    case_id: UUID
    opinion_id: UUID | None
    department_id: str | None
    station_id: str | None
    town_id: str | None
    category_id: str | None
    kind: str | None
    is_invitation: bool
    assigned_at: datetime | None
    acknowledge_due_at: datetime | None
    complete_due_at: datetime | None
    first_notified_at: datetime | None
    notifications_sent: int
    acknowledged_at: datetime | None
    acknowledged_on_time: bool
    extension_granted: bool
    extended_due_at: datetime | None
    returns: int
    completions: int
    first_completed_at: datetime | None
    last_completed_at: datetime | None
    last_completed_on_time: bool
    reopens: int
    last_reopened_at: datetime | None
    overdue_acknowledge: bool
    overdue_complete: bool
    closed_at: datetime | None
    rating_level: str | None
    rated_at: datetime | None


class DepartmentSummaryOut(BaseModel):
    department_id: str
    assigned: int
    notified: int
    notified_rate: float | None


class KpiOut(BaseModel):
    dimension: str
    key: str
    month: str
    assigned: int
    acknowledged: int
    acknowledged_on_time: int
    completed: int
    completed_on_time: int
    rated: int
    satisfied: int
    basically_satisfied: int
    unsatisfied: int
    returned: int
    reopened: int
    overdue: int
    response_rate: float | None = Field(description="Acknowledged on time / assigned.")
    completion_rate: float | None = Field(description="Completed / assigned.")
    on_time_completion_rate: float | None = Field(description="Completed on time / completed.")
    satisfaction_rate: float | None = Field(
        description="(Satisfied + basically satisfied) / rated."
    )
    return_rate: float | None = Field(
        description="Returns made / assigned (a department's: the cases it received)."
    )


class RatingIn(BaseModel):
    level: str | None = Field(
        default=None,
        description="满意/基本满意/不满意 or satisfied/basically_satisfied/unsatisfied.",
    )
    score: int | None = Field(default=None, ge=1, le=5, description="1–5 (5,4 满意; 3; 2,1).")
    comment: str | None = Field(default=None, max_length=500)


class RatingOut(BaseModel):
    case_id: UUID
    level: Level
    level_name: str
    score: int | None
    rated_at: datetime
    reopen_requested: bool
    already_rated: bool


class RatingLinkOut(BaseModel):
    case_id: UUID
    expires_at: datetime
    expired: bool
    rating: RatingOut | None
    levels: dict[str, str]


class HandlingEvaluationIn(BaseModel):
    score: int = Field(ge=0, le=100)
    comment: str | None = Field(default=None, max_length=1000)


class HandlingEvaluationOut(BaseModel):
    case_id: UUID
    evaluator_kind: str
    evaluator_id: str
    evaluated_by: str
    department_id: str | None
    score: int
    comment: str | None
    evaluated_at: datetime


class SessionIn(BaseModel):
    deputy_id: str = Field(min_length=1, max_length=64)
    station_id: str | None = Field(default=None, max_length=64)
    held_on: date
    title: str = Field(min_length=1, max_length=200)


class ScoreIn(BaseModel):
    voter_ref: str = Field(
        min_length=1, max_length=64, description="The ballot's number — not a person's name."
    )
    score: int = Field(ge=0, le=100)


class ScoreOut(BaseModel):
    session_id: UUID
    voter_ref: str
    score: int
    recorded: bool = Field(description="False: this voter had scored already (that score).")


class DistributionOut(BaseModel):
    count: int
    mean: float | None
    minimum: int | None
    maximum: int | None
    bands: dict[str, int]


class SessionOut(BaseModel):
    session_id: UUID
    deputy_id: str
    station_id: str | None
    held_on: date
    title: str
    created_by: str
    distribution: DistributionOut


class StationActivityOut(BaseModel):
    station_id: str
    town_id: str
    activities: int
    reception_batches: int
    visitors: int
    issues: int
    monthly_batches: float
    under_one_batch_a_month: bool


class ActivityReportOut(BaseModel):
    first_month: str
    last_month: str
    months: int
    stations_count: int
    activities: int
    reception_batches: int
    visitors: int
    issues: int
    under_one_batch_a_month: int
    stations: list[StationActivityOut]


class AdvancedOut(BaseModel):
    year: int
    stations_count: int
    advanced: list[StationActivityOut]


def _refuse(status: int, error: str, message: str) -> HTTPException:
    return HTTPException(status, detail={"error": error, "message": message})


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(
        422,
        detail={
            "error": "validation_failed",
            "message": f"Invalid request — {field}: {message}",
            "fields": [{"field": field, "message": message}],
        },
    )


def _own_station_only(who: Principal, station_id: str | None, action: str) -> None:
    """A station account acts for its own station only; the committee, operators and admins
    (and departments where the route lets them in) for any."""
    if who.role is Role.STATION and station_id != who.station_id:
        raise _refuse(
            403,
            "forbidden",
            f"A station account may {action} of its own station only "
            f"({who.station_id}), not {station_id}.",
        )


def _rating_out(row: dict[str, Any], *, already: bool) -> RatingOut:
    level = Level(row["level"])
    return RatingOut(
        case_id=row["case_id"],
        level=level,
        level_name=level.chinese,
        score=row["score"],
        rated_at=row["rated_at"],
        reopen_requested=row["reopen_requested"],
        already_rated=already,
    )


def _month_param(text: str) -> date:
    try:
        return parse_month(text)
    except ValueError as exc:
        raise _refuse(422, "validation_failed", str(exc)) from exc


NO_CASE = "No such case, or not one this account may see."
NO_SESSION = "No such report-back session."


def build_router(
    store_of: Callable[[Request], EvaluationStore],
    *,
    auth: AuthSettings,
    links: RatingLinks,
    limiter: RateLimiter | None = None,
    per_address: str = "60/minute",
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["evaluation"])
    limiter = limiter or RateLimiter()
    rating_limit = limiter.parse(per_address)
    rate_limited = (
        f"Public. Rate-limited: {per_address} per client address "
        "(`MINYI_EVALUATION__LIMITS__PER_ADDRESS`)."
    )
    invalid_link = "Not a rating link we signed (or not this case's latest)."
    too_many = f"Over {per_address} per client address; see Retry-After."

    def _throttle(request: Request) -> None:
        """The rating link is public: requests per client address (429 beyond)."""
        limiter.hit(
            rating_limit, "rating", limiter.client_address(request), what="from this address"
        )

    current = principal_dependency(auth)
    staff = require_roles(current, *STAFF)
    evaluators = require_roles(current, Role.STATION, Role.COMMITTEE)
    organisers = require_roles(current, Role.STATION, Role.COMMITTEE, Role.OPERATOR, Role.ADMIN)

    def _hidden(principal: Principal, row: dict[str, Any] | None) -> bool:
        """A department sees its own cases, a station its own; others' are simply not there."""
        return (
            principal.role is Role.DEPARTMENT
            and (row is None or row.get("department_id") != principal.department_id)
        ) or (
            principal.role is Role.STATION
            and (row is None or row.get("station_id") != principal.station_id)
        )

    @router.get(
        "/cases/{case_id}",
        response_model=CaseFactsOut,
        summary="A case's read model",
        responses=errors(404, notes={404: NO_CASE}),
    )
    async def get_case(
        case_id: UUID, request: Request, principal: Annotated[Principal, Depends(staff)]
    ) -> dict[str, Any]:
        row = await store_of(request).case(case_id)
        if row is None or _hidden(principal, row):
            raise HTTPException(404, detail={"message": f"Evaluation knows no case {case_id}."})
        return row

    @router.get(
        "/departments/{department_id}/summary",
        response_model=DepartmentSummaryOut,
        summary="Cases assigned to a department and how many it was told of",
        responses=errors(404, notes={404: "Another department's."}),
    )
    async def department_summary(
        department_id: str, request: Request, principal: Annotated[Principal, Depends(staff)]
    ) -> DepartmentSummaryOut:
        if principal.role is Role.DEPARTMENT and principal.department_id != department_id:
            raise HTTPException(404, detail={"message": f"No department {department_id!r}."})
        s = await store_of(request).department_summary(department_id)
        return DepartmentSummaryOut(
            department_id=s.department_id,
            assigned=s.assigned,
            notified=s.notified,
            notified_rate=s.notified_rate,
        )

    # -- KPIs -----------------------------------------------------------------------------

    @router.get(
        "/kpis",
        response_model=list[KpiOut],
        summary="KPIs per dimension, key and month of assignment (staff)",
        responses=errors(),
    )
    async def kpis(
        request: Request,
        _who: Annotated[Principal, Depends(staff)],
        dimension: Annotated[Dimension | None, Query()] = None,
        key: Annotated[str | None, Query(max_length=64)] = None,
        month: Month | None = None,
    ) -> list[dict[str, Any]]:
        found = await store_of(request).kpis(
            dimension=dimension.value if dimension else None, key=key, month=month
        )
        return [k.as_dict() for k in found]

    # -- voters' ratings ------------------------------------------------------------------

    def _claims(token: str) -> Any:
        try:
            return links.read(token)
        except ForgedLink as exc:
            raise _refuse(
                401, "invalid_rating_link", "This rating link is not valid; use the link we sent."
            ) from exc

    @router.get(
        "/ratings/{token}",
        response_model=RatingLinkOut,
        summary="What a voter's rating link is for, and the rating if given",
        description=rate_limited,
        responses=errors(401, 429, notes={401: invalid_link, 429: too_many}),
    )
    async def rating_link(token: str, request: Request) -> RatingLinkOut:
        _throttle(request)
        claims = _claims(token)
        store = store_of(request)
        invitation = await store.invitation(claims.case_id)
        if invitation is None or invitation["token_id"] != claims.token_id:
            raise _refuse(401, "invalid_rating_link", "This rating link is not valid.")
        rating = await store.rating(claims.case_id)
        return RatingLinkOut(
            case_id=claims.case_id,
            expires_at=claims.expires_at,
            expired=claims.expired(datetime.now(UTC)),
            rating=_rating_out(rating, already=True) if rating else None,
            levels={lvl.value: lvl.chinese for lvl in Level},
        )

    @router.post(
        "/ratings/{token}",
        response_model=RatingOut,
        status_code=201,
        summary="A voter rates the handling (满意/基本满意/不满意 or 1–5), once per case",
        description=rate_limited,
        responses={
            200: {"description": "Already rated: the first rating"},
            **errors(
                401,
                410,
                422,
                429,
                notes={
                    401: invalid_link,
                    410: "The link has expired; nothing was recorded.",
                    422: "Neither a known level nor a score 1–5.",
                    429: too_many,
                },
            ),
        },
    )
    async def rate(token: str, body: RatingIn, request: Request) -> Any:
        _throttle(request)
        claims = _claims(token)
        try:
            level = resolve_level(body.level, body.score)
        except ValueError as exc:
            raise _refuse(422, "validation_failed", str(exc)) from exc
        outcome = await store_of(request).submit_rating(
            claims,
            level=level,
            score=body.score,
            comment=body.comment,
            now=datetime.now(UTC),
            producer=SERVICE,
        )
        if outcome.status == "unknown":
            raise _refuse(401, "invalid_rating_link", "This rating link is not valid.")
        if outcome.status == "expired":
            raise _refuse(
                410,
                "rating_link_expired",
                f"This rating link expired at {claims.expires_at.isoformat()}; "
                "ratings can no longer be given for this case.",
            )
        assert outcome.rating is not None
        if outcome.status == "repeat":
            out = _rating_out(outcome.rating, already=True)
            return JSONResponse(out.model_dump(mode="json"), status_code=200)
        return _rating_out(outcome.rating, already=False)

    # -- evaluations of handling (评议) ----------------------------------------------------

    @router.post(
        "/cases/{case_id}/evaluations",
        response_model=HandlingEvaluationOut,
        status_code=201,
        summary="The station or the committee evaluates an invitation's handling (评议)",
        responses=errors(
            404,
            409,
            notes={
                404: NO_CASE,
                409: "`error` not_an_invitation, not_completed (no handling report yet) or "
                "already_evaluated (by this evaluator); nothing was recorded.",
            },
        ),
    )
    async def evaluate_handling(
        case_id: UUID,
        body: HandlingEvaluationIn,
        request: Request,
        who: Annotated[Principal, Depends(evaluators)],
    ) -> dict[str, Any]:
        store = store_of(request)
        facts = await store.facts(case_id)
        try:
            domain.check_may_evaluate(facts, role=who.role.value, station_id=who.station_id)
        except domain.EvaluationRefused as exc:
            raise _refuse(exc.status, exc.error, exc.message) from exc
        assert facts is not None
        kind = "station" if who.role is Role.STATION else "committee"
        evaluator_id = who.station_id if who.role is Role.STATION else "committee"
        assert evaluator_id is not None
        event = HandlingEvaluatedV1(
            case_id=case_id,
            department_id=facts.department_id,
            evaluator_kind=kind,
            evaluator_id=evaluator_id,
            score=body.score,
            evaluated_at=datetime.now(UTC),
        )
        invitation = await store.invitation(case_id)
        correlation = invitation["correlation_id"] if invitation else uuid4()
        envelope = EventEnvelope.wrap(event, producer=SERVICE, correlation_id=correlation)
        row = await store.record_handling_evaluation(
            event, envelope, evaluated_by=who.subject, comment=body.comment
        )
        if row is None:
            raise _refuse(409, "already_evaluated", f"The {kind} has evaluated this case already.")
        return row

    @router.get(
        "/cases/{case_id}/evaluations",
        response_model=list[HandlingEvaluationOut],
        summary="Evaluations of a case's handling (staff)",
        responses=errors(404, notes={404: NO_CASE}),
    )
    async def handling_evaluations(
        case_id: UUID, request: Request, who: Annotated[Principal, Depends(staff)]
    ) -> list[dict[str, Any]]:
        store = store_of(request)
        if _hidden(who, await store.case(case_id) if who.role in SCOPED else None):
            raise HTTPException(404, detail={"message": f"Evaluation knows no case {case_id}."})
        return await store.handling_evaluations(case_id)

    # -- report-back sessions (述职评议) ----------------------------------------------------

    async def _session_out(store: EvaluationStore, session_id: UUID) -> SessionOut:
        session = await store.session(session_id)
        if session is None:
            raise _refuse(404, "not_found", f"No report-back session {session_id}.")
        d = distribution(await store.session_scores(session_id))
        return SessionOut(
            **{k: session[k] for k in ("session_id", "deputy_id", "station_id", "held_on")},
            title=session["title"],
            created_by=session["created_by"],
            distribution=DistributionOut(
                count=d.count, mean=d.mean, minimum=d.minimum, maximum=d.maximum, bands=d.bands
            ),
        )

    @router.post(
        "/report-back-sessions",
        response_model=SessionOut,
        status_code=201,
        summary="Open a deputy's report-back session (述职评议)",
        responses=errors(),
    )
    async def create_session(
        body: SessionIn, request: Request, who: Annotated[Principal, Depends(organisers)]
    ) -> SessionOut:
        store = store_of(request)
        if body.station_id is not None:
            _own_station_only(who, body.station_id, "open report-back sessions")
        station_id = body.station_id or (who.station_id if who.role is Role.STATION else None)
        deputy_station = await store.deputy_station(body.deputy_id)
        if deputy_station is None:
            raise _invalid("deputy_id", f"unknown deputy {body.deputy_id!r}")
        if station_id is not None and deputy_station != station_id:
            raise _invalid(
                "deputy_id",
                f"deputy {body.deputy_id!r} belongs to station {deputy_station!r}, "
                f"not {station_id!r}",
            )
        created = await store.create_session(
            uuid4(),
            deputy_id=body.deputy_id,
            station_id=deputy_station,
            held_on=body.held_on,
            title=body.title,
            created_by=who.subject,
        )
        return await _session_out(store, created["session_id"])

    @router.post(
        "/report-back-sessions/{session_id}/scores",
        response_model=ScoreOut,
        status_code=201,
        summary="Record one voter's on-site score (one per voter per session)",
        responses={
            200: {"description": "This voter had scored: the earlier score"},
            **errors(404, notes={404: NO_SESSION}),
        },
    )
    async def add_score(
        session_id: UUID,
        body: ScoreIn,
        request: Request,
        who: Annotated[Principal, Depends(organisers)],
    ) -> Any:
        store = store_of(request)
        session = await store.session(session_id)
        if session is None:
            raise _refuse(404, "not_found", f"No report-back session {session_id}.")
        _own_station_only(who, session["station_id"], "score report-back sessions")
        recorded, score = await store.add_score(session_id, body.voter_ref, body.score, who.subject)
        out = ScoreOut(session_id=session_id, voter_ref=body.voter_ref, score=score, recorded=True)
        if not recorded:
            out.recorded = False
            return JSONResponse(out.model_dump(mode="json"), status_code=200)
        return out

    @router.get(
        "/report-back-sessions/{session_id}",
        response_model=SessionOut,
        summary="A report-back session and the distribution of its scores (staff)",
        responses=errors(404, notes={404: NO_SESSION}),
    )
    async def get_session(
        session_id: UUID, request: Request, who: Annotated[Principal, Depends(staff)]
    ) -> SessionOut:
        out = await _session_out(store_of(request), session_id)
        _own_station_only(who, out.station_id, "read report-back sessions")
        return out

    # -- station activity -----------------------------------------------------------------

    def _station_out(s: Any, months: int) -> StationActivityOut:
        return StationActivityOut(
            station_id=s.station_id,
            town_id=s.town_id,
            activities=s.activities,
            reception_batches=s.reception_batches,
            visitors=s.visitors,
            issues=s.issues,
            monthly_batches=round(s.monthly_batches(months), 3),
            under_one_batch_a_month=s.reception_batches < months,
        )

    @router.get(
        "/stations/activity",
        response_model=ActivityReportOut,
        summary="Stations' activity over months; those under one reception batch a month",
        responses=errors(422, notes={422: "A month is not YYYY-MM, or `to` is before `from`."}),
    )
    async def station_activity(
        request: Request,
        _who: Annotated[Principal, Depends(staff)],
        first_month: Annotated[str, Query(alias="from", examples=["2017-01"])],
        last_month: Annotated[str, Query(alias="to", examples=["2019-12"])],
        town: Annotated[str | None, Query(max_length=64)] = None,
    ) -> ActivityReportOut:
        first, last = _month_param(first_month), _month_param(last_month)
        if last < first:
            raise _refuse(422, "validation_failed", "`to` is before `from`.")
        report = await store_of(request).station_activity(first, last, town_id=town)
        return ActivityReportOut(
            first_month=first_month,
            last_month=last_month,
            months=report.months,
            stations_count=len(report.stations),
            activities=report.activities,
            reception_batches=report.reception_batches,
            visitors=report.visitors,
            issues=report.issues,
            under_one_batch_a_month=len(report.under_one_batch_a_month()),
            stations=[_station_out(s, report.months) for s in report.stations],
        )

    @router.get(
        "/stations/advanced",
        response_model=AdvancedOut,
        summary="The top 30% of stations of a year (先进代表联络站)",
        responses=errors(),
    )
    async def advanced(
        request: Request,
        _who: Annotated[Principal, Depends(staff)],
        year: Annotated[int, Query(ge=2000, le=2100)],
    ) -> AdvancedOut:
        report = await store_of(request).station_activity(date(year, 1, 1), date(year, 12, 1))
        return AdvancedOut(
            year=year,
            stations_count=len(report.stations),
            advanced=[_station_out(s, 12) for s in advanced_stations(report.stations)],
        )

    # -- reports --------------------------------------------------------------------------

    @router.get(
        "/reports/monthly",
        summary="The monthly report of the city or a town, as XLSX or PDF (staff)",
        response_class=Response,
        responses={
            200: {
                "content": {
                    "application/pdf": {},
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
                }
            },
            **errors(422, notes={422: "No such month, or `town` is not a town id."}),
        },
    )
    async def monthly_report(
        request: Request,
        _who: Annotated[Principal, Depends(staff)],
        month: Month,
        town: Annotated[str | None, Query(max_length=64)] = None,
        format: Annotated[Literal["xlsx", "pdf"], Query()] = "xlsx",
    ) -> Response:
        _month_param(month)  # 422, not 500, for a month no calendar has (0000-01)
        if town is not None and not REFERENCE_ID.fullmatch(town):
            # It names the file (Content-Disposition) and titles the sheet: an id, nothing else.
            raise _refuse(422, "validation_failed", f"`town` is not a town id: {town!r}.")
        report = await build_report(store_of(request), month, town)
        if format == "pdf":
            body, media = render_pdf(report), "application/pdf"
        else:
            body = render_xlsx(report)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return Response(
            body,
            media_type=media,
            headers={"content-disposition": f'attachment; filename="{report.file_stem}.{format}"'},
        )

    return router
