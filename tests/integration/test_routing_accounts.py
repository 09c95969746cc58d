"""Routing's accounts by deployment profile (slice "secrets"), on real PostgreSQL and Kafka.

Outside the dev profile `seed` provides one admin from the deployment's secret and no other
account, deactivates accounts a cluster still has with the published development password,
and routing refuses to start while an active account has that password; the `account` command
gives the staff theirs."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from typer.testing import CliRunner, Result

from services.routing.__main__ import cli as routing_cli
from services.routing.accounts import DevPasswordInUse
from services.routing.app import MIGRATIONS, SCHEMA, build_app, check_accounts, seed
from services.routing.settings import AccountSettings, RoutingSettings
from shared.reference import wenling
from shared.settings import DatabaseSettings
from tests.helpers import kafka_settings, migrate

pytestmark = pytest.mark.integration

DOCUMENTED_DEV_PASSWORD = "minyi-dev-password"  # the README's  # pragma: allowlist secret
# The development accounts as the README lists them: one per department and station, a
# committee, an operator and an admin.
DEV_ACCOUNT_COUNT = len(wenling().departments) + len(wenling().stations) + 3


def _settings(database_url: str, topic_prefix: str, **accounts: Any) -> RoutingSettings:
    return RoutingSettings(
        kafka=kafka_settings(topic_prefix),
        database=DatabaseSettings(url=database_url),
        accounts=AccountSettings(argon2_time_cost=1, argon2_memory_kib=8192, **accounts),
    )


def _profile(monkeypatch: pytest.MonkeyPatch, profile: str) -> None:
    monkeypatch.setenv("MINYI_PROFILE", profile)
    monkeypatch.delenv("MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS", raising=False)


async def _accounts(database_url: str) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            f"SELECT client_id, role, active, secret_hash FROM {SCHEMA}.accounts"
        )
        return {r["client_id"]: dict(r) for r in rows}
    finally:
        await conn.close()


def _has_password(secret_hash: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(secret_hash, password)
    except VerifyMismatchError:
        return False


async def test_seed_in_prod_creates_only_the_bootstrap_admin(
    infra, database_url, topic_prefix, monkeypatch
):
    _profile(monkeypatch, "prod")
    password = secrets.token_urlsafe(18)
    settings = _settings(
        database_url, topic_prefix, bootstrap_admin_id="chief", bootstrap_admin_password=password
    )
    await migrate(database_url, SCHEMA, MIGRATIONS)
    summary = await seed(settings)
    assert "bootstrap admin 'chief' created" in summary
    assert password not in summary
    accounts = await _accounts(database_url)
    assert set(accounts) == {"chief"}
    (chief,) = accounts.values()
    assert (chief["role"], chief["active"]) == ("admin", True)
    assert chief["secret_hash"].startswith("$argon2id$")
    assert _has_password(chief["secret_hash"], password)
    assert not _has_password(chief["secret_hash"], DOCUMENTED_DEV_PASSWORD)
    conn = await asyncpg.connect(database_url)
    try:  # the reference data was seeded as before (the seed did run)
        departments = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.departments")
    finally:
        await conn.close()
    assert departments == len(wenling().departments)

    # The next release's seed with a rotated secret: still one account, the new password.
    rotated = secrets.token_urlsafe(18)
    settings = _settings(
        database_url, topic_prefix, bootstrap_admin_id="chief", bootstrap_admin_password=rotated
    )
    assert "bootstrap admin 'chief' updated" in await seed(settings)
    accounts = await _accounts(database_url)
    assert set(accounts) == {"chief"}
    assert _has_password(accounts["chief"]["secret_hash"], rotated)
    assert not _has_password(accounts["chief"]["secret_hash"], password)
    await check_accounts(settings)  # nothing to refuse


async def test_a_cluster_seeded_with_dev_accounts_is_refused_until_seeded_in_prod(
    infra, database_url, topic_prefix, monkeypatch
):
    # Not migrated yet: no verdict here (the runtime refuses a schema that is behind).
    _profile(monkeypatch, "prod")
    await check_accounts(_settings(database_url, topic_prefix))
    # Before the fix: a deployment as documented seeded the development accounts.
    _profile(monkeypatch, "dev")
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(_settings(database_url, topic_prefix, seed_dev_accounts=True))
    accounts = await _accounts(database_url)
    assert len(accounts) == DEV_ACCOUNT_COUNT
    assert {"admin", "operator", "committee"} <= set(accounts)
    assert _has_password(accounts["operator"]["secret_hash"], DOCUMENTED_DEV_PASSWORD)
    await check_accounts(_settings(database_url, topic_prefix))  # the dev profile allows them

    # Upgraded, in the prod profile: routing refuses to start, naming the accounts.
    _profile(monkeypatch, "prod")
    settings = _settings(database_url, topic_prefix)
    with pytest.raises(DevPasswordInUse, match=rf"{DEV_ACCOUNT_COUNT} active account") as refused:
        await check_accounts(settings)
    assert "operator" in str(refused.value)
    app = build_app(settings)
    with pytest.raises(DevPasswordInUse):
        async with app.router.lifespan_context(app):
            pytest.fail("routing started with the development password in use")

    # The release's seed: the bootstrap admin takes over `admin`, the rest are deactivated.
    password = secrets.token_urlsafe(18)
    settings = _settings(
        database_url, topic_prefix, bootstrap_admin_id="admin", bootstrap_admin_password=password
    )
    summary = await seed(settings)
    assert f"deactivated {DEV_ACCOUNT_COUNT - 1} account(s)" in summary
    accounts = await _accounts(database_url)
    assert len(accounts) == DEV_ACCOUNT_COUNT  # kept (deactivated), not deleted
    assert {c for c, a in accounts.items() if a["active"]} == {"admin"}
    assert accounts["admin"]["role"] == "admin"
    assert _has_password(accounts["admin"]["secret_hash"], password)

    # Now it starts; the admin signs in with the secret, nobody with the published password.
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:

            async def sign_in(client_id: str, secret: str) -> httpx.Response:
                body = {"client_id": client_id, "client_secret": secret}
                return await http.post("/api/v1/auth/token", json=body)

            admin = await sign_in("admin", password)
            assert admin.status_code == 200, admin.text
            assert admin.json()["role"] == "admin"
            for client_id in ("admin", "operator", "committee", "dept-transport"):
                refused_sign_in = await sign_in(client_id, DOCUMENTED_DEV_PASSWORD)
                assert refused_sign_in.status_code == 401, client_id


def test_the_account_command_adds_changes_and_deactivates_staff(infra, database_url, monkeypatch):
    """How a deployment's admin gives the staff their accounts (no development accounts)."""
    _profile(monkeypatch, "prod")
    monkeypatch.setenv("MINYI_ROUTING__DATABASE__URL", database_url)
    monkeypatch.setenv("MINYI_ROUTING__ACCOUNTS__ARGON2_TIME_COST", "1")
    monkeypatch.setenv("MINYI_ROUTING__ACCOUNTS__ARGON2_MEMORY_KIB", "8192")
    asyncio.run(migrate(database_url, SCHEMA, MIGRATIONS))
    asyncio.run(seed(_settings(database_url, "unused.")))  # the departments
    runner = CliRunner()

    def account(*args: str, password: str = "") -> Result:
        return runner.invoke(routing_cli, ["account", *args], input=f"{password}\n")

    first, second = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    done = account(
        "clerk-transport", "--role", "department", "--department", "transport", password=first
    )
    assert (done.exit_code, done.output.strip()) == (
        0,
        "routing: account 'clerk-transport' (department) created",
    )
    accounts = asyncio.run(_accounts(database_url))
    assert set(accounts) == {"clerk-transport"}
    assert accounts["clerk-transport"]["role"] == "department"
    assert _has_password(accounts["clerk-transport"]["secret_hash"], first)

    refusals = {
        "short": (("clerk-2", "--role", "operator"), "short-pw-11"),
        "published": (("clerk-2", "--role", "operator"), DOCUMENTED_DEV_PASSWORD),
        "no department": (("clerk-2", "--role", "department"), second),
        "unknown department": (("clerk-2", "--role", "department", "--department", "nope"), second),
        "voter": (("clerk-2", "--role", "voter"), second),
    }
    for label, (args, password) in refusals.items():
        done = account(*args, password=password)
        assert done.exit_code == 2, (label, done.output)
        assert "refused" in done.output or "no department" in done.output, label
    assert set(asyncio.run(_accounts(database_url))) == {"clerk-transport"}  # nothing written

    done = account(
        "clerk-transport", "--role", "department", "--department", "transport", password=second
    )
    assert done.output.strip().endswith("updated")
    accounts = asyncio.run(_accounts(database_url))
    assert _has_password(accounts["clerk-transport"]["secret_hash"], second)
    assert not _has_password(accounts["clerk-transport"]["secret_hash"], first)

    done = account("clerk-transport", "--role", "department", "--deactivate")
    assert done.output.strip() == "routing: account 'clerk-transport' deactivated"
    assert asyncio.run(_accounts(database_url))["clerk-transport"]["active"] is False
