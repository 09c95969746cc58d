import importlib
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

import shared.cli
from shared.auth import (
    AuthSettings,
    InvalidToken,
    MissingAuthSecret,
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


# --- slice "secrets": no built-in signing key, an audience on every token ---------------------

# The key that was built into shared/auth.py (published with the source): a token it signs
# must open nothing.
OLD_BUILT_IN_KEY = "minyi-dev-secret-change-me-in-production-0123456789"
SERVICES = ("intake", "routing", "notification", "evaluation")


def _no_secret_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINYI_AUTH_SECRET", raising=False)
    monkeypatch.delenv("MINYI_AUTH_SECRET_FILE", raising=False)


def _as_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment's environment: the prod profile, none of the harness's dev settings."""
    monkeypatch.setenv("MINYI_PROFILE", "prod")
    monkeypatch.delenv("MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS", raising=False)


def test_without_a_secret_there_is_no_key_and_no_token_dependency(monkeypatch):
    _no_secret_in_env(monkeypatch)
    settings = AuthSettings()
    assert settings.secret is None
    with pytest.raises(MissingAuthSecret, match="MINYI_AUTH_SECRET"):
        settings.signing_key()
    with pytest.raises(MissingAuthSecret, match="MINYI_AUTH_SECRET"):
        principal_dependency(settings)
    with pytest.raises(MissingAuthSecret):
        issue_token(settings, Principal("a", Role.ADMIN))


def _serve(service: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, list[object]]:
    """`python -m services.<service> serve`, in-process, up to the point it would listen."""
    listened: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: listened.append(app))
    monkeypatch.setattr(shared.cli, "configure_logging", lambda *a, **kw: None)
    cli = importlib.import_module(f"services.{service}.__main__").cli
    result = CliRunner().invoke(cli, ["serve"])
    return result.exit_code, result.output, listened


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_refuses_to_start_without_a_secret_and_says_why(service, monkeypatch):
    _as_deployed(monkeypatch)
    _no_secret_in_env(monkeypatch)
    code, output, listened = _serve(service, monkeypatch)
    assert (code, listened) == (2, [])
    assert f"{service}: refusing to start: no token signing key" in output
    assert "MINYI_AUTH_SECRET" in output


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_refuses_a_short_secret_and_starts_with_a_good_one(service, monkeypatch):
    _as_deployed(monkeypatch)
    monkeypatch.setenv("MINYI_AUTH_SECRET", "k" * 31)
    code, output, listened = _serve(service, monkeypatch)
    assert (code, listened) == (2, [])
    assert "is 31 bytes; it needs at least 32" in output
    monkeypatch.setenv("MINYI_AUTH_SECRET", "k" * 32)
    code, output, listened = _serve(service, monkeypatch)
    assert code == 0, output
    assert len(listened) == 1  # it got as far as listening


@pytest.mark.parametrize(
    ("secret", "accepted"),
    [
        ("k" * 31, False),
        ("k" * 32, True),
        ("民意" * 5 + "x" * 1, False),  # 11 characters, 31 bytes: bytes count, not characters
        ("民意" * 5 + "xy", True),  # 32 bytes
        ("", False),
        (OLD_BUILT_IN_KEY, False),  # long enough, but published
    ],
)
def test_the_secret_needs_32_bytes_and_not_a_published_one(secret, accepted):
    if accepted:
        assert AuthSettings(secret=secret).signing_key() == secret
    else:
        with pytest.raises(ValidationError, match="MINYI_AUTH_SECRET"):
            AuthSettings(secret=secret)


def test_the_secret_can_come_from_a_file(tmp_path, monkeypatch):
    _no_secret_in_env(monkeypatch)
    key = "f" * 40
    path = tmp_path / "auth-secret"
    path.write_text(key + "\n")  # as `echo` or an editor leaves it
    monkeypatch.setenv("MINYI_AUTH_SECRET_FILE", str(path))
    assert AuthSettings().signing_key() == key
    monkeypatch.setenv("MINYI_AUTH_SECRET", "e" * 40)
    with pytest.raises(ValidationError, match="not both"):
        AuthSettings()
    monkeypatch.delenv("MINYI_AUTH_SECRET")
    monkeypatch.setenv("MINYI_AUTH_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="MINYI_AUTH_SECRET_FILE: cannot read"):
        AuthSettings()


def _forged(key: str, **claims: object) -> str:
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    body = {"iss": "minyi", "sub": "x", "role": "admin", "iat": now, "exp": later}
    return jwt.encode({**body, **claims}, key, algorithm="HS256")


def test_tokens_name_their_audience_and_others_are_refused():
    token = issue_token(SETTINGS, Principal("c", Role.COMMITTEE))
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "minyi"
    key = SETTINGS.signing_key()
    for bad in (_forged(key), _forged(key, aud="someone-else"), _forged(OLD_BUILT_IN_KEY)):
        with pytest.raises(InvalidToken):
            verify_token(SETTINGS, bad)
    assert verify_token(SETTINGS, _forged(key, aud="minyi")).role is Role.ADMIN  # the control


def _in_process_apps() -> dict[str, tuple[FastAPI, str]]:
    """routing, notification and evaluation as built for serving (no lifespan: nothing here
    reaches the database), each with a route only staff may read."""
    from services.evaluation.app import build_app as evaluation_app
    from services.evaluation.settings import EvaluationSettings
    from services.notification.app import build_app as notification_app
    from services.notification.settings import NotificationSettings
    from services.routing.app import build_app as routing_app
    from services.routing.settings import RoutingSettings

    case = "/api/v1/cases/00000000-0000-4000-8000-000000000001"
    return {
        "routing": (routing_app(RoutingSettings()), "/api/v1/worklist"),
        "notification": (notification_app(NotificationSettings()), f"{case}/deliveries"),
        "evaluation": (evaluation_app(EvaluationSettings()), case),
    }


def test_a_token_signed_with_the_old_built_in_key_opens_nothing():
    """The services run with the session's key (as any deployment runs with its own): the key
    once in the source, or a token without our audience, gets 401; a real voter's token gets
    through verification to the role check (403), so the 401s are about the token."""
    key = AuthSettings().signing_key()
    assert key != OLD_BUILT_IN_KEY
    voter = issue_token(AuthSettings(), Principal("v", Role.VOTER))
    for name, (app, path) in _in_process_apps().items():
        client = TestClient(app)
        for label, token in (
            ("old key", _forged(OLD_BUILT_IN_KEY)),
            ("old key, our audience", _forged(OLD_BUILT_IN_KEY, aud="minyi")),
            ("our key, no audience", _forged(key)),
            ("our key, another audience", _forged(key, aud="minyi-console")),
        ):
            got = client.get(path, headers={"authorization": f"Bearer {token}"})
            assert got.status_code == 401, (name, label, got.text)
        got = client.get(path, headers={"authorization": f"Bearer {voter}"})
        assert got.status_code == 403, (name, got.text)
