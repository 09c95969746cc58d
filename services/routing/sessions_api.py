"""Sessions that end at sign-out: `POST /api/v1/auth/logout` revokes the caller's token (its
`jti`, until the token's own expiry) and `GET /api/v1/auth/session` says whether a token still
holds — 200 with who it is, or 401 when it is revoked, expired or forged. The console asks the
latter on every request, so a session cookie copied before sign-out is worthless after it.

State: routing's `revoked_tokens` table (migration 0005); every sign-out also deletes the rows
of tokens that have expired since (they are refused by their `exp` anyway).

(No `from __future__ import annotations`: FastAPI must resolve the `Current` dependency alias
defined inside `build_sessions_router` at run time.)
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel

from shared.auth import AuthSettings, InvalidToken, Principal, verify_token
from shared.db.pool import Pool

PoolOf = Callable[[], Pool]


class SessionOut(BaseModel):
    subject: str
    role: str
    department_id: str | None
    station_id: str | None
    expires_at: datetime


@dataclass(frozen=True)
class VerifiedToken:
    """A bearer token whose signature, issuer and expiry hold: who, and its id."""

    principal: Principal
    jti: str
    expires_at: datetime


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail={"message": message}, headers={"WWW-Authenticate": "Bearer"})


def _bearer(request: Request) -> str:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Use 'Authorization: Bearer <token>'.")
    return token.strip()


class RevokedTokens:
    """SQL of the `revoked_tokens` table."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def revoke(self, jti: str, subject: str, expires_at: datetime) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO revoked_tokens (jti, subject, expires_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (jti) DO NOTHING",
                jti,
                subject,
                expires_at,
            )
            await conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")

    async def is_revoked(self, jti: str) -> bool:
        found = await self.pool.fetchval("SELECT 1 FROM revoked_tokens WHERE jti = $1", jti)
        return found is not None


def build_sessions_router(pool_of: PoolOf, auth: AuthSettings) -> APIRouter:
    router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

    def verified(token: str) -> VerifiedToken:
        try:
            principal = verify_token(auth, token)
        except InvalidToken as exc:
            raise _unauthorized("The token is invalid or has expired; sign in again.") from exc
        # Signature, issuer and expiry are checked above: read the two claims revocation needs.
        claims = jwt.decode(token, options={"verify_signature": False})
        jti, exp = claims.get("jti"), claims.get("exp")
        if not isinstance(jti, str) or not jti or not isinstance(exp, int | float):
            raise _unauthorized("The token has no id; sign in again.")
        return VerifiedToken(principal, jti, datetime.fromtimestamp(exp, UTC))

    async def current(request: Request) -> VerifiedToken:
        return verified(_bearer(request))

    Current = Annotated[VerifiedToken, Depends(current)]

    @router.post(
        "/logout",
        status_code=204,
        response_class=Response,
        summary="Sign out: revoke this bearer token until it expires",
        responses={401: {"description": "No token, or an invalid or expired one"}},
    )
    async def logout(caller: Current) -> Response:
        await RevokedTokens(pool_of()).revoke(
            caller.jti, caller.principal.subject, caller.expires_at
        )
        return Response(status_code=204)

    @router.get(
        "/session",
        response_model=SessionOut,
        summary="Whether this bearer token still holds, and whose it is",
        responses={401: {"description": "Revoked (signed out), expired or invalid"}},
    )
    async def session(caller: Current) -> SessionOut:
        if await RevokedTokens(pool_of()).is_revoked(caller.jti):
            raise _unauthorized("This session has been signed out; sign in again.")
        principal = caller.principal
        return SessionOut(
            subject=principal.subject,
            role=principal.role.value,
            department_id=principal.department_id,
            station_id=principal.station_id,
            expires_at=caller.expires_at,
        )

    return router
