"""HTTP pieces every service mounts: health, metrics, error shapes, RED metrics."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog
from asyncpg.exceptions import CharacterNotInRepertoireError, UntranslatableCharacterError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http_errors import complete_error_responses
from shared.http_limits import (
    DEFAULT_MAX_BODY_BYTES,
    BodyOverrides,
    BodySizeLimit,
    install_body_limit,
)
from shared.metrics import HTTP_REQUESTS, HTTP_SECONDS

log = structlog.get_logger(__name__)
CORRELATION_HEADER = "X-Correlation-Id"
# Where each (service, method, route path, status) answered is appended, when set (the test
# suite sets it, and checks every status it saw against docs/openapi). Not a `MINYI_<SERVICE>__`
# setting: tests only, and passed as is to service processes.
OBSERVED_STATUSES_ENV = "OBSERVED_STATUSES_FILE"

ReadyCheck = Callable[[], Awaitable[dict[str, str]]]

# Errors of the world, not of the request: answered 503 with Retry-After, not 500.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)
RETRY_AFTER_UNAVAILABLE_S = 5


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_common(
    app: FastAPI,
    *,
    service: str,
    ready: ReadyCheck,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_overrides: BodyOverrides | None = None,
) -> None:
    """Add /health/live, /health/ready, /metrics, clear 4xx bodies, no stack traces to clients,
    and the request body limit (413 beyond `max_body_bytes`, before anything parses a body)."""

    @app.get("/health/live", tags=["health"], summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/health/ready",
        tags=["health"],
        summary="Kafka and PostgreSQL answer",
        responses={
            503: {
                "description": "Kafka or PostgreSQL does not answer: `status` unavailable, "
                "`checks` says which.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def ready_route() -> JSONResponse:
        checks = await ready()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "service": service, "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": _field_path(e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(
            {
                "error": "validation_failed",
                "message": f"Invalid request — {summary}",
                "fields": fields,
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
        body.setdefault("error", _error_name(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(CharacterNotInRepertoireError)
    @app.exception_handler(UntranslatableCharacterError)
    async def on_unstorable_text(request: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL stores no NUL (U+0000) in text: such a request is invalid, not our fault.
        return JSONResponse(
            {
                "error": "validation_failed",
                "message": "Invalid request — a text value contains a character that cannot "
                "be stored (e.g. NUL, U+0000).",
            },
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, UNAVAILABLE_ERRORS):
            # The database or broker is out of reach for a moment (restart, network): the
            # request did not go through; a retry will (with the same Idempotency-Key where
            # the endpoint takes one, it is never recorded twice).
            log.warning("request_dependency_unavailable", path=request.url.path, error=repr(exc))
            return JSONResponse(
                {
                    "error": "service_unavailable",
                    "message": "The service cannot reach its database right now; "
                    "please try again in a few seconds.",
                },
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
            )
        log.exception("unhandled_request_error", path=request.url.path)
        return JSONResponse(
            {"error": "internal_error", "message": "Something went wrong on our side; try again."},
            status_code=500,
        )

    install_body_limit(app, max_body_bytes, body_overrides)  # inside RedMetrics: 413s counted
    app.add_middleware(RedMetrics, service=service)
    install_error_documentation(app)


def install_error_documentation(app: FastAPI) -> None:
    """The app's OpenAPI declares, besides each route's `errors(...)`, what its shape implies
    (shared/http_errors.py), read when the document is first made (all routes included)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            middleware: list[object] = [m.cls for m in app.user_middleware]
            body_limit = BodySizeLimit in middleware
            app.openapi_schema = complete_error_responses(make(), app.routes, body_limit=body_limit)
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010 - FastAPI's documented override


class RedMetrics:
    """Rate, errors, duration per route, and the request's correlation id: pure ASGI (no
    per-request task group, unlike `BaseHTTPMiddleware`, which cost a quarter of intake's CPU).

    One id finds everything about an opinion: taken from the caller (if it is a UUID), replaced
    by a handler that knows the opinion's own (`request.state.correlation_id`), bound to every
    log line of the request and returned in the response header."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service
        self.observed = ObservedStatuses.from_environment(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        header = _header(scope, CORRELATION_HEADER_BYTES)
        correlation_id = _uuid_or_none(header) or str(uuid4())
        state = scope.setdefault("state", {})
        state["correlation_id"] = correlation_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers[CORRELATION_HEADER] = str(state.get("correlation_id", correlation_id))
            await send(message)

        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            HTTP_SECONDS.labels(self.service, method, path).observe(time.perf_counter() - started)
            if self.observed is not None and route is not None:
                self.observed.record(scope, route, method, status)


class ObservedStatuses:
    """Appends `service method path status` lines (tab-separated) to a file, each once per
    process: O_APPEND writes of one short line, so several processes can share the file."""

    def __init__(self, service: str, path: str) -> None:
        self.service = service
        self.path = path
        self.seen: set[tuple[str, str, int]] = set()
        self.templates: dict[Callable[..., Any], str] | None = None

    @classmethod
    def from_environment(cls, service: str) -> ObservedStatuses | None:
        path = os.environ.get(OBSERVED_STATUSES_ENV)
        return cls(service, path) if path else None

    def template(self, scope: Scope, route: Any) -> str:
        """The route's path as the OpenAPI document names it. (The route in the scope of a
        router included in an included router lacks the outer prefix: found by endpoint.)"""
        if self.templates is None:
            app = scope.get("app")
            routes = getattr(app, "routes", [])
            self.templates = {
                context.original_route.endpoint: context.path_format or ""
                for context in iter_route_contexts(routes)
                if isinstance(context.original_route, APIRoute)
            }
        endpoint: Callable[..., Any] | None = getattr(route, "endpoint", None)
        found = self.templates.get(endpoint) if endpoint is not None else None
        return found or str(getattr(route, "path_format", "unmatched"))

    def record(self, scope: Scope, route: Any, method: str, status: int) -> None:
        path = self.template(scope, route)
        key = (method, path, status)
        if key in self.seen:
            return
        self.seen.add(key)
        line = f"{self.service}\t{method}\t{path}\t{status}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


CORRELATION_HEADER_BYTES = CORRELATION_HEADER.lower().encode("latin-1")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _uuid_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(UUID(value))
    except ValueError:
        return None


def _error_name(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        413: "payload_too_large",
        422: "validation_failed",
        429: "too_many_requests",
    }.get(status, "error")
