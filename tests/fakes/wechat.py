"""A fake WeChat official-account API: access tokens, template and subscribe messages.

* ``GET /cgi-bin/token?grant_type=client_credential&appid=..&secret=..`` →
  ``{"access_token": .., "expires_in": 7200}`` (``--token-ttl`` shortens it);
  ``{"errcode": 40013}`` for an unknown appid, ``40125`` for a wrong secret.
* ``POST /cgi-bin/message/template/send?access_token=..`` and
  ``POST /cgi-bin/message/subscribe/bizsend?access_token=..``, JSON
  ``{"touser", "template_id", "data": {"k": {"value": ..}}, ...}`` →
  ``{"errcode": 0, "errmsg": "ok", "msgid": ..}``; ``40001`` for a token it never issued or
  has revoked, ``42001`` for an expired one, ``40003`` for an empty openid.

Control endpoints: ``GET /_fake/health``, ``GET /_fake/requests`` (delivered messages),
``GET /_fake/attempts``, ``GET /_fake/tokens`` (``{"fetches": n}``), ``POST /_fake/reset``,
``POST /_fake/expire_tokens`` (every issued token now answers 42001), ``POST /_fake/revoke_tokens``
(40001), ``POST /_fake/script {"codes": ["43101", "45009", "HTTP_503", ..]}`` (the next sends
answer so; ``"0"`` = deliver normally).

Run: ``python -m tests.fakes.wechat --port 18082 --app-id wx1 --app-secret s``.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.runner import FakeProcess, add_control_routes

ERRMSG = {
    0: "ok",
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40013: "invalid appid",
    40014: "invalid access_token",
    40125: "invalid appsecret",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
}


class FakeState:
    def __init__(self, app_id: str, app_secret: str, ttl: int) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.ttl = ttl
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token → expires at (monotonic)
        self.fetches = 0
        self.requests: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.script: deque[str] = deque()

    def reset(self) -> None:
        with self.lock:
            self.tokens.clear()
            self.fetches = 0
            self.requests.clear()
            self.attempts.clear()
            self.script.clear()


def _err(code: int) -> JSONResponse:
    return JSONResponse(content={"errcode": code, "errmsg": f"{ERRMSG.get(code, 'error')} rid: x"})


def create_app(app_id: str, app_secret: str, ttl: int = 7200) -> FastAPI:
    state = FakeState(app_id, app_secret, ttl)
    app = FastAPI(title="fake-wechat", openapi_url=None, docs_url=None, redoc_url=None)

    add_control_routes(app, state)

    @app.get("/_fake/tokens")
    async def tokens() -> dict[str, int]:
        with state.lock:
            return {"fetches": state.fetches, "issued": len(state.tokens)}

    @app.post("/_fake/expire_tokens")
    async def expire() -> dict[str, bool]:
        with state.lock:
            for token in state.tokens:
                state.tokens[token] = 0.0
        return {"ok": True}

    @app.post("/_fake/revoke_tokens")
    async def revoke() -> dict[str, bool]:
        with state.lock:
            state.tokens.clear()
        return {"ok": True}

    @app.get("/cgi-bin/token")
    async def token(grant_type: str = "", appid: str = "", secret: str = "") -> JSONResponse:
        if grant_type != "client_credential":
            return _err(40002)
        if appid != state.app_id:
            return _err(40013)
        if secret != state.app_secret:
            return _err(40125)
        issued = uuid.uuid4().hex + uuid.uuid4().hex
        with state.lock:
            state.fetches += 1
            state.tokens[issued] = time.monotonic() + state.ttl
        return JSONResponse(content={"access_token": issued, "expires_in": state.ttl})

    async def send(request: Request, kind: str) -> JSONResponse:
        token = request.query_params.get("access_token", "")
        with state.lock:
            expires = state.tokens.get(token)
        if not token or expires is None:
            return _err(40001)
        if expires <= time.monotonic():
            return _err(42001)
        body = await request.json()
        attempt = {"kind": kind, "received_at": datetime.now(UTC).isoformat()}
        with state.lock:
            scripted = state.script.popleft() if state.script else None
        if scripted is not None and scripted != "0":
            attempt["code"] = scripted
            with state.lock:
                state.attempts.append(attempt)
            if scripted.startswith("HTTP_"):
                return JSONResponse(status_code=int(scripted[5:]), content={})
            return _err(int(scripted))
        if not body.get("touser"):
            return _err(40003)
        msgid = random.randint(10**15, 10**16 - 1)
        attempt["code"] = "0"
        with state.lock:
            state.attempts.append(attempt)
            state.requests.append(
                {
                    "kind": kind,
                    "touser": body.get("touser"),
                    "template_id": body.get("template_id"),
                    "data": body.get("data"),
                    "url": body.get("url"),
                    "page": body.get("page"),
                    "msgid": msgid,
                }
            )
        return JSONResponse(content={"errcode": 0, "errmsg": "ok", "msgid": msgid})

    @app.post("/cgi-bin/message/template/send")
    async def template_send(request: Request) -> JSONResponse:
        return await send(request, "template")

    @app.post("/cgi-bin/message/subscribe/bizsend")
    async def subscribe_send(request: Request) -> JSONResponse:
        return await send(request, "subscribe")

    return app


class FakeWechatServer(FakeProcess):
    module = "tests.fakes.wechat"

    def __init__(
        self, *, app_id: str, app_secret: str, token_ttl: int = 7200, port: int | None = None
    ) -> None:
        super().__init__(
            "--app-id", app_id, "--app-secret", app_secret, "--token-ttl", str(token_ttl), port=port
        )

    def token_fetches(self) -> int:
        fetches: int = httpx.get(f"{self.base_url}/_fake/tokens").json()["fetches"]
        return fetches

    def expire_tokens(self) -> None:
        httpx.post(f"{self.base_url}/_fake/expire_tokens").raise_for_status()

    def revoke_tokens(self) -> None:
        httpx.post(f"{self.base_url}/_fake/revoke_tokens").raise_for_status()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Fake WeChat official-account API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18082)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--token-ttl", type=int, default=7200)
    args = parser.parse_args(argv)
    app = create_app(args.app_id, args.app_secret, args.token_ttl)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
