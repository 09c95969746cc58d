"""Who is asking: bearer tokens (JWT, HS256, expiring) every service verifies the same way.

Tokens are issued by routing's `POST /api/v1/auth/token` against argon2-hashed credentials
(departments, stations, the committee, operators, admins). Voters hold no account: a receipt
code (or a signed rating link) is their only key. This module holds the plumbing only; which
role may do what is each service's rule.

(No `from __future__ import annotations` here: FastAPI must resolve the `Depends` inside the
dependencies built below at run time; tests/unit/test_auth.py pins it.)
"""

import os
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr

DEV_SECRET = "minyi-dev-secret-change-me-in-production-0123456789"  # noqa: S105 - dev default


class Role(StrEnum):
    ANONYMOUS = "anonymous"
    VOTER = "voter"
    STATION = "station"  # station staff: sees its own station
    DEPARTMENT = "department"  # a department clerk: sees its own cases only
    COMMITTEE = "committee"  # 代表与选任工委: reviews invitations, supervises
    OPERATOR = "operator"  # operators at the committee: triage, re-routing
    ADMIN = "admin"


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: SecretStr = Field(
        default_factory=lambda: SecretStr(os.environ.get("MINYI_AUTH_SECRET", DEV_SECRET)),
        description="HMAC key shared by the services (`MINYI_AUTH_SECRET`).",
    )
    issuer: str = "minyi"
    token_ttl_s: int = Field(default=8 * 3600, gt=0)


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    department_id: str | None = None
    station_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role not in (Role.ANONYMOUS, Role.VOTER)


ANONYMOUS = Principal(subject="anonymous", role=Role.ANONYMOUS)


class InvalidToken(Exception):
    pass


def issue_token(settings: AuthSettings, principal: Principal, *, ttl_s: int | None = None) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "sub": principal.subject,
        "role": principal.role.value,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s or settings.token_ttl_s),
        "jti": uuid.uuid4().hex,
    }
    if principal.department_id:
        claims["department_id"] = principal.department_id
    if principal.station_id:
        claims["station_id"] = principal.station_id
    return jwt.encode(claims, settings.secret.get_secret_value(), algorithm="HS256")


def verify_token(settings: AuthSettings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.secret.get_secret_value(),
            algorithms=["HS256"],
            issuer=settings.issuer,
            options={"require": ["exp", "sub", "role", "iss"]},
        )
        return Principal(
            subject=str(claims["sub"]),
            role=Role(claims["role"]),
            department_id=claims.get("department_id"),
            station_id=claims.get("station_id"),
        )
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc


def principal_dependency(
    settings: AuthSettings,
) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A FastAPI dependency: the caller's Principal (ANONYMOUS without a token; 401 if bad)."""

    async def current_principal(request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"message": "Use 'Authorization: Bearer <token>'."},
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return verify_token(settings, token.strip())
        except InvalidToken as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"message": "The token is invalid or has expired; sign in again."},
                headers={"WWW-Authenticate": "Bearer"},
            ) from exc

    return current_principal


def require_roles(
    current: Callable[[Request], Coroutine[Any, Any, Principal]], *roles: Role
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that lets only `roles` through: 401 when anonymous, 403 otherwise."""
    allowed = frozenset(roles)

    async def check(principal: Annotated[Principal, Depends(current)]) -> Principal:
        if principal.role in allowed:
            return principal
        if principal.role is Role.ANONYMOUS:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"message": "Sign in first."},
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={"message": f"A {principal.role.value} account may not do this."},
        )

    return check
