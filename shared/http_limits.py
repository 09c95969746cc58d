"""Request body size limits, before anything parses the body: 413 with a clear message (pure
ASGI: by Content-Length, or counted while streaming).

Every service mounts it through `shared.http.install_common` (its own limit from its settings);
`install_body_limit` is the one place that does it, for any other app (the console)."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 64 * 1024
BodyOverrides = list[tuple[str, int]]


class BodySizeLimit:
    """Pure ASGI middleware. Bodies over the limit (by Content-Length, or counted while
    streaming) get 413; the application never sees them."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, overrides: list[tuple[str, int]] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = [(re.compile(p), n) for p, n in (overrides or [])]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.overrides:
            if pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_body_limit(
    app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES, overrides: BodyOverrides | None = None
) -> None:
    """Mount `BodySizeLimit` on a Starlette/FastAPI app: `max_bytes` for any request, and
    `overrides` (a full-match path pattern, its own limit) for the few that take more."""
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes, overrides=overrides or [])


async def _too_large(send: Send, limit: int) -> None:
    body: dict[str, Any] = {
        "error": "payload_too_large",
        "message": f"The request body is larger than the limit of {limit} bytes.",
    }
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
