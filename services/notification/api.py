"""Notification's HTTP handlers: what was sent about a case (addresses never shown)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.notification.store import NotificationStore


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
    created_at: datetime
    sent_at: datetime | None


def build_router(store_of: Callable[[Request], NotificationStore]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["deliveries"])

    @router.get(
        "/cases/{case_id}/deliveries",
        response_model=list[DeliveryOut],
        summary="Every message planned or sent about a case",
    )
    async def case_deliveries(case_id: UUID, request: Request) -> list[dict[str, Any]]:
        return await store_of(request).deliveries_for_case(case_id)

    return router
