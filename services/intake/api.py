"""Intake's HTTP handlers: translate a request into a call, nothing more."""

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import uuid4

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.intake import wechat
from services.intake.domain import (
    CONTENT_MAX,
    CONTENT_MIN,
    NAME_MAX,
    SERVICE,
    FieldProblem,
    InvalidPhone,
    Opinion,
    ReferenceSnapshot,
    new_receipt_code,
    normalise_mobile,
    not_in_future,
    request_fingerprint,
)
from services.intake.reference_cache import ReferenceCache
from services.intake.settings import IntakeSettings
from services.intake.store import (
    IdempotencyConflict,
    IdempotencyKey,
    IntakeStore,
    PendingSave,
    Saved,
)
from services.intake.writer import GroupWriter
from shared.auth import Principal, Role, principal_dependency
from shared.events import Channel
from shared.http_errors import errors
from shared.ratelimit import RateLimiter

__all__ = ["SERVICE", "build_router"]

log = structlog.get_logger(__name__)

ReferenceId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Content = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=CONTENT_MIN, max_length=CONTENT_MAX)
]
VoterName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=NAME_MAX)]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=128,
        description="Any unique string (e.g. a UUID) per submission: a retry with the same key "
        "and body returns the same receipt(s); the same key with another body gets 409.",
    ),
]
STAFF_ROLES = frozenset({Role.STATION, Role.OPERATOR, Role.ADMIN})


class StaffChannel(StrEnum):
    """Channels station staff enter opinions by."""

    STATION_RECEPTION = Channel.STATION_RECEPTION.value
    DEPUTY_VISIT = Channel.DEPUTY_VISIT.value
    JOINT_SESSION = Channel.JOINT_SESSION.value
    MAILBOX = Channel.MAILBOX.value
    HOTLINE = Channel.HOTLINE.value


class OpinionFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category_id: ReferenceId | None = None
    deputy_id: ReferenceId | None = None
    content: Content
    voter_name: VoterName | None = None
    voter_phone: str | None = Field(
        default=None, description="Chinese mainland mobile number; stored, never published."
    )
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When the voter raised it (e.g. the reception day)."
    )

    @field_validator("voter_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return normalise_mobile(value)
        except InvalidPhone as exc:
            raise ValueError(f"{exc} (e.g. 13800138000)") from exc

    @field_validator("voter_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("occurred_at")
    @classmethod
    def _not_future(cls, value: datetime | None) -> datetime | None:
        return None if value is None else not_in_future(value, datetime.now(UTC))


class OpinionIn(OpinionFields):
    """The public online form (anonymous). Staff channels need a station account."""

    channel: Channel = Channel.ONLINE
    station_id: ReferenceId


class StaffOpinionIn(OpinionFields):
    """One opinion entered by station staff; the station is the one in the path."""

    channel: StaffChannel


class BatchIn(BaseModel):
    """A reception day's opinions: all recorded, or none."""

    model_config = ConfigDict(extra="forbid")
    items: list[StaffOpinionIn] = Field(min_length=1, max_length=500)


class ReceiptOut(BaseModel):
    opinion_id: str
    receipt_code: str
    status_url: str
    submitted_at: datetime


class BatchReceiptOut(BaseModel):
    station_id: str
    count: int
    receipts: list[ReceiptOut] = Field(description="In the order of the items.")


class StageOut(BaseModel):
    stage: str = Field(
        description="submitted, triaged (major problems), assigned, acknowledged, "
        "extension_requested, extension_granted, extension_refused, returned, completed, "
        "reopened, closed, overdue, supervised, rated, evaluated, invitation_requested, "
        "invitation_approved, invitation_declined"
    )
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class ReceiptNoteOut(BaseModel):
    kind: str = Field(description="grouped: gathered with similar opinions into a suggestion.")
    at: datetime
    text: str = Field(description="What it means, in plain Chinese.")


class OpinionStatusOut(BaseModel):
    """The voter's view: where the opinion stands. Never any personal data."""

    receipt_code: str
    channel: str
    station: str
    town: str
    category: str | None
    submitted_at: datetime
    received_at: datetime
    stage: str = Field(
        default="submitted",
        description="The latest stage of the opinion's own case: it only moves forward.",
    )
    history: list[StageOut]
    notes: list[ReceiptNoteOut] = Field(
        default_factory=list,
        description="Things the voter should know that are not stages of the case "
        "(a grouping into a common-problem suggestion).",
    )


def invalid(problems: Sequence[FieldProblem]) -> HTTPException:
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail={
            "error": "validation_failed",
            "message": f"Invalid request — {summary}",
            "fields": [{"field": p.field, "message": p.message} for p in problems],
        },
    )


def _system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store_of: Callable[[Request], IntakeStore]
    settings: IntakeSettings
    limiter: RateLimiter
    clock: Callable[[], datetime] = _system_clock  # tests inject their own (station rules)
    wechat_clock: Callable[[], datetime] = _system_clock  # WeChat timestamps' freshness
    references: ReferenceCache | None = None  # None: read the tables on every request
    writer: GroupWriter | None = None  # None: one transaction per request

    async def reference_snapshot(self, request: Request) -> ReferenceSnapshot:
        if self.references is not None:
            return await self.references.get()
        return await self.store_of(request).reference_snapshot()

    async def save_opinions(
        self,
        request: Request,
        opinions: list[Opinion],
        *,
        response: dict[str, Any],
        idempotency: IdempotencyKey | None,
    ) -> Saved:
        """Commit the opinions with their outbox rows and key (group commit when enabled)."""
        if self.writer is not None:
            return await self.writer.save(PendingSave(opinions, response, idempotency))
        return await self.store_of(request).save_opinions(
            opinions, response=response, idempotency=idempotency
        )

    def receipt(self, opinion: Opinion) -> dict[str, Any]:
        return ReceiptOut(
            opinion_id=str(opinion.opinion_id),
            receipt_code=opinion.receipt_code,
            status_url=f"{self.settings.public_base_url}/api/v1/receipts/{opinion.receipt_code}",
            submitted_at=opinion.submitted_at,
        ).model_dump(mode="json")


def make_opinion(
    fields: OpinionFields,
    *,
    channel: Channel,
    station_id: str,
    town_id: str,
    now: datetime,
    entered_by: str | None = None,
    wechat_openid: str | None = None,
    import_key: str | None = None,
) -> Opinion:
    return Opinion(
        opinion_id=uuid4(),
        receipt_code=new_receipt_code(),
        channel=channel,
        station_id=station_id,
        town_id=town_id,
        category_id=fields.category_id,
        deputy_id=fields.deputy_id,
        content=fields.content,
        voter_name=fields.voter_name,
        voter_phone=fields.voter_phone,
        submitted_at=fields.occurred_at or now,
        wechat_openid=wechat_openid,
        entered_by=entered_by,
        import_key=import_key,
    )


def check_staff(
    principal: Principal,
    station_id: str,
    *,
    action: str = "enter opinions",
    roles: frozenset[Role] = STAFF_ROLES,
) -> None:
    """Station staff act for their own station; operators and admins (and whoever else
    `roles` lets in) for any."""
    if principal.role is Role.ANONYMOUS:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail={"message": f"Sign in with a station account to {action}."},
            headers={"WWW-Authenticate": "Bearer"},
        )
    if principal.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={"message": f"A {principal.role.value} account may not {action}."},
        )
    if principal.role is Role.STATION and principal.station_id != station_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={
                "message": f"A station account may {action} for its own station only "
                f"({principal.station_id}), not {station_id}."
            },
        )


def idempotency_key_of(scope: str, key: str | None, body: dict[str, Any]) -> IdempotencyKey | None:
    if key is None:
        return None
    return IdempotencyKey(scope=scope, key=key.strip(), request_hash=request_fingerprint(body))


def conflict() -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        detail={
            "message": "This Idempotency-Key was used for a different request; "
            "use a new key for a new submission."
        },
    )


