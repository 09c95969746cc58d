"""WeChat official account: template messages and (one-time) subscribe messages.

* Access token: ``GET /cgi-bin/token?grant_type=client_credential&appid=..&secret=..`` →
  ``{"access_token": .., "expires_in": 7200}``. One token per app serves every worker: it is
  kept in PostgreSQL (`wechat_tokens`), refreshed under that row's lock a margin before it
  expires, and at once when WeChat says it is invalid or expired (40001, 40014, 42001).
* Template message: ``POST /cgi-bin/message/template/send?access_token=..``
  ``{"touser": openid, "template_id": .., "url": .., "data": {"k": {"value": ..}}}`` →
  ``{"errcode": 0, "errmsg": "ok", "msgid": ..}``.
* Subscribe message (the voter opted in): ``POST /cgi-bin/message/subscribe/bizsend`` with
  ``{"touser", "template_id", "page", "data"}``; 43101 = the user refused (not retryable: the
  dispatcher falls back to SMS). 45009 = the API's daily quota (retryable later).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .base import Lookup, SendResult, SentQuery

_log = structlog.get_logger(__name__)

TOKEN_INVALID = frozenset({40001, 40014, 42001})
REFUSED = 43101
RETRYABLE = frozenset({-1, 45009, 45011, 45047})


class WechatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    base_url: str = "https://api.weixin.qq.com"
    mode: Literal["template", "subscribe"] = "subscribe"
    link_url: str = Field(default="", description="Opened from the message (template mode).")
    timeout_s: float = Field(default=5.0, gt=0)
    token_refresh_margin_s: float = Field(
        default=300, ge=0, description="Refresh this long before the 7,200 s expiry."
    )


@dataclass(frozen=True)
class WechatMessage:
    openid: str
    template_id: str
    params: dict[str, str]
    out_id: str


class TokenStore(Protocol):
    """Where the shared token lives (PostgreSQL in the service, memory in tests)."""

    async def current(self, app_id: str) -> tuple[str, datetime] | None: ...

    async def refresh(
        self,
        app_id: str,
        *,
        stale: str | None,
        fetch: Any,
        margin: timedelta,
    ) -> str: ...

    async def invalidate(self, app_id: str, token: str) -> None: ...


class TokenError(Exception):
    def __init__(self, code: str, message: str, *, outage: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.outage = outage


class WechatProvider:
    name = "wechat"
    sign_name = "wechat"

    def __init__(
        self,
        settings: WechatSettings,
        tokens: TokenStore,
        *,
        clock: Any = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not settings.app_id or not settings.app_secret.get_secret_value():
            raise ValueError("wechat.enabled needs wechat.app_id and wechat.app_secret")
        self._settings = settings
        self._tokens = tokens
        self._http = httpx.AsyncClient(
            base_url=settings.base_url, timeout=settings.timeout_s, transport=transport
        )
        self.token_fetches = 0

    async def fetch_token(self) -> tuple[str, int]:
        """Ask WeChat for a new access token: (token, expires_in seconds)."""
        self.token_fetches += 1
        try:
            r = await self._http.get(
                "/cgi-bin/token",
                params={
                    "grant_type": "client_credential",
                    "appid": self._settings.app_id,
                    "secret": self._settings.app_secret.get_secret_value(),
                },
            )
        except httpx.HTTPError as exc:
            raise TokenError("NETWORK_ERROR", type(exc).__name__, outage=True) from exc
        if r.status_code >= 500:
            raise TokenError(f"HTTP_{r.status_code}", "token endpoint failed", outage=True)
        body = r.json()
        token = body.get("access_token")
        if not token:
            raise TokenError(
                str(body.get("errcode", "NO_TOKEN")), str(body.get("errmsg", "")), outage=False
            )
        return str(token), int(body.get("expires_in", 7200))

    async def _token(self, stale: str | None = None) -> str:
        margin = timedelta(seconds=self._settings.token_refresh_margin_s)
        return await self._tokens.refresh(
            self._settings.app_id, stale=stale, fetch=self.fetch_token, margin=margin
        )

    async def send(self, message: WechatMessage) -> SendResult:
        log = _log.bind(template_id=message.template_id, out_id=message.out_id)
        try:
            token = await self._token()
            body, status = await self._post(token, message)
            if status < 500 and int(body.get("errcode", 0)) in TOKEN_INVALID:
                log.info("wechat_token_rejected", errcode=body.get("errcode"))
                await self._tokens.invalidate(self._settings.app_id, token)
                token = await self._token(stale=token)
                body, status = await self._post(token, message)
        except TokenError as exc:
            return self._result(log, False, exc.code, exc.message, True, outage=exc.outage)
        except (httpx.HTTPError, TimeoutError) as exc:
            return self._result(log, False, "NETWORK_ERROR", type(exc).__name__, True, outage=True)
        if status >= 500:
            return self._result(log, False, f"HTTP_{status}", "server error", True, outage=True)
        errcode = int(body.get("errcode", 0))
        errmsg = str(body.get("errmsg", "")).replace(message.openid, "<openid>")
        if errcode == 0:
            msgid = body.get("msgid")
            log.info("wechat_sent", msgid=msgid)
            return SendResult(
                ok=True,
                provider=self.name,
                provider_message_id=str(msgid) if msgid is not None else None,
                code="0",
                message=errmsg or "ok",
                retryable=False,
            )
        retryable = errcode in RETRYABLE or errcode in TOKEN_INVALID
        return self._result(log, False, str(errcode), errmsg, retryable)

    async def find_sent(self, query: SentQuery) -> Lookup:
        """Template and subscribe messages have no query API: an attempt whose sender died
        mid-call cannot be checked (the dispatcher falls back to `dispatch.resend_uncertain`)."""
        return Lookup.unsupported("WeChat has no API to look a sent message up")

    async def _post(self, token: str, message: WechatMessage) -> tuple[dict[str, Any], int]:
        data = {k: {"value": v} for k, v in message.params.items()}
        payload: dict[str, Any] = {
            "touser": message.openid,
            "template_id": message.template_id,
            "data": data,
        }
        if self._settings.mode == "template":
            path = "/cgi-bin/message/template/send"
            if self._settings.link_url:
                payload["url"] = self._settings.link_url
        else:
            path = "/cgi-bin/message/subscribe/bizsend"
            if self._settings.link_url:
                payload["page"] = self._settings.link_url
        async with asyncio.timeout(self._settings.timeout_s * 2):
            r = await self._http.post(path, params={"access_token": token}, json=payload)
        if r.status_code >= 500:
            return {}, r.status_code
        body: dict[str, Any] = r.json()
        return body, r.status_code

    def _result(
        self, log: Any, ok: bool, code: str, text: str, retryable: bool, *, outage: bool = False
    ) -> SendResult:
        log.warning("wechat_send_failed", code=code, error=text, retryable=retryable)
        return SendResult(
            ok=ok,
            provider=self.name,
            provider_message_id=None,
            code=code,
            message=text,
            retryable=retryable,
            outage=outage,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
