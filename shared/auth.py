"""Who is asking: bearer tokens (JWT, HS256, expiring) every service verifies the same way.

Tokens are issued by routing's `POST /api/v1/auth/token` against argon2-hashed credentials
(departments, stations, the committee, operators, admins). Voters hold no account: a receipt
code (or a signed rating link) is their only key. This module holds the plumbing only; which
role may do what is each service's rule.

The signing key has no default: every service refuses to start without one of at least 32
bytes, from `MINYI_AUTH_SECRET` or the file `MINYI_AUTH_SECRET_FILE` names (the same key for
all four). Tokens name their audience (`aud`), and only tokens for it are accepted.

(No `from __future__ import annotations` here: FastAPI must resolve the `Depends` inside the
dependencies built below at run time; tests/unit/test_auth.py pins it.)
"""

import hashlib
import hmac
import ipaddress
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.settings import secret_from_environment

AUTH_SECRET_ENV = "MINYI_AUTH_SECRET"  # noqa: S105  # pragma: allowlist secret (a name)
MIN_SECRET_BYTES = 32
# SHA-256 of signing keys that were published (the development key once built into the source):
# anyone can sign tokens with them, so they are refused like a missing key.
PUBLISHED_KEYS_SHA256 = frozenset(
    {"7f0cb821d3039b138f44e1da3e5fcd617597cd2682e02965a07457d83dc8dd43"}  # pragma: allowlist secret
)


# The console signs staff in on their behalf, so routing's sign-in limiter would see one
# address for everyone behind it: the console names the person's address in this header,
# signed with the shared key, and routing counts that address (an unsigned or forged value is
# ignored; nobody without the key can pick the address they are counted under).
CLIENT_ADDRESS_HEADER = "X-Minyi-Client-Address"


class Role(StrEnum):
    ANONYMOUS = "anonymous"
    VOTER = "voter"
    STATION = "station"  # station staff: sees its own station
    DEPARTMENT = "department"  # a department clerk: sees its own cases only
    COMMITTEE = "committee"  # 代表与选任工委: reviews invitations, supervises
    OPERATOR = "operator"  # operators at the committee: triage, re-routing
    ADMIN = "admin"


class MissingAuthSecret(RuntimeError):
    """No token signing key is configured: a service refuses to start."""


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: SecretStr | None = Field(
        default=None,
        description="HMAC key shared by the services, at least 32 bytes "
        "(`MINYI_AUTH_SECRET`, or a file named by `MINYI_AUTH_SECRET_FILE`).",
    )
    issuer: str = "minyi"
    audience: str = Field(default="minyi", min_length=1, description="Tokens' `aud` claim.")
    token_ttl_s: int = Field(default=8 * 3600, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secret_from_environment(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("secret") is None:
            found = secret_from_environment(AUTH_SECRET_ENV)
            if found is not None:
                return {**data, "secret": found}
        return data

    @field_validator("secret")
    @classmethod
    def _strong_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None:
            return None
        key = secret.get_secret_value().encode("utf-8")
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the token signing key ({AUTH_SECRET_ENV}) is {len(key)} bytes; it needs at "
                f"least {MIN_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32`"
            )
        if hashlib.sha256(key).hexdigest() in PUBLISHED_KEYS_SHA256:
            raise ValueError(
                f"the token signing key ({AUTH_SECRET_ENV}) is a published development key "
                "that anyone can sign with; generate one, e.g. `openssl rand -hex 32`"
            )
        return secret

    def signing_key(self) -> str:
        """The HMAC key; MissingAuthSecret (the reason, for the operator) when there is none."""
        if self.secret is None:
            raise MissingAuthSecret(
                f"no token signing key: set {AUTH_SECRET_ENV} (at least {MIN_SECRET_BYTES} "
                f"random bytes, e.g. `openssl rand -hex 32`, the same for every service) or "
                f"{AUTH_SECRET_ENV}_FILE (a file holding it)"
            )
        return self.secret.get_secret_value()


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
        "aud": settings.audience,
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
    return jwt.encode(claims, settings.signing_key(), algorithm="HS256")


def verify_token(settings: AuthSettings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.signing_key(),
            algorithms=["HS256"],
            issuer=settings.issuer,
            audience=settings.audience,
            options={"require": ["exp", "sub", "role", "iss", "aud"]},
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
    """A FastAPI dependency: the caller's Principal (ANONYMOUS without a token; 401 if bad).

    Built when a service builds its app: MissingAuthSecret then stops it from starting."""
    settings.signing_key()

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


def _client_address_mac(key: str, address: str) -> str:
    message = b"minyi-client-address\x00" + address.encode("ascii")
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_client_address(settings: AuthSettings, address: str) -> str | None:
    """The `CLIENT_ADDRESS_HEADER` value naming `address` (an IP), or None without a key."""
    if settings.secret is None:
        return None
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    return f"{address} {_client_address_mac(settings.signing_key(), address)}"


def verified_client_address(settings: AuthSettings, header: str | None) -> str | None:
    """The address a `CLIENT_ADDRESS_HEADER` names when its signature holds, else None."""
    if not header or settings.secret is None:
        return None
    address, _, mac = header.strip().rpartition(" ")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    expected = _client_address_mac(settings.signing_key(), address)
    return address if hmac.compare_digest(mac, expected) else None
