"""Routing's account settings (slice "secrets"): the development accounts only in the dev
profile, one bootstrap admin with a password that passes the policy, the profile variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.routing.settings import AccountSettings, RoutingSettings
from shared.settings import DeploymentProfile, deployment_profile

DOCUMENTED_DEV_PASSWORD = "minyi-dev-password"  # the README's  # pragma: allowlist secret


@pytest.fixture
def prod(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("MINYI_PROFILE", "prod")
    monkeypatch.delenv("MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("value", "profile"),
    [
        (None, DeploymentProfile.PROD),
        ("prod", DeploymentProfile.PROD),
        ("dev", DeploymentProfile.DEV),
        (" DEV ", DeploymentProfile.DEV),
    ],
)
def test_the_profile_is_prod_unless_it_says_dev(monkeypatch, value, profile):
    if value is None:
        monkeypatch.delenv("MINYI_PROFILE", raising=False)
    else:
        monkeypatch.setenv("MINYI_PROFILE", value)
    assert deployment_profile() is profile


def test_an_unknown_profile_is_refused(monkeypatch):
    monkeypatch.setenv("MINYI_PROFILE", "production")
    with pytest.raises(ValueError, match="MINYI_PROFILE='production'"):
        deployment_profile()


def test_dev_accounts_are_off_by_default_and_refused_outside_dev(prod):
    assert AccountSettings().seed_dev_accounts is False
    assert RoutingSettings().accounts.seed_dev_accounts is False
    with pytest.raises(ValidationError, match="dev profile only"):
        AccountSettings(seed_dev_accounts=True)
    prod.setenv("MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS", "true")
    with pytest.raises(ValidationError, match="dev profile only"):
        RoutingSettings()
    prod.setenv("MINYI_PROFILE", "dev")
    assert RoutingSettings().accounts.seed_dev_accounts is True


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("a" * 11, "11 characters; at least 12"),
        ("a" * 12, None),
        (DOCUMENTED_DEV_PASSWORD, "published development password"),
        ("MINYI-DEV-PASSWORD", "published development password"),
        ("root-admin-01", "the account's own name"),
        ("长城长城长城长城长城长城", None),  # 12 characters
    ],
)
def test_the_bootstrap_admin_password_policy(prod, password, problem):
    def settings() -> AccountSettings:
        return AccountSettings(
            bootstrap_admin_id="root-admin-01", bootstrap_admin_password=password
        )

    if problem is None:
        secret = settings().bootstrap_admin_password
        assert secret is not None
        assert secret.get_secret_value() == password
    else:
        with pytest.raises(ValidationError, match=problem):
            settings()


def test_the_bootstrap_admin_comes_from_the_environment_or_a_file(prod, tmp_path):
    prod.setenv("MINYI_ROUTING__ACCOUNTS__BOOTSTRAP_ADMIN_ID", "chief")
    with pytest.raises(ValidationError, match="go together"):
        RoutingSettings()
    path = tmp_path / "password"
    path.write_text("correct horse battery\n")
    prod.setenv("MINYI_ROUTING__ACCOUNTS__BOOTSTRAP_ADMIN_PASSWORD_FILE", str(path))
    accounts = RoutingSettings().accounts
    assert accounts.bootstrap_admin_id == "chief"
    assert accounts.bootstrap_admin_password is not None
    assert accounts.bootstrap_admin_password.get_secret_value() == "correct horse battery"
    prod.setenv("MINYI_ROUTING__ACCOUNTS__BOOTSTRAP_ADMIN_PASSWORD", "another horse battery")
    with pytest.raises(ValidationError, match="not both"):
        RoutingSettings()
