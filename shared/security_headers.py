"""Security headers on every response: one pure-ASGI middleware the four services and the
console mount (`app.add_middleware(SecurityHeaders)`; the console passes its page policy).

* `Content-Security-Policy`: for the JSON APIs `default-src 'none'` (a JSON answer loads
  nothing); for the console's pages `self` only (no inline script or style); for FastAPI's
  `/docs` and `/redoc` (Swagger UI and ReDoc from the jsDelivr CDN) a policy of their own that
  allows exactly what they load, with the inline bootstrap `<script>` admitted by its SHA-256
  hash, computed from the page itself — no `'unsafe-inline'` for scripts.
* `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` (and `frame-ancestors 'none'`),
  `Referrer-Policy`.

A header the application already set is kept (a route may know better).
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The server-rendered console: its own stylesheet and scripts, forms posting to itself.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# FastAPI's /docs (Swagger UI) and /redoc (ReDoc) load their bundles from jsDelivr, fonts from
# Google (ReDoc), the favicon from fastapi.tiangolo.com, and read /openapi.json.
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_POLICY = (
    "default-src 'none'; script-src {scripts}; "
    f"style-src 'unsafe-inline' {DOCS_CDN} https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    f"img-src 'self' data: https://fastapi.tiangolo.com {DOCS_CDN}; "
    "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
DOCS_PREFIXES = ("/docs", "/redoc")
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)


def inline_script_hashes(html: bytes) -> list[str]:
    """`'sha256-…'` CSP sources of the page's inline `<script>` elements, in order."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}'"
        for body in _INLINE_SCRIPT.findall(html)
    ]


def docs_policy(html: bytes) -> str:
    return DOCS_POLICY.format(scripts=" ".join([DOCS_CDN, *inline_script_hashes(html)]))


class SecurityHeaders:
    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: str = API_POLICY,
        referrer_policy: str = "no-referrer",
        docs_prefixes: tuple[str, ...] = DOCS_PREFIXES,
    ) -> None:
        self.app = app
        self.fixed = [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", referrer_policy),
        ]
        self.policy = policy
        self.docs_prefixes = docs_prefixes

    def _add(self, message: Message, policy: str) -> None:
        headers = MutableHeaders(scope=message)
        for name, value in [*self.fixed, ("Content-Security-Policy", policy)]:
            if name not in headers:
                headers[name] = value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self.docs_prefixes and path.startswith(self.docs_prefixes):
            await self._docs(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add(message, self.policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The docs pages are small HTML: held until complete, so that the policy can name
        the hashes of their inline scripts."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            self._add(start, docs_policy(body))
            headers = MutableHeaders(scope=start)
            if "content-length" in headers:
                headers["content-length"] = str(len(body))
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, hold)
