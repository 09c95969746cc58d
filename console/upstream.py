"""Calls to the four services over HTTP, forwarding the user's bearer token and one
X-Correlation-Id per console request. No database access."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from console.session import Session, unverified_claims
from shared.auth import CLIENT_ADDRESS_HEADER

CORRELATION_HEADER = "X-Correlation-Id"


def segment(value: str) -> str:
    """A value as one path segment of a service's URL (`/`, `?`, `#`, `%`, … escaped)."""
    return quote(value, safe="")


class SignInAgain(Exception):
    """A service answered 401 to the user's token (expired or revoked)."""


@dataclass
class Reply:
    status: int | None  # None: the service did not answer
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Upstream:
    def __init__(self, urls: dict[str, str], http: httpx.AsyncClient, timeout_s: float) -> None:
        self.urls = urls
        self.http = http
        self.timeout_s = timeout_s

    def _headers(self, session: Session | None, correlation_id: str) -> dict[str, str]:
        headers = {CORRELATION_HEADER: correlation_id, "accept": "application/json"}
        if session is not None:
            headers["authorization"] = f"Bearer {session.token}"
        return headers

    async def get(
        self,
        service: str,
        path: str,
        *,
        session: Session | None,
        correlation_id: str,
        params: Any = None,
        limit_s: float | None = None,
        raw: bool = False,
    ) -> Reply:
        try:
            response = await self.http.get(
                f"{self.urls[service]}{path}",
                params=params,
                headers=self._headers(session, correlation_id),
                timeout=limit_s or self.timeout_s,
            )
        except httpx.HTTPError as exc:
            return Reply(None, error=f"{type(exc).__name__}")
        if response.status_code == 401 and session is not None:
            raise SignInAgain(service)
        if raw:
            return Reply(response.status_code, response.text)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Reply(response.status_code, body)

    async def session_holds(
        self, session: Session, correlation_id: str, limit_s: float
    ) -> bool | None:
        """routing's `GET /api/v1/auth/session` with the user's token: True (200), False (401:
        signed out or no longer valid), None (routing did not answer, or answered otherwise)."""
        try:
            response = await self.http.get(
                f"{self.urls['routing']}/api/v1/auth/session",
                headers=self._headers(session, correlation_id),
                timeout=limit_s,
            )
        except httpx.HTTPError:
            return None
        if response.status_code == 200:
            return True
        if response.status_code == 401:
            return False
        return None

    async def sign_out(self, session: Session, correlation_id: str) -> bool:
        """routing's `POST /api/v1/auth/logout`: True when the token is revoked (204) or no
        longer valid anyway (401); False when routing could not confirm it."""
        try:
            response = await self.http.post(
                f"{self.urls['routing']}/api/v1/auth/logout",
                headers=self._headers(session, correlation_id),
                timeout=self.timeout_s,
            )
        except httpx.HTTPError:
            return False
        return response.status_code in (204, 401)

    async def sign_in(
        self, client_id: str, secret: str, correlation_id: str, client_address: str | None = None
    ) -> Session | str:
        """routing's `POST /api/v1/auth/token` ({client_id, client_secret} JSON; a form body as
        the fallback when routing answers 415/422 to it) → a Session, or a message in Chinese.
        `client_address`: the signed `CLIENT_ADDRESS_HEADER` naming the person's address, so
        routing's sign-in limiter counts them, not the console."""
        url = f"{self.urls['routing']}/api/v1/auth/token"
        headers = {CORRELATION_HEADER: correlation_id}
        if client_address:
            headers[CLIENT_ADDRESS_HEADER] = client_address
        try:
            response = await self.http.post(
                url,
                json={"client_id": client_id, "client_secret": secret},
                headers=headers,
                timeout=self.timeout_s,
            )
            if response.status_code in (415, 422):
                response = await self.http.post(
                    url,
                    data={
                        "grant_type": "client_credentials",
                        "client_id": client_id,
                        "client_secret": secret,
                        "username": client_id,
                        "password": secret,
                    },
                    headers=headers,
                    timeout=self.timeout_s,
                )
        except httpx.HTTPError:
            return "登录服务（routing）暂时无法访问，请稍后再试。"
        if response.status_code in (400, 401, 403):
            return "账号或密码不正确。"
        if response.status_code == 429:
            return _too_many_sign_ins(response.headers.get("retry-after"))
        if response.status_code != 200:
            return f"登录失败（routing 返回 {response.status_code}）。"
        try:
            body = response.json()
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            return "登录失败：routing 的回复无法识别。"
        claims = unverified_claims(token)
        role = body.get("role") or claims.get("role")
        if not role:
            return "登录失败：账号没有角色。"
        expires_in = body.get("expires_in")
        if isinstance(expires_in, int | float) and expires_in > 0:
            expires_at = time.time() + float(expires_in)
        elif isinstance(claims.get("exp"), int | float):
            expires_at = float(claims["exp"])
        else:
            expires_at = time.time() + 3600
        return Session(
            token=token,
            subject=str(claims.get("sub") or client_id),
            role=str(role),
            department_id=body.get("department_id") or claims.get("department_id"),
            station_id=body.get("station_id") or claims.get("station_id"),
            expires_at=expires_at,
        )


def _too_many_sign_ins(retry_after: str | None) -> str:
    seconds = int(retry_after) if retry_after and retry_after.isdigit() else 15 * 60
    minutes = max(1, math.ceil(seconds / 60))
    return f"登录失败次数过多，请 {minutes} 分钟后再试。"
