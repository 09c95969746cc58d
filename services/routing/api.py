"""Routing's HTTP handlers: sign-in, cases, department queues, the committee's and the
operators' decisions, live task streams and the working calendar.

Who may see what: a department sees its own cases (once assigned to it), a station the cases
of its station, the committee, operators and admins all. A case the caller may not see is
404 on every endpoint — indistinguishable from a case that does not exist. Then the role:
an action the caller's role may not take is 403.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from services.routing.domain import lifecycle
from services.routing.domain.lifecycle import (
    DEPARTMENT_VISIBLE,
    Actor,
    CaseRecord,
    CaseState,
    HandlingReport,
    IllegalTransition,
    Outcome,
    RuleViolation,
)
from services.routing.live import TaskHub
from services.routing.settings import RoutingSettings
from services.routing.signin_limits import SignInLimiter, SignInLocked
from services.routing.store import CaseNotFound, RoutingStore
from shared.auth import (
    CLIENT_ADDRESS_HEADER,
    Principal,
    Role,
    issue_token,
    principal_dependency,
    verified_client_address,
)
from shared.http_errors import errors
from shared.ratelimit import TrustedProxies

StoreOf = Callable[[Request], RoutingStore]
PrincipalDependency = Callable[[Request], Coroutine[Any, Any, Principal]]
Decide = Callable[[CaseRecord, Any, datetime], Outcome]

STAFF_WIDE = frozenset({Role.COMMITTEE, Role.OPERATOR, Role.ADMIN})

# What the routes answer besides success (shared/http_errors.py adds what their shape implies).
NOT_VISIBLE = "No such case, or not one this account may see."
CASE_READ = errors(401, 404, notes={401: "Not signed in (unless anonymous reads are on)."})
DEPARTMENT_READ = errors(
    401,
    403,
    404,
    notes={
        403: "Not a department, committee, operator or admin account.",
        404: "No such department, or another department's.",
    },
)
TRANSITION = errors(
    401,
    403,
    404,
    409,
    notes={
        403: "This account's role may not take this step.",
        404: NOT_VISIBLE,
        409: "Not allowed in the case's current state: `error` is `illegal_transition` (this "
        "step does not leave that state) or `rule_violation` (a rule refuses it, e.g. a date); "
        "`state` is the case's current state. Nothing was changed.",
    },
)
TRANSITION_TO_DEPARTMENT = {
    **TRANSITION,
    **errors(422, notes={422: "A field is invalid, or `department_id` is unknown."}),
}
STAFF_WIDE_ONLY = errors(401, 403, notes={403: "Only the committee, operators and admins."})


# ---- shapes ---------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TokenIn(_In):
    client_id: str = Field(min_length=1, max_length=100)
    client_secret: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    role: str
    department_id: str | None
    station_id: str | None


class TransitionOut(BaseModel):
    from_state: str | None
    to_state: str
    actor: str
    actor_role: str | None = None
    reason: str | None
    at: datetime


class LinkOut(BaseModel):
    case_id: UUID
    opinion_id: UUID


class CaseOut(BaseModel):
    id: UUID
    opinion_id: UUID | None
    lead_opinion_id: UUID
    receipt_code: str
    department_id: str
    department_name: str
    station_id: str
    town_id: str
    category_id: str | None
    kind: str
    state: str
    classification: str
    is_invitation: bool
    assigned_at: datetime | None
    acknowledge_due_at: datetime | None
    complete_due_at: datetime | None
    original_complete_due_at: datetime | None
    acknowledged_at: datetime | None
    responsible_person: str | None
    responsible_contact: str | None
    planned_completion_date: date | None
    extension_reason: str | None
    extension_requested_due_at: datetime | None
    extensions_granted: int
    completed_at: datetime | None
    handling_situation: str | None
    handling_result: str | None
    completion_date: date | None
    reopen_count: int
    closed_at: datetime | None
    satisfaction: str | None
    aggregate_case_id: UUID | None
    linked_cases: list[LinkOut]
    transitions: list[TransitionOut]


class QueueItemOut(BaseModel):
    id: UUID
    receipt_code: str
    state: str
    kind: str
    classification: str
    is_invitation: bool
    category_id: str | None
    town_id: str
    station_id: str
    assigned_at: datetime | None
    acknowledge_due_at: datetime | None
    complete_due_at: datetime | None
    next_due_at: datetime | None


class WorkItemOut(BaseModel):
    id: UUID
    receipt_code: str
    state: str
    kind: str
    classification: str
    is_invitation: bool
    category_id: str | None
    town_id: str
    station_id: str
    proposed_department_id: str


class AcknowledgeIn(_In):
    responsible_person: str = Field(min_length=1, max_length=100, description="责任人")
    contact: str = Field(min_length=3, max_length=100, description="联系方式 (a work contact)")
    planned_completion_date: date


class ExtensionRequestIn(_In):
    reason: str = Field(min_length=2, max_length=2000)
    requested_complete_due_at: AwareDatetime


class ReturnIn(_In):
    reason: str = Field(min_length=2, max_length=2000, description="Why it is not ours")


class CompleteIn(_In):
    handling_situation: str = Field(min_length=1, max_length=5000, description="办理情况")
    handling_result: str = Field(min_length=1, max_length=2000, description="办理结果")
    responsible_person: str = Field(min_length=1, max_length=100, description="责任人")
    contact: str = Field(min_length=3, max_length=100, description="联系方式")
    completion_date: date = Field(description="完成日期")


class DecisionIn(_In):
    granted: bool
    reason: str | None = Field(default=None, max_length=2000)


class InvitationIn(_In):
    reason: str = Field(min_length=2, max_length=2000)


class InvitationDecisionIn(_In):
    approved: bool
    reason: str | None = Field(default=None, max_length=2000)
    department_id: str | None = None


class RouteIn(_In):
    department_id: str
    reason: str = Field(min_length=2, max_length=2000)


class CalendarDayIn(_In):
    is_working: bool
    note: str | None = Field(default=None, max_length=200)


class CalendarDayOut(BaseModel):
    day: date
    is_working: bool
    note: str | None
    source: str


# ---- access ---------------------------------------------------------------------------------


async def current_principal(request: Request) -> Principal:
    """The caller (see `shared.auth.principal_dependency`, installed by `install_auth`)."""
    dependency: PrincipalDependency = request.app.state.current_principal
    return await dependency(request)


Caller = Annotated[Principal, Depends(current_principal)]


def install_auth(app: FastAPI, settings: RoutingSettings) -> None:
    app.state.current_principal = principal_dependency(settings.auth)


def can_see(principal: Principal, case: CaseRecord) -> bool:
    if principal.role in STAFF_WIDE:
        return True
    if principal.role is Role.DEPARTMENT:
        return principal.department_id == case.department_id and case.state in DEPARTMENT_VISIBLE
    if principal.role is Role.STATION:
        return principal.station_id == case.station_id
    return False


def _not_found(case_id: UUID) -> HTTPException:
    return HTTPException(404, detail={"message": f"No case {case_id}."})


def _conflict(exc: IllegalTransition | RuleViolation) -> HTTPException:
    error = "illegal_transition" if isinstance(exc, IllegalTransition) else "rule_violation"
    return HTTPException(
        409, detail={"error": error, "message": str(exc), "state": exc.state.value}
    )


def _require_signed_in(principal: Principal) -> None:
    if principal.role is Role.ANONYMOUS:
        raise HTTPException(
            401, detail={"message": "Sign in first."}, headers={"WWW-Authenticate": "Bearer"}
        )


def _require(principal: Principal, roles: frozenset[Role]) -> None:
    if principal.role not in roles:
        raise HTTPException(
            403, detail={"message": f"A {principal.role.value} account may not do this."}
        )


def build_router(store_of: StoreOf, settings: RoutingSettings, hub: TaskHub) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    deadlines = settings.deadlines
    hasher = PasswordHasher(
        time_cost=settings.accounts.argon2_time_cost,
        memory_cost=settings.accounts.argon2_memory_kib,
        parallelism=settings.accounts.argon2_parallelism,
    )
    dummy_hash = hasher.hash("not-a-real-secret")
    signin_limiter = SignInLimiter(
        max_failures=settings.limits.signin_max_failures,
        window_s=settings.limits.signin_window_s,
    )
    proxies = TrustedProxies(settings.http.trusted_proxies)

    # ---- sign-in ----------------------------------------------------------------------------

    @router.post(
        "/auth/token",
        response_model=TokenOut,
        tags=["auth"],
        summary="Client id + secret → JWT",
        description="Failed sign-ins are limited per account and per client address "
        "(`limits.signin_max_failures` within `limits.signin_window_s`): past the limit every "
        "attempt, even with the right secret, gets 429 with Retry-After. Behind the console, the "
        "address is the one the console names in `X-Minyi-Client-Address`, signed with the "
        "shared key.",
        responses=errors(
            401,
            429,
            notes={
                401: "Unknown client id or wrong secret.",
                429: "Too many failed sign-ins for this account or from this address; see "
                "Retry-After.",
            },
        ),
    )
    async def token(body: TokenIn, request: Request) -> TokenOut:
        store = store_of(request)
        address = verified_client_address(
            settings.auth, request.headers.get(CLIENT_ADDRESS_HEADER)
        ) or proxies.client_of(request)
        try:
            reservation = await signin_limiter.reserve(store.pool, body.client_id, address)
        except SignInLocked as exc:
            raise exc.as_http() from exc
        account = await store.account(body.client_id)
        secret_hash = account["secret_hash"] if account else dummy_hash

        def verify() -> bool:
            try:
                return bool(hasher.verify(secret_hash, body.client_secret))
            except (VerificationError, InvalidHashError):
                return False

        ok = await asyncio.to_thread(verify)
        if account is None or not ok:
            raise HTTPException(
                401,
                detail={"message": "Unknown client id or wrong secret."},
                headers={"WWW-Authenticate": "Bearer"},
            )
        await signin_limiter.succeeded(store.pool, body.client_id, reservation)
        principal = Principal(
            subject=account["client_id"],
            role=Role(account["role"]),
            department_id=account["department_id"],
            station_id=account["station_id"],
        )
        return TokenOut(
            access_token=issue_token(settings.auth, principal),
            expires_in=settings.auth.token_ttl_s,
            role=principal.role.value,
            department_id=principal.department_id,
            station_id=principal.station_id,
        )

    # ---- reading cases ----------------------------------------------------------------------

    async def _case_out(store: RoutingStore, case_id: UUID, principal: Principal) -> dict[str, Any]:
        case = await store.case(case_id)
        if case is None:
            raise _not_found(case_id)
        if principal.role is Role.ANONYMOUS:
            case.update(responsible_person=None, responsible_contact=None)
        return case

    async def _readable(store: RoutingStore, case_id: UUID, principal: Principal) -> None:
        if principal.role is Role.ANONYMOUS and not settings.api.anonymous_case_reads:
            _require_signed_in(principal)  # 401 before anything about the case is revealed
        record = await store.case_record(case_id)
        if record is None:
            raise _not_found(case_id)
        if principal.role is Role.ANONYMOUS:
            return
        if not can_see(principal, record):
            raise _not_found(case_id)

    @router.get(
        "/cases/{case_id}",
        response_model=CaseOut,
        tags=["cases"],
        summary="A case and its audit",
        responses=CASE_READ,
    )
    async def get_case(case_id: UUID, request: Request, principal: Caller) -> dict[str, Any]:
        store = store_of(request)
        await _readable(store, case_id, principal)
        return await _case_out(store, case_id, principal)

    @router.get(
        "/cases",
        response_model=CaseOut,
        tags=["cases"],
        summary="The case made from an opinion (by opinion id)",
        responses=CASE_READ,
    )
    async def find_case(
        request: Request, principal: Caller, opinion_id: Annotated[UUID, Query()]
    ) -> dict[str, Any]:
        store = store_of(request)
        if principal.role is Role.ANONYMOUS and not settings.api.anonymous_case_reads:
            _require_signed_in(principal)  # 401 whether or not the case exists yet
        case_id = await store.case_id_for_opinion(opinion_id)
        if case_id is None:
            raise HTTPException(404, detail={"message": f"No case yet for opinion {opinion_id}."})
        try:
            await _readable(store, case_id, principal)
        except HTTPException as exc:
            if exc.status_code == 404:
                raise HTTPException(
                    404, detail={"message": f"No case yet for opinion {opinion_id}."}
                ) from None
            raise
        return await _case_out(store, case_id, principal)

    async def _department_access(
        store: RoutingStore, department_id: str, principal: Principal
    ) -> None:
        _require_signed_in(principal)
        missing = HTTPException(404, detail={"message": f"No department {department_id!r}."})
        if principal.role is Role.DEPARTMENT:
            if principal.department_id != department_id:
                raise missing
        elif principal.role not in STAFF_WIDE:
            _require(principal, STAFF_WIDE | {Role.DEPARTMENT})
        if not await store.department_exists(department_id):
            raise missing

    @router.get(
        "/departments/{department_id}/queue",
        response_model=list[QueueItemOut],
        tags=["queue"],
        summary="A department's cases, the next deadline first (filter by state)",
        responses=DEPARTMENT_READ,
    )
    async def department_queue(
        department_id: str,
        request: Request,
        principal: Caller,
        state: Annotated[list[CaseState] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        store = store_of(request)
        await _department_access(store, department_id, principal)
        wanted = set(state) if state else set(lifecycle.OPEN_FOR_DEPARTMENT)
        states = sorted(s.value for s in wanted & DEPARTMENT_VISIBLE)
        return await store.department_queue(department_id, states, limit)

    @router.get(
        "/departments/{department_id}/stream",
        tags=["queue"],
        summary="New tasks for a department, live (server-sent events)",
        response_class=EventSourceResponse,
        responses=DEPARTMENT_READ,
    )
    async def department_stream(
        department_id: str, request: Request, principal: Caller
    ) -> EventSourceResponse:
        store = store_of(request)
        await _department_access(store, department_id, principal)

        async def events() -> Any:
            async with hub.subscribe(department_id) as queue:
                yield {"event": "ready", "data": json.dumps({"department_id": department_id})}
                while True:
                    case_id = await queue.get()
                    task = await store.task_summary(UUID(case_id))
                    if task is None or task["department_id"] != department_id:
                        continue
                    yield {
                        "event": "task",
                        "id": case_id,
                        "data": json.dumps(task, default=str, ensure_ascii=False),
                    }

        return EventSourceResponse(events(), ping=settings.api.sse_ping_s)

    # ---- transitions ------------------------------------------------------------------------

    async def _transition(
        request: Request,
        case_id: UUID,
        principal: Principal,
        roles: frozenset[Role],
        decide: Decide,
        *,
        until: datetime | None = None,
        department_id: str | None = None,
    ) -> dict[str, Any]:
        _require_signed_in(principal)
        store = store_of(request)
        async with store.unit_of_work() as tx:
            try:
                case = await tx.lock_case(case_id)
            except CaseNotFound:
                raise _not_found(case_id) from None
            if not can_see(principal, case):
                raise _not_found(case_id)
            _require(principal, roles)
            if department_id is not None and not await tx.department_exists(department_id):
                raise HTTPException(
                    422,
                    detail={
                        "error": "validation_failed",
                        "message": f"No department {department_id!r}.",
                        "fields": [{"field": "department_id", "message": "unknown department"}],
                    },
                )
            now = datetime.now(UTC)
            calendar = await tx.calendar(now, until)
            try:
                outcome = decide(case, calendar, now)
            except (IllegalTransition, RuleViolation) as exc:
                raise _conflict(exc) from None
            await tx.apply(outcome, now=now)
        return await _case_out(store, case_id, principal)

    def actor(principal: Principal) -> Actor:
        return Actor(principal.subject, principal.role.value)

    department_only = frozenset({Role.DEPARTMENT})
    committee = frozenset({Role.COMMITTEE, Role.ADMIN})
    operators = frozenset({Role.OPERATOR, Role.ADMIN})

    @router.post(
        "/cases/{case_id}/acknowledge",
        response_model=CaseOut,
        tags=["department"],
        summary="Accept the case (收函反馈): responsible person, contact, planned date",
        responses=TRANSITION,
    )
    async def acknowledge(
        case_id: UUID, body: AcknowledgeIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        return await _transition(
            request,
            case_id,
            principal,
            department_only,
            lambda case, _cal, now: lifecycle.acknowledge(
                case,
                actor=actor(principal),
                responsible_person=body.responsible_person,
                contact=body.contact,
                planned_completion_date=body.planned_completion_date,
                now=now,
            ),
        )

    @router.post(
        "/cases/{case_id}/extension-request",
        response_model=CaseOut,
        tags=["department"],
        summary="Ask the committee for a later complete-by deadline, with the reason",
        responses=TRANSITION,
    )
    async def request_extension(
        case_id: UUID, body: ExtensionRequestIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        return await _transition(
            request,
            case_id,
            principal,
            department_only,
            lambda case, _cal, now: lifecycle.request_extension(
                case,
                actor=actor(principal),
                reason=body.reason,
                requested_complete_due_at=body.requested_complete_due_at,
                deadlines=deadlines,
                now=now,
            ),
        )

    @router.post(
        "/cases/{case_id}/return",
        response_model=CaseOut,
        tags=["department"],
        summary="Dispute jurisdiction: the case goes back to an operator",
        responses=TRANSITION,
    )
    async def return_case(
        case_id: UUID, body: ReturnIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        return await _transition(
            request,
            case_id,
            principal,
            department_only,
            lambda case, _cal, now: lifecycle.return_case(
                case, actor=actor(principal), reason=body.reason, now=now
            ),
        )

    @router.post(
        "/cases/{case_id}/complete",
        response_model=CaseOut,
        tags=["department"],
        summary="File the handling report (办理情况表) and complete the case",
        responses=TRANSITION,
    )
    async def complete(
        case_id: UUID, body: CompleteIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        report = HandlingReport(
            handling_situation=body.handling_situation,
            handling_result=body.handling_result,
            responsible_person=body.responsible_person,
            contact=body.contact,
            completion_date=body.completion_date,
        )
        return await _transition(
            request,
            case_id,
            principal,
            department_only,
            lambda case, _cal, now: lifecycle.complete(
                case, actor=actor(principal), report=report, now=now
            ),
        )

    @router.post(
        "/cases/{case_id}/extension-decision",
        response_model=CaseOut,
        tags=["committee"],
        summary="Grant or deny a requested extension",
        responses=TRANSITION,
    )
    async def decide_extension(
        case_id: UUID, body: DecisionIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        record = await store_of(request).case_record(case_id)
        until = record.extension_requested_due_at if record else None
        return await _transition(
            request,
            case_id,
            principal,
            committee,
            lambda case, cal, now: lifecycle.decide_extension(
                case,
                granted=body.granted,
                actor=actor(principal),
                reason=body.reason,
                deadlines=deadlines,
                calendar=cal,
                now=now,
            ),
            until=until,
        )

    @router.post(
        "/cases/{case_id}/invitation",
        response_model=CaseOut,
        tags=["committee"],
        summary="Report an invitation need (上报) for the committee's review",
        responses=TRANSITION,
    )
    async def propose_invitation(
        case_id: UUID, body: InvitationIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        return await _transition(
            request,
            case_id,
            principal,
            frozenset({Role.STATION, Role.OPERATOR, Role.COMMITTEE, Role.ADMIN}),
            lambda case, _cal, now: lifecycle.propose_invitation(
                case, actor=actor(principal), reason=body.reason, now=now
            ),
        )

    @router.post(
        "/cases/{case_id}/invitation-decision",
        response_model=CaseOut,
        tags=["committee"],
        summary="Approve (the letter goes out, the case is assigned) or reject an invitation",
        responses=TRANSITION_TO_DEPARTMENT,
    )
    async def decide_invitation(
        case_id: UUID, body: InvitationDecisionIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        return await _transition(
            request,
            case_id,
            principal,
            committee,
            lambda case, cal, now: lifecycle.decide_invitation(
                case,
                approved=body.approved,
                actor=actor(principal),
                reason=body.reason,
                department_id=body.department_id,
                deadlines=deadlines,
                calendar=cal,
                now=now,
            ),
            department_id=body.department_id,
        )

    @router.post(
        "/cases/{case_id}/route",
        response_model=CaseOut,
        tags=["operator"],
        summary="Assign a triaged, returned or rejected case, or re-route an assigned one",
        responses=TRANSITION_TO_DEPARTMENT,
    )
    async def route(
        case_id: UUID, body: RouteIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        return await _transition(
            request,
            case_id,
            principal,
            operators,
            lambda case, cal, now: lifecycle.assign(
                case,
                department_id=body.department_id,
                actor=actor(principal),
                reason=body.reason,
                deadlines=deadlines,
                calendar=cal,
                now=now,
            ),
            department_id=body.department_id,
        )

    # ---- work lists for the committee and operators -----------------------------------------

    @router.get(
        "/worklist",
        response_model=list[WorkItemOut],
        tags=["operator"],
        summary="Cases waiting for an operator or the committee (triaged, returned, …)",
        responses=STAFF_WIDE_ONLY,
    )
    async def worklist(
        request: Request,
        principal: Caller,
        state: Annotated[list[CaseState] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        _require_signed_in(principal)
        _require(principal, STAFF_WIDE)
        wanted = state or [
            CaseState.TRIAGED,
            CaseState.PENDING_REVIEW,
            CaseState.RETURNED,
            CaseState.REJECTED,
            CaseState.EXTENSION_REQUESTED,
        ]
        return await store_of(request).cases_by_state([s.value for s in wanted], limit)

    @router.get(
        "/returns",
        tags=["operator"],
        summary="How many cases each department has returned",
        responses=STAFF_WIDE_ONLY,
    )
    async def returns(request: Request, principal: Caller) -> dict[str, int]:
        _require_signed_in(principal)
        _require(principal, STAFF_WIDE)
        return await store_of(request).returns_by_department()

    # ---- the working calendar ---------------------------------------------------------------

    @router.get(
        "/calendar/{year}",
        response_model=list[CalendarDayOut],
        tags=["calendar"],
        summary="The working-day calendar of a year (days not listed: Monday–Friday)",
        responses=errors(),
    )
    async def calendar_year(
        year: Annotated[int, Path(ge=2000, le=2100)], request: Request
    ) -> list[dict[str, Any]]:
        return await store_of(request).calendar_days(year)

    @router.put(
        "/calendar/days/{day}",
        response_model=CalendarDayOut,
        tags=["calendar"],
        summary="Set whether a day is a working day (for years chinese-calendar lacks)",
        responses=errors(401, 403, notes={403: "Only admins."}),
    )
    async def set_calendar_day(
        day: date, body: CalendarDayIn, request: Request, principal: Caller
    ) -> dict[str, Any]:
        _require_signed_in(principal)
        _require(principal, frozenset({Role.ADMIN}))
        store = store_of(request)
        await store.set_calendar_day(day, body.is_working, body.note)
        return {"day": day, "is_working": body.is_working, "note": body.note, "source": "manual"}

    return router
