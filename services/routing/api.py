"""Routing's HTTP handlers: the case and a department's queue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from services.routing.store import RoutingStore


class TransitionOut(BaseModel):
    from_state: str | None
    to_state: str
    actor: str
    reason: str | None
    at: datetime


class CaseOut(BaseModel):
    id: UUID
    opinion_id: UUID
    receipt_code: str
    department_id: str
    department_name: str
    station_id: str
    town_id: str
    category_id: str | None
    kind: str
    state: str
    assigned_at: datetime
    acknowledge_due_at: datetime
    complete_due_at: datetime
    transitions: list[TransitionOut]


class QueueItemOut(BaseModel):
    id: UUID
    receipt_code: str
    state: str
    kind: str
    category_id: str | None
    town_id: str
    station_id: str
    assigned_at: datetime
    acknowledge_due_at: datetime
    complete_due_at: datetime


def build_router(store_of: Callable[[Request], RoutingStore]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["cases"])

    async def _case(store: RoutingStore, case_id: UUID) -> dict[str, Any]:
        case = await store.case(case_id)
        if case is None:
            raise HTTPException(404, detail={"message": f"No case {case_id}."})
        return case

    @router.get("/cases/{case_id}", response_model=CaseOut, summary="A case and its audit trail")
    async def get_case(case_id: UUID, request: Request) -> dict[str, Any]:
        return await _case(store_of(request), case_id)

    @router.get(
        "/cases", response_model=CaseOut, summary="The case made from an opinion (by opinion id)"
    )
    async def find_case(request: Request, opinion_id: Annotated[UUID, Query()]) -> dict[str, Any]:
        store = store_of(request)
        case_id = await store.case_id_for_opinion(opinion_id)
        if case_id is None:
            raise HTTPException(404, detail={"message": f"No case yet for opinion {opinion_id}."})
        return await _case(store, case_id)

    @router.get(
        "/departments/{department_id}/queue",
        response_model=list[QueueItemOut],
        summary="A department's open cases, soonest deadline first",
    )
    async def department_queue(
        department_id: str,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        store = store_of(request)
        if not await store.department_exists(department_id):
            raise HTTPException(404, detail={"message": f"No department {department_id!r}."})
        return await store.department_queue(department_id, limit)

    return router
