"""Evaluation's HTTP handlers: the case as evaluation sees it, a department's figures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from services.evaluation.store import EvaluationStore


class CaseFactsOut(BaseModel):
    case_id: UUID
    opinion_id: UUID | None
    department_id: str | None
    station_id: str | None
    town_id: str | None
    category_id: str | None
    kind: str | None
    assigned_at: datetime | None
    acknowledge_due_at: datetime | None
    complete_due_at: datetime | None
    first_notified_at: datetime | None
    notifications_sent: int


class DepartmentSummaryOut(BaseModel):
    department_id: str
    assigned: int
    notified: int
    notified_rate: float | None


def build_router(store_of: Callable[[Request], EvaluationStore]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["evaluation"])

    @router.get("/cases/{case_id}", response_model=CaseFactsOut, summary="A case's read model")
    async def get_case(case_id: UUID, request: Request) -> dict[str, Any]:
        row = await store_of(request).case(case_id)
        if row is None:
            raise HTTPException(404, detail={"message": f"Evaluation knows no case {case_id}."})
        return row

    @router.get(
        "/departments/{department_id}/summary",
        response_model=DepartmentSummaryOut,
        summary="Cases assigned to a department and how many it was told of",
    )
    async def department_summary(department_id: str, request: Request) -> DepartmentSummaryOut:
        s = await store_of(request).department_summary(department_id)
        return DepartmentSummaryOut(
            department_id=s.department_id,
            assigned=s.assigned,
            notified=s.notified,
            notified_rate=s.notified_rate,
        )

    return router
