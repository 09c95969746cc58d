"""Intake's HTTP handlers: translate a request into a call, nothing more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.intake.domain import InvalidPhone, Opinion, new_receipt_code, normalise_mobile
from services.intake.store import IntakeStore
from shared.events import Channel, EventEnvelope

SERVICE = "intake"
ReferenceId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CLOCK_SKEW = timedelta(minutes=5)


class OpinionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    station_id: ReferenceId
    category_id: ReferenceId | None = None
    deputy_id: ReferenceId | None = None
    content: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=4000)]
    voter_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)] | None = (
        None
    )
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

    @field_validator("occurred_at")
    @classmethod
    def _not_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("must not be in the future")
        return value


class ReceiptOut(BaseModel):
    opinion_id: str
    receipt_code: str
    status_url: str
    submitted_at: datetime


class OpinionStatusOut(BaseModel):
    receipt_code: str
    channel: str
    station: str
    town: str
    category: str | None
    submitted_at: datetime
    received_at: datetime
    stage: str = "submitted"


def _unknown(field: str, value: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail={
            "error": "validation_failed",
            "message": f"Invalid request — {field}: unknown id {value!r}",
            "fields": [{"field": field, "message": f"unknown id {value!r}"}],
        },
    )


def build_router(store_of: Any, public_base_url: str) -> APIRouter:
    """`store_of(request)` gives the IntakeStore (opened in the lifespan)."""
    router = APIRouter(prefix="/api/v1", tags=["opinions"])

    @router.post(
        "/opinions",
        status_code=status.HTTP_201_CREATED,
        response_model=ReceiptOut,
        summary="Submit a voter's opinion; returns the tracking receipt",
        responses={422: {"description": "A field is invalid; nothing was recorded."}},
    )
    async def submit_opinion(body: OpinionIn, request: Request) -> ReceiptOut:
        store: IntakeStore = store_of(request)
        town_id = await store.station_town(body.station_id)
        if town_id is None:
            raise _unknown("station_id", body.station_id)
        if body.category_id is not None and not await store.category_exists(body.category_id):
            raise _unknown("category_id", body.category_id)
        if body.deputy_id is not None and not await store.deputy_exists(body.deputy_id):
            raise _unknown("deputy_id", body.deputy_id)
        opinion = Opinion(
            opinion_id=uuid4(),
            receipt_code=new_receipt_code(),
            channel=body.channel,
            station_id=body.station_id,
            town_id=town_id,
            category_id=body.category_id,
            deputy_id=body.deputy_id,
            content=body.content,
            voter_name=body.voter_name or None,
            voter_phone=body.voter_phone,
            submitted_at=body.occurred_at or datetime.now(UTC),
        )
        envelope = EventEnvelope.wrap(
            opinion.submitted_event(), producer=SERVICE, correlation_id=opinion.opinion_id
        )
        await store.save_submitted(opinion, envelope)
        return ReceiptOut(
            opinion_id=str(opinion.opinion_id),
            receipt_code=opinion.receipt_code,
            status_url=f"{public_base_url}/api/v1/receipts/{opinion.receipt_code}",
            submitted_at=opinion.submitted_at,
        )

    @router.get(
        "/receipts/{receipt_code}",
        response_model=OpinionStatusOut,
        summary="Follow an opinion by its receipt code (no personal data)",
        responses={404: {"description": "No opinion has this receipt code."}},
    )
    async def follow_receipt(receipt_code: str, request: Request) -> OpinionStatusOut:
        store: IntakeStore = store_of(request)
        row = await store.public_status(receipt_code.strip().upper())
        if row is None:
            raise HTTPException(404, detail={"message": "No opinion has this receipt code."})
        return OpinionStatusOut(**row)

    return router