class PublicLimits:
    """The public routes' rate limits, in words, from the settings in force (the committed
    OpenAPI shows the defaults)."""

    ENV = "MINYI_INTAKE__RATE_LIMIT__"

    def __init__(self, settings: IntakeSettings) -> None:
        self.limits = settings.rate_limit

    @property
    def per_address(self) -> str:
        return (
            f"{self.limits.per_address} per client address, shared by the online form and the "
            f"receipt page (`{self.ENV}PER_ADDRESS`)"
        )

    @property
    def per_phone(self) -> str:
        return f"{self.limits.per_phone} per voter phone number (`{self.ENV}PER_PHONE`)"

    def too_many(self, *limits: str) -> str:
        return "Over " + "; or over ".join(limits) + ". Nothing was recorded; see Retry-After."


def build_router(deps: Deps) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    settings = deps.settings
    limits = PublicLimits(settings)
    current = principal_dependency(settings.auth)
    per_address = deps.limiter.parse(settings.rate_limit.per_address)
    per_phone = deps.limiter.parse(settings.rate_limit.per_phone)

    async def save(
        request: Request,
        response: Response,
        opinions: list[Opinion],
        result: dict[str, Any],
        idempotency: IdempotencyKey | None,
    ) -> dict[str, Any]:
        try:
            saved = await deps.save_opinions(
                request, opinions, response=result, idempotency=idempotency
            )
        except IdempotencyConflict as exc:
            raise conflict() from exc
        if saved.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        else:
            log.info("opinions_recorded", count=len(opinions), channel=opinions[0].channel.value)
        if "opinion_id" in saved.response:
            # One opinion: its id is the correlation id of every event and log line about it,
            # and the X-Correlation-Id of this response.
            request.state.correlation_id = saved.response["opinion_id"]
        return saved.response

    @router.post(
        "/opinions",
        tags=["opinions"],
        status_code=status.HTTP_201_CREATED,
        response_model=ReceiptOut,
        summary="Submit a voter's opinion (public online form); returns the tracking receipt",
        description="Anonymous, channel `online`, with or without a phone number. Staff "
        "channels need a station account (see `/stations/{station_id}/opinions`). "
        f"Rate-limited (anonymous callers): {limits.per_address}, and {limits.per_phone}.",
        responses=errors(
            401,
            403,
            409,
            422,
            429,
            notes={
                401: "A staff channel without a token, or an invalid or expired token.",
                403: "A staff channel from an account that may not enter it for this station.",
                409: "The Idempotency-Key was used for another request.",
                429: limits.too_many(limits.per_address, limits.per_phone),
            },
        ),
    )
    async def submit_opinion(
        body: OpinionIn,
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(current)],
        idempotency_key: IdempotencyHeader = None,
    ) -> dict[str, Any]:
        if body.channel is Channel.WECHAT:
            raise invalid(
                [FieldProblem("channel", "WeChat opinions come through the WeChat callback")]
            )
        if body.channel is not Channel.ONLINE:  # staff channels need a station account
            check_staff(principal, body.station_id)
        if not principal.is_staff:  # every request counts against the address
            deps.limiter.hit(
                per_address, "form", deps.limiter.client_address(request), what="from this address"
            )
        snapshot = await deps.reference_snapshot(request)
        problems = snapshot.problems(
            station_id=body.station_id, category_id=body.category_id, deputy_id=body.deputy_id
        )
        if problems:
            raise invalid(problems)
        if not principal.is_staff and body.voter_phone:
            # Only submissions that are accepted count against the voter's phone: invalid
            # posts naming somebody's number must not lock that voter out of the form.
            deps.limiter.hit(per_phone, "phone", body.voter_phone, what="for this phone")
        opinion = make_opinion(
            body,
            channel=body.channel,
            station_id=body.station_id,
            town_id=snapshot.station_towns[body.station_id],
            now=datetime.now(UTC),
            entered_by=principal.subject if principal.is_staff else None,
        )
        scope = principal.subject if principal.is_staff else "public"
        idem = idempotency_key_of(scope, idempotency_key, body.model_dump(mode="json"))
        return await save(request, response, [opinion], deps.receipt(opinion), idem)

    def _batch_problems(
        snapshot: ReferenceSnapshot, station_id: str, items: Sequence[StaffOpinionIn]
    ) -> list[FieldProblem]:
        problems = []
        if station_id not in snapshot.station_towns:
            problems.append(FieldProblem("station_id", f"unknown id {station_id!r}"))
        for index, item in enumerate(items):
            for p in snapshot.problems(
                station_id=station_id, category_id=item.category_id, deputy_id=item.deputy_id
            ):
                if p.field != "station_id":
                    problems.append(FieldProblem(f"items.{index}.{p.field}", p.message))
        return problems

    staff_responses = errors(
        401,
        403,
        409,
        422,
        notes={
            403: "Not this station's account.",
            409: "The Idempotency-Key was used for another request.",
            422: "A field or an item is invalid (named; a batch's items by index, also in "
            "`items`); nothing was recorded.",
        },
    )

    @router.post(
        "/stations/{station_id}/opinions",
        tags=["station staff"],
        status_code=status.HTTP_201_CREATED,
        response_model=ReceiptOut,
        summary="Enter one opinion taken at a station (reception, visit, joint session, "
        "mailbox, hotline)",
        responses=staff_responses,
    )
    async def enter_opinion(
        station_id: str,
        body: StaffOpinionIn,
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(current)],
        idempotency_key: IdempotencyHeader = None,
    ) -> dict[str, Any]:
        check_staff(principal, station_id)
        snapshot = await deps.reference_snapshot(request)
        problems = [
            FieldProblem(p.field, p.message)
            for p in snapshot.problems(
                station_id=station_id, category_id=body.category_id, deputy_id=body.deputy_id
            )
        ]
        if problems:
            raise invalid(problems)
        opinion = make_opinion(
            body,
            channel=Channel(body.channel.value),
            station_id=station_id,
            town_id=snapshot.station_towns[station_id],
            now=datetime.now(UTC),
            entered_by=principal.subject,
        )
        idem = idempotency_key_of(
            principal.subject,
            idempotency_key,
            {"station_id": station_id, **body.model_dump(mode="json")},
        )
        return await save(request, response, [opinion], deps.receipt(opinion), idem)

    @router.post(
        "/stations/{station_id}/opinions/batch",
        tags=["station staff"],
        status_code=status.HTTP_201_CREATED,
        response_model=BatchReceiptOut,
        summary="Enter a reception day's opinions at once (up to 500): all or nothing",
        description="Errors name the item by its index in `items` (from 0), e.g. "
        "`items.37.voter_phone`; when any item is invalid nothing is recorded.",
        responses=staff_responses,
    )
    async def enter_batch(
        station_id: str,
        body: BatchIn,
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(current)],
        idempotency_key: IdempotencyHeader = None,
    ) -> dict[str, Any]:
        check_staff(principal, station_id)
        snapshot = await deps.reference_snapshot(request)
        problems = _batch_problems(snapshot, station_id, body.items)
        if problems:
            raise invalid(problems)
        now = datetime.now(UTC)
        opinions = [
            make_opinion(
                item,
                channel=Channel(item.channel.value),
                station_id=station_id,
                town_id=snapshot.station_towns[station_id],
                now=now,
                entered_by=principal.subject,
            )
            for item in body.items
        ]
        result = BatchReceiptOut(
            station_id=station_id,
            count=len(opinions),
            receipts=[ReceiptOut(**deps.receipt(o)) for o in opinions],
        ).model_dump(mode="json")
        idem = idempotency_key_of(
            principal.subject,
            idempotency_key,
            {"station_id": station_id, "batch": body.model_dump(mode="json")},
        )
        return await save(request, response, opinions, result, idem)

    @router.get(
        "/receipts/{receipt_code}",
        tags=["opinions"],
        response_model=OpinionStatusOut,
        summary="Follow an opinion by its receipt code: its stage history (no personal data)",
        description=f"Public. Rate-limited: {limits.per_address}.",
        responses=errors(
            404,
            429,
            notes={
                404: "No opinion has this receipt code.",
                429: limits.too_many(limits.per_address),
            },
        ),
    )
    async def follow_receipt(receipt_code: str, request: Request) -> dict[str, Any]:
        deps.limiter.hit(
            per_address, "receipt", deps.limiter.client_address(request), what="from this address"
        )
        row = await deps.store_of(request).public_status(receipt_code.strip().upper()[:32])
        if row is None:
            raise HTTPException(404, detail={"message": "No opinion has this receipt code."})
        return row

    router.include_router(_wechat_router(deps, per_address, per_phone, limits))
    return router


