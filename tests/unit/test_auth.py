from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shared.auth import (
    AuthSettings,
    InvalidToken,
    Principal,
    Role,
    issue_token,
    principal_dependency,
    require_roles,
    verify_token,
)

SETTINGS = AuthSettings(secret="unit-test-secret-0123456789abcdef0123456789")


def _app() -> FastAPI:
    app = FastAPI()
    current = principal_dependency(SETTINGS)
    committee_only = require_roles(current, Role.COMMITTEE, Role.ADMIN)

    @app.get("/who")
    async def who(principal: Annotated[Principal, Depends(current)]) -> dict[str, str]:
        return {"role": principal.role.value}

    @app.get("/committee")
    async def committee(principal: Annotated[Principal, Depends(committee_only)]) -> dict[str, str]:
        return {"subject": principal.subject}

    return app


def _bearer(principal: Principal, **kw) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_token(SETTINGS, principal, **kw)}"}


def test_tokens_round_trip_and_carry_scope():
    p = Principal("clerk-1", Role.DEPARTMENT, department_id="transport")
    assert verify_token(SETTINGS, issue_token(SETTINGS, p)) == p


def test_expired_and_forged_tokens_are_refused():
    p = Principal("c", Role.COMMITTEE)
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, issue_token(SETTINGS, p, ttl_s=-1))
    other = AuthSettings(secret="another-secret-0123456789abcdef0123456789ab")
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, issue_token(other, p))


def test_require_roles_lets_only_those_roles_through():
    client = TestClient(_app())
    assert client.get("/who").json() == {"role": "anonymous"}
    assert client.get("/committee").status_code == 401
    department = _bearer(Principal("d", Role.DEPARTMENT, department_id="transport"))
    assert client.get("/committee", headers=department).status_code == 403
    ok = client.get("/committee", headers=_bearer(Principal("c1", Role.COMMITTEE)))
    assert ok.status_code == 200
    assert ok.json() == {"subject": "c1"}
    assert client.get("/who", headers={"authorization": "Bearer nonsense"}).status_code == 401
