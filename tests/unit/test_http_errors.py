"""The error documentation: `errors(...)`, what a route's shape implies, the committed docs."""

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query
from fastapi.openapi.utils import get_openapi

from services.evaluation.settings import LimitSettings
from services.intake.app import build_app as build_intake
from services.intake.settings import IntakeSettings, RateLimitSettings
from shared.auth import AuthSettings, Principal, Role, principal_dependency, require_roles
from shared.http import install_common
from shared.http_errors import complete_error_responses, errors

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def test_errors_gives_each_status_the_error_body_its_headers_and_503():
    declared = errors(404, 429, notes={404: "No such case."})
    assert sorted(declared) == [404, 429, 503]
    assert declared[404]["description"] == "No such case."
    assert declared[404]["model"].__name__ == "ErrorBody"
    assert "Retry-After" in declared[429]["headers"]
    assert "Retry-After" in declared[503]["headers"]
    assert sorted(errors(403, database=False)) == [403]


def _app() -> FastAPI:
    """A hand-made app through `install_common` (which mounts the body limit: 413)."""
    app = FastAPI()

    async def ready() -> dict[str, str]:
        return {}

    install_common(app, service="test", ready=ready)
    current = principal_dependency(AuthSettings())
    staff = require_roles(current, Role.OPERATOR)
    router = APIRouter()

    @router.get("/public/{code}")
    async def public(code: str) -> dict[str, str]:
        return {}

    @router.get("/signed-in", responses=errors(404))
    async def signed_in(who: Annotated[Principal, Depends(current)]) -> dict[str, str]:
        return {}

    @router.post("/staff/{number}")
    async def staff_only(
        number: int,
        who: Annotated[Principal, Depends(staff)],
        note: Annotated[str, Body(embed=True)],
    ) -> dict[str, str]:
        return {}

    @router.get("/search")
    async def search(q: Annotated[str, Query(max_length=5)] = "") -> dict[str, str]:
        return {}

    app.include_router(router)
    return app


def _statuses(document: dict[str, Any], path: str, method: str) -> list[str]:
    return sorted(document["paths"][path][method]["responses"])


def test_what_a_route_s_shape_implies_is_added_and_nothing_else():
    app = _app()
    document = app.openapi()
    # A plain text path parameter cannot fail: no 422 (FastAPI would have guessed one).
    assert _statuses(document, "/public/{code}", "get") == ["200"]
    # A token dependency: 401; the declared 404 and 503 as given.
    assert _statuses(document, "/signed-in", "get") == ["200", "401", "404", "503"]
    # A role guard on top of it: 403; a body: 400 (unparsable), 422 and, with the app's body
    # limit, 413.
    staff = _statuses(document, "/staff/{number}", "post")
    assert staff == ["200", "400", "401", "403", "413", "422"]
    # A constrained query parameter can fail.
    assert _statuses(document, "/search", "get") == ["200", "422"]
    # Without a body limit in front of the app, no 413.
    bare = complete_error_responses(
        get_openapi(title="t", version="1", routes=app.routes), app.routes, body_limit=False
    )
    assert "413" not in _statuses(bare, "/staff/{number}", "post")
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ErrorBody" in schemas
    implied = document["paths"]["/staff/{number}"]["post"]["responses"]["422"]
    assert implied["content"]["application/json"]["schema"] == ERROR_BODY


def test_every_error_in_the_committed_documents_has_the_error_body():
    for path in sorted(DOCS.glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        assert "HTTPValidationError" not in document["components"]["schemas"], path.name
        for route, operations in document["paths"].items():
            if route.startswith("/health"):
                continue
            for method, operation in operations.items():
                for status, response in operation["responses"].items():
                    if status[0] in "45":
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == ERROR_BODY, (path.name, method, route, status)


def _description(document: dict[str, Any], path: str, method: str, status: str) -> str:
    operation = document["paths"][path][method]
    return f"{operation.get('description', '')} {operation['responses'][status]['description']}"


def test_the_public_routes_describe_their_limits_from_the_settings():
    intake = json.loads((DOCS / "intake.json").read_text("utf-8"))
    defaults = RateLimitSettings()
    form = _description(intake, "/api/v1/opinions", "post", "429")
    assert defaults.per_address in form
    assert defaults.per_phone in form
    assert "MINYI_INTAKE__RATE_LIMIT__PER_ADDRESS" in form
    receipt = _description(intake, "/api/v1/receipts/{receipt_code}", "get", "429")
    assert defaults.per_address in receipt
    assert "shared by the online form" in receipt
    wechat = _description(intake, "/api/v1/wechat/callback", "post", "429")
    assert defaults.per_phone in wechat
    assert defaults.per_address in wechat
    evaluation = json.loads((DOCS / "evaluation.json").read_text("utf-8"))
    rating = _description(evaluation, "/api/v1/ratings/{token}", "post", "429")
    assert LimitSettings().per_address in rating
    # A deployment's own /docs shows its own numbers.
    app = build_intake(
        IntakeSettings(rate_limit=RateLimitSettings(per_address="7/minute", per_phone="3/day"))
    )
    live = app.openapi()
    assert "7/minute" in _description(live, "/api/v1/receipts/{receipt_code}", "get", "429")
    assert "3/day" in _description(live, "/api/v1/opinions", "post", "429")
