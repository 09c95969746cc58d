"""The session-end contract check: what the services answered vs what their OpenAPI declares."""

from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient

from shared.http import OBSERVED_STATUSES_ENV, install_common
from tests.observed_statuses import Observed, read_observations, undeclared

SPEC: dict[str, Any] = {
    "paths": {
        "/api/v1/cases/{case_id}": {
            "get": {"responses": {"200": {}, "404": {}}},
            "post": {"responses": {"200": {}, "4XX": {}}},
        },
        "/api/v1/reports": {"post": {"responses": {"default": {}}}},
    }
}


def test_an_undeclared_status_is_reported_and_declared_ones_are_not():
    seen = {
        Observed("routing", "GET", "/api/v1/cases/{case_id}", 200),
        Observed("routing", "GET", "/api/v1/cases/{case_id}", 404),
        Observed("routing", "HEAD", "/api/v1/cases/{case_id}", 200),  # checked as GET
        Observed("routing", "GET", "/api/v1/cases/{case_id}", 409),  # undeclared
        Observed("routing", "POST", "/api/v1/cases/{case_id}", 403),  # 4XX
        Observed("routing", "POST", "/api/v1/cases/{case_id}", 503),  # undeclared
        Observed("routing", "POST", "/api/v1/reports", 500),  # default
        Observed("routing", "DELETE", "/api/v1/cases/{case_id}", 200),  # no such operation
        Observed("routing", "PUT", "/api/v1/cases/{case_id}", 405),  # unmatched method
        Observed("routing", "GET", "/api/v1/cases/{case_id}", 405),  # a real GET's 405
        Observed("routing", "GET", "/api/v1/elsewhere", 200),  # no such path
        Observed("routing", "GET", "/health/ready", 503),  # out of scope
        Observed("routing", "GET", "/metrics", 200),  # out of scope
        Observed("console", "GET", "/", 500),  # no document: out of scope
    }
    assert undeclared(seen, {"routing": SPEC}) == [
        Observed("routing", "DELETE", "/api/v1/cases/{case_id}", 200),
        Observed("routing", "GET", "/api/v1/cases/{case_id}", 405),
        Observed("routing", "GET", "/api/v1/cases/{case_id}", 409),
        Observed("routing", "GET", "/api/v1/elsewhere", 200),
        Observed("routing", "POST", "/api/v1/cases/{case_id}", 503),
    ]


def test_the_file_is_read_line_by_line_and_a_missing_file_is_nothing(tmp_path: Path):
    path = tmp_path / "observed.tsv"
    assert read_observations(path) == set()
    path.write_text(
        "intake\tPOST\t/api/v1/opinions\t201\n"
        "intake\tPOST\t/api/v1/opinions\t201\n"
        "intake\tGET\t/api/v1/receipts/{receipt_code}\t404\n"
        "half a line\n",
        "utf-8",
    )
    assert read_observations(path) == {
        Observed("intake", "POST", "/api/v1/opinions", 201),
        Observed("intake", "GET", "/api/v1/receipts/{receipt_code}", 404),
    }


def test_the_services_record_each_route_template_and_status_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Server side, by route template — a router included in an included router too (whose
    route, in the request's scope, lacks the outer prefix)."""
    path = tmp_path / "observed.tsv"
    monkeypatch.setenv(OBSERVED_STATUSES_ENV, str(path))
    app = FastAPI()

    async def ready() -> dict[str, str]:
        return {}

    install_common(app, service="intake", ready=ready)
    outer, inner = APIRouter(prefix="/api/v1"), APIRouter(prefix="/wechat")

    @outer.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        if thing_id == 0:
            raise HTTPException(404, detail={"message": "No thing 0."})
        return {"id": thing_id}

    @inner.get("/callback")
    async def callback() -> dict[str, str]:
        return {}

    outer.include_router(inner)
    app.include_router(outer)
    client = TestClient(app)
    for url in ["/api/v1/things/1", "/api/v1/things/2", "/api/v1/things/0", "/api/v1/things/x"]:
        client.get(url)
    client.get("/api/v1/wechat/callback")
    client.get("/nowhere")  # no route: not recorded

    assert path.read_text("utf-8").splitlines() == [
        "intake\tGET\t/api/v1/things/{thing_id}\t200",
        "intake\tGET\t/api/v1/things/{thing_id}\t404",
        "intake\tGET\t/api/v1/things/{thing_id}\t422",
        "intake\tGET\t/api/v1/wechat/callback\t200",
    ]


def test_nothing_is_recorded_without_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(OBSERVED_STATUSES_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    app = FastAPI()

    async def ready() -> dict[str, str]:
        return {}

    install_common(app, service="intake", ready=ready)
    assert TestClient(app).get("/health/live").status_code == 200
    assert list(tmp_path.iterdir()) == []
