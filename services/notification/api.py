"""Notification's HTTP handlers: what was sent about a case (addresses never shown), and the
providers' delivery-report callbacks (status reports), each behind its own shared secret."""

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, SecretStr

from services.notification.domain import CHINA
from services.notification.reconciliation import parse_out_id
from services.notification.settings import CallbackSettings
from services.notification.store import NotificationStore
from shared.auth import AuthSettings, Principal, Role, principal_dependency, require_roles
from shared.events import EventEnvelope, NotificationDeliveredV1
from shared.http_errors import errors

log = structlog.get_logger(__name__)


class DeliveryOut(BaseModel):
    id: UUID
    source_event_id: UUID
    recipient_kind: str
    recipient_ref: str
    channel: str
    template: str
    status: str
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    error_code: str | None = None
    deferred_reason: str | None = None
    next_attempt_at: datetime | None = None
    report_status: str | None = None
    created_at: datetime
    sent_at: datetime | None


class AliyunReport(BaseModel):
    """One item of Aliyun's SmsReport push (the phone arrives masked or not: never kept)."""

    model_config = ConfigDict(extra="ignore")
    biz_id: str
    success: bool
    err_code: str = ""
    report_time: str | None = None
    out_id: str | None = None


class TencentReport(BaseModel):
    """One item of Tencent Cloud's delivery-status callback."""

    model_config = ConfigDict(extra="ignore")
    sid: str
    report_status: str  # SUCCESS | FAIL
    errmsg: str = ""
    user_receive_time: str | None = None


def _china_time(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        return datetime.now(UTC)


def _may_see(principal: Principal, deliveries: list[dict[str, Any]]) -> bool:
    """Committee, operators and admins see every case; a department or a station only the
    cases it was itself notified about."""
    if principal.role in (Role.COMMITTEE, Role.OPERATOR, Role.ADMIN):
        return True
    if principal.role is Role.DEPARTMENT and principal.department_id:
        return any(
            (d["recipient_kind"], d["recipient_ref"]) == ("department", principal.department_id)
            for d in deliveries
        )
    if principal.role is Role.STATION and principal.station_id:
        # Station staff are addressed one by one: "<station id>/head", "<station id>/deputy-1".
        return any(
            d["recipient_kind"] == "station_staff"
            and _station_of_staff(d["recipient_ref"]) == principal.station_id
            for d in deliveries
        )
    return False


def _station_of_staff(ref: str) -> str:
    return ref.split("/", 1)[0]


class CallbackAck(BaseModel):
    """What the provider expects back (Aliyun: code/msg; Tencent: result/errmsg)."""

    model_config = ConfigDict(extra="allow")


CALLBACK_ERRORS = errors(
    401,
    404,
    413,
    422,
    notes={
        401: "Missing or wrong `token`: nothing recorded.",
        404: "No token configured: callbacks are off.",
        413: "Body over `callbacks.max_body_bytes`.",
        422: "Not a list of reports, or more than `callbacks.max_items`.",
    },
)


def callback_guard(provider: str, secret: SecretStr | None) -> Callable[..., Awaitable[None]]:
    """The provider's push carries no signature: its callback URL carries our secret."""

    async def check(
        token: Annotated[
            str | None,
            Query(description="The shared secret configured in the provider's callback URL."),
        ] = None,
    ) -> None:
        if secret is None:
            raise HTTPException(
                404,
                detail={
                    "error": "callbacks_not_configured",
                    "message": f"{provider} status callbacks are not configured here "
                    f"(notification callbacks.{provider}_token).",
                },
            )
        expected = secret.get_secret_value().encode()
        if token is None or not hmac.compare_digest(token.encode(), expected):
            log.warning("delivery_report_refused", provider=provider, token_given=token is not None)
            raise HTTPException(
                401,
                detail={
                    "error": "unauthorized",
                    "message": f"Missing or wrong callback token for {provider}: "
                    "the URL configured in the provider's console must end in ?token=<secret>.",
                },
            )

    return check


def build_router(
    store_of: Callable[[Request], NotificationStore],
    auth: AuthSettings,
    callbacks: CallbackSettings | None = None,
) -> APIRouter:
    callbacks = callbacks or CallbackSettings()
    router = APIRouter(prefix="/api/v1", tags=["deliveries"])
    staff = require_roles(
        principal_dependency(auth),
        Role.DEPARTMENT,
        Role.STATION,
        Role.COMMITTEE,
        Role.OPERATOR,
        Role.ADMIN,
    )

    @router.get(
        "/cases/{case_id}/deliveries",
        response_model=list[DeliveryOut],
        summary="Every message planned or sent about a case (addresses never shown)",
        responses=errors(
            401,
            403,
            404,
            notes={
                403: "Not a staff account.",
                404: "No such case, or not one of yours.",
            },
        ),
    )
    async def case_deliveries(
        case_id: UUID, request: Request, principal: Annotated[Principal, Depends(staff)]
    ) -> list[dict[str, Any]]:
        deliveries = await store_of(request).deliveries_for_case(case_id)
        if not deliveries or not _may_see(principal, deliveries):
            raise HTTPException(404, detail={"message": f"No deliveries known for case {case_id}."})
        return deliveries

    async def record(
        request: Request,
        provider: str,
        message_id: str,
        delivered: bool,
        code: str,
        at: datetime,
        out_id: str | None = None,
    ) -> str:
        def make_event(delivery_id: UUID, case_id: UUID | None, correlation: UUID) -> EventEnvelope:
            return EventEnvelope.wrap(
                NotificationDeliveredV1(
                    delivery_id=delivery_id,
                    case_id=case_id,
                    provider=provider,
                    provider_message_id=message_id,
                    delivered=delivered,
                    status_code=code,
                    reported_at=at,
                ),
                producer="notification",
                correlation_id=correlation,
            )

        outcome = await store_of(request).record_report(
            provider=provider,
            provider_message_id=message_id,
            delivered=delivered,
            status_code=code,
            reported_at=at,
            make_event=make_event,
            out_id=parse_out_id(out_id),
        )
        log.info("delivery_report", provider=provider, outcome=outcome, status_code=code)
        return outcome

    batch = Body(max_length=callbacks.max_items)

    @router.post(
        "/reports/aliyun",
        tags=["reports"],
        summary="Aliyun SmsReport callback (HTTP batch push), behind ?token=",
        response_model=CallbackAck,
        responses=CALLBACK_ERRORS,
        dependencies=[Depends(callback_guard("aliyun", callbacks.aliyun_token))],
    )
    async def aliyun_reports(
        reports: Annotated[list[AliyunReport], batch], request: Request
    ) -> dict[str, Any]:
        for r in reports:
            code = r.err_code or ("DELIVERED" if r.success else "UNKNOWN")
            at = _china_time(r.report_time)
            await record(request, "aliyun", r.biz_id, r.success, code, at, r.out_id)
        return {"code": 0, "msg": "成功"}

    @router.post(
        "/reports/tencent",
        tags=["reports"],
        summary="Tencent Cloud SMS delivery-status callback, behind ?token=",
        response_model=CallbackAck,
        responses=CALLBACK_ERRORS,
        dependencies=[Depends(callback_guard("tencent", callbacks.tencent_token))],
    )
    async def tencent_reports(
        reports: Annotated[list[TencentReport], batch], request: Request
    ) -> dict[str, Any]:
        for r in reports:
            ok = r.report_status.upper() == "SUCCESS"
            code = r.errmsg or r.report_status
            await record(request, "tencent", r.sid, ok, code, _china_time(r.user_receive_time))
        return {"result": 0, "errmsg": "OK"}

    return router
