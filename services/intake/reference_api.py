"""The admin API of reference data: upsert and retire, each change published."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.intake.reference import KINDS
from services.intake.store import ReferenceStore
from shared.auth import AuthSettings, Principal, Role, principal_dependency
from shared.http_errors import errors


class ReferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(
        description="The record's fields without its id: town {name}; station {town_id, name, "
        "online, head, liaison_officer, reception_day}; category {name, case_kind}; department "
        "{name, contact_name, contact_phone}; deputy {name, level, station_id}."
    )


class ReferenceOut(BaseModel):
    kind: str
    id: str
    data: dict[str, Any]
    retired: bool
    event_id: str


def build_reference_router(
    auth: AuthSettings, store_of: Callable[[Request], ReferenceStore]
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/reference", tags=["reference data"])
    current = principal_dependency(auth)

    # Not shared.auth.require_roles: its inner annotation names a local of a module with
    # postponed annotations, which FastAPI cannot resolve (it then asks for a `principal`
    # query field). Same rule: 401 anonymous, 403 other roles.
    async def admin(principal: Annotated[Principal, Depends(current)]) -> Principal:
        if principal.role in (Role.ADMIN, Role.OPERATOR):
            return principal
        if principal.role is Role.ANONYMOUS:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"message": "Sign in first."},
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={"message": f"A {principal.role.value} account may not change reference data."},
        )

    def kind_of(kind: str) -> Any:
        if kind not in KINDS:
            raise HTTPException(
                404, detail={"message": f"No reference kind {kind!r}; one of {sorted(KINDS)}."}
            )
        return KINDS[kind]

    @router.put(
        "/{kind}/{record_id}",
        response_model=ReferenceOut,
        summary="Create or change a town, station, category, department or deputy "
        "(publishes reference.changed)",
        responses=errors(
            401,
            403,
            404,
            422,
            notes={
                403: "Only operators and admins change reference data.",
                404: "No such kind of reference data.",
                422: "Invalid, or a parent (town, station) unknown; nothing changed.",
            },
        ),
    )
    async def upsert(
        kind: str,
        record_id: str,
        body: ReferenceIn,
        request: Request,
        principal: Annotated[Principal, Depends(admin)],
    ) -> ReferenceOut:
        k = kind_of(kind)
        try:
            record = k.model.model_validate({**body.data, "id": record_id}).model_dump()
        except ValidationError as exc:
            fields = [
                {"field": "data." + ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail={
                    "error": "validation_failed",
                    "message": "Invalid request — "
                    + "; ".join(f"{f['field']}: {f['message']}" for f in fields),
                    "fields": fields,
                },
            ) from exc
        store = store_of(request)
        missing = await store.missing_parents(k, record)
        if missing:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail={
                    "error": "validation_failed",
                    "message": "Invalid request — "
                    + "; ".join(f"data.{m}: unknown id {record[m]!r}" for m in missing),
                    "fields": [
                        {"field": f"data.{m}", "message": f"unknown id {record[m]!r}"}
                        for m in missing
                    ],
                },
            )
        envelope = await store.save(k, record, by=principal.subject)
        return ReferenceOut(
            kind=kind,
            id=record_id,
            data=envelope.payload["data"],
            retired=False,
            event_id=str(envelope.event_id),
        )

    @router.delete(
        "/{kind}/{record_id}",
        response_model=ReferenceOut,
        summary="Retire a record: kept for past opinions, refused for new ones "
        "(publishes reference.changed with retired=true)",
        responses=errors(
            401,
            403,
            404,
            notes={
                403: "Only operators and admins change reference data.",
                404: "No such kind, or no such record.",
            },
        ),
    )
    async def retire(
        kind: str, record_id: str, request: Request, principal: Annotated[Principal, Depends(admin)]
    ) -> ReferenceOut:
        k = kind_of(kind)
        envelope = await store_of(request).retire(k, record_id, by=principal.subject)
        if envelope is None:
            raise HTTPException(404, detail={"message": f"No {kind} {record_id!r}."})
        return ReferenceOut(
            kind=kind,
            id=record_id,
            data=envelope.payload["data"],
            retired=True,
            event_id=str(envelope.event_id),
        )

    return router
