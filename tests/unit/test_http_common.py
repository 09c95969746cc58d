from uuid import UUID, uuid4

from asyncpg.exceptions import CharacterNotInRepertoireError
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.http import CORRELATION_HEADER, install_common


class Body(BaseModel):
    name: str


def _client(ready: dict[str, str]) -> TestClient:
    app = FastAPI()

    async def check() -> dict[str, str]:
        return ready

    install_common(app, service="test", ready=check)

    @app.post("/things")
    async def create(body: Body, request: Request) -> dict[str, str]:
        request.state.correlation_id = "6a1f2c3e-0000-4000-8000-000000000001"
        return {"name": body.name}

    @app.get("/nul")
    async def nul() -> None:
        raise CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/db-gone")
    async def db_gone() -> None:
        raise ConnectionRefusedError("connect to 10.0.0.5:5432 refused")

    return TestClient(app, raise_server_exceptions=False)


def test_readiness_reports_each_check():
    assert _client({"postgres": "ok", "kafka": "ok"}).get("/health/ready").status_code == 200
    down = _client({"postgres": "ok", "kafka": "down"}).get("/health/ready")
    assert down.status_code == 503
    assert down.json()["checks"]["kafka"] == "down"


def test_validation_errors_name_the_field():
    answer = _client({}).post("/things", json={"nom": "x"})
    assert answer.status_code == 422
    assert answer.json()["fields"][0]["field"] == "name"


def test_unexpected_errors_hide_the_stack_trace():
    answer = _client({}).get("/boom")
    assert answer.status_code == 500
    assert "secret internals" not in answer.text
    assert answer.json()["error"] == "internal_error"


def test_an_unreachable_database_is_a_503_to_retry_not_a_500():
    answer = _client({}).get("/db-gone")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json()["error"] == "service_unavailable"
    assert "10.0.0.5" not in answer.text


def test_correlation_id_is_echoed_generated_or_set_by_the_handler():
    client = _client({})
    mine = str(uuid4())
    assert (
        client.get("/health/live", headers={CORRELATION_HEADER: mine}).headers[CORRELATION_HEADER]
        == mine
    )
    generated = client.get("/health/live", headers={CORRELATION_HEADER: "not-a-uuid\r\nX: y"})
    assert UUID(generated.headers[CORRELATION_HEADER])
    created = client.post("/things", json={"name": "x"})
    assert created.headers[CORRELATION_HEADER] == "6a1f2c3e-0000-4000-8000-000000000001"


def test_metrics_are_exposed():
    text = _client({}).get("/metrics").text
    assert "minyi_http_requests_total" in text


def test_text_postgresql_cannot_store_is_a_422_not_a_500():
    answer = _client({}).get("/nul")
    assert answer.status_code == 422
    assert "NUL" in answer.json()["message"]
