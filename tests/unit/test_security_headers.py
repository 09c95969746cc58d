"""Security headers (issue 14): every service and the console send a Content-Security-Policy,
`X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and a Referrer-Policy — on JSON
answers, errors, the docs page and the console's pages — and the console's pages need no
inline script or style to work under their policy.

The apps are built as `tools.contracts` builds them (default settings, nothing started): the
answers checked here (health, 404, /docs, the sign-in page) touch neither Kafka nor
PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from console.app import build_app as build_console
from console.settings import ConsoleSettings

ROOT = Path(__file__).resolve().parents[2]


def _intake() -> FastAPI:
    from services.intake.app import build_app
    from services.intake.settings import IntakeSettings

    return build_app(IntakeSettings())


def _routing() -> FastAPI:
    from services.routing.app import build_app
    from services.routing.settings import RoutingSettings

    return build_app(RoutingSettings())


def _notification() -> FastAPI:
    from services.notification.app import build_app
    from services.notification.settings import NotificationSettings

    return build_app(NotificationSettings())


def _evaluation() -> FastAPI:
    from services.evaluation.app import build_app
    from services.evaluation.settings import EvaluationSettings

    return build_app(EvaluationSettings())


SERVICES: dict[str, Callable[[], FastAPI]] = {
    "intake": _intake,
    "routing": _routing,
    "notification": _notification,
    "evaluation": _evaluation,
}


def directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_common(response: httpx.Response) -> dict[str, list[str]]:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] in ("no-referrer", "same-origin")
    policy = directives(headers["content-security-policy"])
    assert policy["frame-ancestors"] == ["'none'"]
    return policy


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        return await http.get(path)


@pytest.mark.parametrize("service", list(SERVICES))
async def test_every_service_sends_the_headers(service: str):
    app = SERVICES[service]()
    for path, status in (("/health/live", 200), ("/api/v1/no-such-thing", 404)):
        answer = await get(app, path)
        assert answer.status_code == status, (path, answer.text)
        policy = assert_common(answer)
        assert policy["default-src"] == ["'none'"], (path, policy)  # JSON loads nothing
        assert "script-src" not in policy
    openapi = await get(app, "/openapi.json")
    assert directives(openapi.headers["content-security-policy"])["default-src"] == ["'none'"]


@pytest.mark.parametrize("service", list(SERVICES))
async def test_the_docs_page_gets_a_policy_that_lets_swagger_ui_load(service: str):
    """/docs has its own policy: Swagger UI's bundle from jsDelivr, and the page's one inline
    bootstrap script admitted by its hash — never 'unsafe-inline' for scripts."""
    answer = await get(SERVICES[service](), "/docs")
    assert answer.status_code == 200
    policy = assert_common(answer)
    inline = re.findall(r"<script>(.*?)</script>", answer.text, re.DOTALL)
    assert len(inline) == 1  # FastAPI's SwaggerUIBundle(...) call
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy["script-src"]
    assert "https://cdn.jsdelivr.net" in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "https://cdn.jsdelivr.net" in policy["style-src"]
    assert policy["connect-src"] == ["'self'"]  # it reads /openapi.json
    assert answer.headers["content-length"] == str(len(answer.content))


async def test_the_console_sends_the_headers_on_pages_static_files_and_json():
    app = build_console(ConsoleSettings())
    for path, status in (
        ("/login", 200),
        ("/static/console.css", 200),
        ("/static/pipeline.js", 200),
        ("/health/live", 200),
        ("/api/pipeline", 401),
    ):
        answer = await get(app, path)
        assert answer.status_code == status, path
        policy = assert_common(answer)
        assert answer.headers["referrer-policy"] == "same-origin"
        assert policy["default-src"] == ["'none'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["form-action"] == ["'self'"]
        assert "'unsafe-inline'" not in answer.headers["content-security-policy"]


def test_console_templates_have_no_inline_script_or_style():
    """What the page policy would block: inline <script>, <style>, style="", on…="" handlers."""
    forbidden = {
        "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
        "style element": re.compile(r"<style\b", re.I),
        "style attribute": re.compile(r"\sstyle\s*=", re.I),
        "event handler": re.compile(r"\son[a-z]+\s*=", re.I),
        "javascript: URL": re.compile(r"javascript:", re.I),
    }
    templates = sorted((ROOT / "console" / "templates").glob("*.html"))
    assert templates
    found = [
        f"{path.name}: {what}"
        for path in templates
        for what, pattern in forbidden.items()
        if pattern.search(path.read_text("utf-8"))
    ]
    assert found == []