_XML = "application/xml"
_XML_BODY = {
    "requestBody": {
        "required": True,
        "content": {_XML: {"schema": {"type": "string", "description": "A WeChat message."}}},
    }
}


def _wechat_router(
    deps: Deps, per_address: Any, per_openid: Any, limits: PublicLimits
) -> APIRouter:
    router = APIRouter(prefix="/wechat", tags=["wechat"])
    settings = deps.settings
    failed_signatures = (
        f"{limits.limits.per_address} failed signatures per client address "
        f"(`{limits.ENV}PER_ADDRESS`; WeChat's own servers are never throttled by it)"
    )
    per_account = f"{limits.limits.per_phone} messages per WeChat account (`{limits.ENV}PER_PHONE`)"

    window_s = settings.wechat.freshness_s

    def forbidden(message: str) -> HTTPException:
        return HTTPException(status.HTTP_403_FORBIDDEN, detail={"message": message})

    async def fresh_once(request: Request, timestamp: str, nonce: str, body: bytes) -> None:
        """A signed URL is good for one request (or WeChat's retries of it, same body), and
        only within `wechat.freshness_s` of its timestamp: a captured URL cannot be replayed."""
        now = deps.wechat_clock().timestamp()
        if not wechat.is_fresh(timestamp, now=now, window_s=window_s):
            raise forbidden("The signed timestamp is outside the accepted window.")
        first = await deps.store_of(request).claim_wechat_nonce(
            int(timestamp),
            nonce,
            hashlib.sha256(body).hexdigest(),
            purge_before=int(now) - window_s,
        )
        if not first:
            log.warning("wechat_callback_replayed")
            raise forbidden("This signed request was used already.")

    def verified(request: Request, signature: str, timestamp: str, nonce: str) -> None:
        token = settings.wechat.token.get_secret_value()
        if not wechat.verify(token, signature_=signature, timestamp=timestamp, nonce=nonce):
            # Only requests failing the signature count against the address (WeChat's own
            # servers share a few addresses and must not be throttled together).
            deps.limiter.hit(
                per_address,
                "wechat",
                deps.limiter.client_address(request),
                what="from this address",
            )
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail={"message": "The signature does not match."}
            )

    @router.get(
        "/callback",
        summary="WeChat server URL verification: echoes echostr when the signature is right",
        response_class=Response,
        description=f"Rate-limited: {failed_signatures}.",
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **errors(
                403,
                429,
                notes={
                    403: "Wrong signature, stale timestamp, or a replayed request.",
                    429: limits.too_many(failed_signatures),
                },
            ),
        },
    )
    async def verify_url(
        request: Request,
        signature: Annotated[str, Query(max_length=64)],
        timestamp: Annotated[str, Query(max_length=20)],
        nonce: Annotated[str, Query(max_length=64)],
        echostr: Annotated[str, Query(max_length=512)],
    ) -> Response:
        verified(request, signature, timestamp, nonce)
        await fresh_once(request, timestamp, nonce, b"GET " + echostr.encode())
        return Response(echostr, media_type="text/plain")

    @router.post(
        "/callback",
        summary="WeChat message push (plaintext mode): a text message becomes an opinion; "
        "the reply carries its receipt code",
        response_class=Response,
        openapi_extra=_XML_BODY,
        description=f"Rate-limited: {per_account}, and {failed_signatures}.",
        responses={
            200: {"content": {_XML: {"schema": {"type": "string"}}}},
            **errors(
                400,
                403,
                409,
                429,
                notes={
                    400: "Not a readable WeChat message.",
                    403: "Wrong signature, stale timestamp, or a signed URL used already with "
                    "another body; nothing was recorded.",
                    409: "A MsgId seen before with other content; nothing was recorded.",
                    429: limits.too_many(per_account, failed_signatures),
                    503: "The database is out of reach, or WeChat intake is not configured "
                    "(its station unknown); nothing was recorded.",
                },
            ),
        },
    )
    async def receive_message(
        request: Request,
        signature: Annotated[str, Query(max_length=64)],
        timestamp: Annotated[str, Query(max_length=20)],
        nonce: Annotated[str, Query(max_length=64)],
    ) -> Response:
        verified(request, signature, timestamp, nonce)
        body = await request.body()
        await fresh_once(request, timestamp, nonce, body)
        try:
            message = wechat.parse(body)
        except wechat.BadMessage as exc:
            raise HTTPException(400, detail={"message": str(exc)}) from exc
        reply_from = settings.wechat.account_id or message.to_user
        now = datetime.now(UTC)

        def reply(text: str) -> Response:
            xml = wechat.text_reply(
                to_user=message.from_user,
                from_user=reply_from,
                create_time=int(now.timestamp()),
                content=text,
            )
            return Response(xml, media_type=_XML)

        if message.msg_type == "event" and (message.event or "").lower() == "subscribe":
            return reply(
                "欢迎关注！直接发送文字即可向人大代表反映意见建议，我们会回复回执码供您查询办理进度。"
            )
        if message.msg_type != "text":
            return Response("success", media_type="text/plain")  # WeChat: nothing to say
        content = (message.content or "").strip()
        if len(content) < CONTENT_MIN:
            return reply(f"请具体描述您反映的问题（至少{CONTENT_MIN}个字），我们会为您登记。")
        if len(content) > CONTENT_MAX:
            return reply(f"内容过长，请分几条发送（每条不超过{CONTENT_MAX}字）。")
        deps.limiter.hit(per_openid, "openid", message.from_user, what="from this account")
        station_id = settings.wechat.station_id
        town_id = (await deps.reference_snapshot(request)).station_towns.get(station_id)
        if town_id is None:
            log.error("wechat_station_unknown", station_id=station_id)
            raise HTTPException(503, detail={"message": "WeChat intake is not configured."})
        opinion = Opinion(
            opinion_id=uuid4(),
            receipt_code=new_receipt_code(),
            channel=Channel.WECHAT,
            station_id=station_id,
            town_id=town_id,
            category_id=None,
            deputy_id=None,
            content=content,
            voter_name=None,
            voter_phone=None,
            submitted_at=datetime.fromtimestamp(message.create_time, UTC)
            if 0 < message.create_time <= now.timestamp() + 300
            else now,
            wechat_openid=message.from_user,
        )
        # WeChat retries a push it got no answer to (same MsgId): the same receipt again.
        key = message.msg_id or f"{message.from_user}:{message.create_time}"
        idem = IdempotencyKey(
            scope="wechat",
            key=key,
            request_hash=request_fingerprint(
                {"from": message.from_user, "time": message.create_time, "content": content}
            ),
        )
        try:
            saved = await deps.save_opinions(
                request, [opinion], response=deps.receipt(opinion), idempotency=idem
            )
        except IdempotencyConflict as exc:
            raise HTTPException(409, detail={"message": "MsgId seen with other content."}) from exc
        receipt = saved.response
        if not saved.replayed:
            log.info("opinions_recorded", count=1, channel="wechat")
        return reply(
            f"您的意见已收到，回执码：{receipt['receipt_code']}。"
            f"可凭回执码查询办理进度：{receipt['status_url']}"
        )

    return router
