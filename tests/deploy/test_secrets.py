"""Deployments bring their own secrets (slice "secrets"): docker-compose.yml rendered by the
real Compose v2 CLI and every Kubernetes overlay rendered by kustomize seed no development
account, carry no development password or built-in key, run the prod profile, and require
every secret (the auth key, the bootstrap admin, the database passwords)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    SERVICES,
    Manifest,
    docker_compose_config,
    of_kind,
    overlay_names,
    pod_specs,
    render,
)

# What a deployment must not contain: the documented development passwords (accounts and
# database roles) and the signing key that was built into the source.
PUBLISHED = (
    "minyi-dev-password",
    "minyi-dev-db-password",
    "minyi-dev-secret-change-me-in-production-0123456789",
)
# The secrets docker-compose.yml requires (hand-listed: the test's own table, not the file's).
COMPOSE_SECRETS = (
    "MINYI_AUTH_SECRET",
    "BOOTSTRAP_ADMIN_PASSWORD",
    "POSTGRES_PASSWORD",
    "INTAKE_DB_PASSWORD",
    "ROUTING_DB_PASSWORD",
    "NOTIFICATION_DB_PASSWORD",
    "EVALUATION_DB_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
SEED_DEV_ACCOUNTS = "MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS"


def _values() -> dict[str, str]:
    """A value of this run for each secret (letters and digits: they go into DSNs)."""
    return {name: secrets.token_hex(20) for name in COMPOSE_SECRETS}


def _published_in(text: str) -> list[str]:
    return [p for p in PUBLISHED if p in text]


# --------------------------------------------------------------------------- compose


@pytest.mark.parametrize("missing", COMPOSE_SECRETS)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_compose_refuses_to_render_without_each_secret_and_names_it(missing, how):
    env = _values()
    if how == "unset":
        del env[missing]
    else:
        env[missing] = ""
    done = docker_compose_config(env)
    assert done.returncode != 0, f"rendered without {missing}"
    assert f"required variable {missing} is missing a value" in done.stderr, done.stderr


def test_compose_without_any_variable_fails():
    done = docker_compose_config({})
    assert done.returncode != 0
    assert "required variable" in done.stderr


def _rendered_compose() -> tuple[dict[str, str], dict[str, Any], str]:
    env = _values()
    done = docker_compose_config(env)
    assert done.returncode == 0, done.stderr
    return env, json.loads(done.stdout), done.stdout


def test_compose_rendered_with_the_secrets_carries_them_to_who_needs_them():
    env, config, _text = _rendered_compose()
    services = config["services"]
    for name in SERVICES:
        environment = services[name]["environment"]
        assert environment["MINYI_AUTH_SECRET"] == env["MINYI_AUTH_SECRET"], name
        assert environment["MINYI_PROFILE"] == "prod", name
        own = environment[f"MINYI_{name.upper()}__DATABASE__URL"]
        assert own == (
            f"postgresql://minyi_{name}:{env[f'{name.upper()}_DB_PASSWORD']}@postgres:5432/minyi"
        )
    migrate = services["migrate"]["environment"]
    assert migrate["MINYI_PROFILE"] == "prod"
    assert migrate["DATABASE_URL"] == (
        f"postgresql://minyi:{env['POSTGRES_PASSWORD']}@postgres:5432/minyi"
    )
    assert migrate["MINYI_ROUTING__ACCOUNTS__BOOTSTRAP_ADMIN_ID"] == "admin"
    assert (
        migrate["MINYI_ROUTING__ACCOUNTS__BOOTSTRAP_ADMIN_PASSWORD"]
        == env["BOOTSTRAP_ADMIN_PASSWORD"]
    )
    assert "MINYI_AUTH_SECRET" not in migrate  # the one-shot job signs nothing
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == env["POSTGRES_PASSWORD"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == env["GRAFANA_ADMIN_PASSWORD"]


def test_compose_rendered_has_no_unset_secret_no_dev_account_and_no_published_value():
    _env, config, text = _rendered_compose()
    assert not _published_in(text)
    for name, service in config["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if any(word in key for word in ("SECRET", "PASSWORD", "DATABASE__URL")):
                if key.startswith("MINYI_NOTIFICATION__SMS__"):
                    continue  # the SMS provider's keys: optional (console provider)
                assert isinstance(value, str), f"{name}: {key} = {value!r}"
                assert value, f"{name}: {key} is empty"
        assert environment.get("MINYI_PROFILE", "prod") == "prod", name
        assert str(environment.get(SEED_DEV_ACCOUNTS, "false")).lower() == "false", name
        assert not any(k.endswith("__DEV_PASSWORD") for k in environment), name
    script = config["services"]["migrate"]["command"][-1]
    assert "python -m services.routing seed" in script  # the seed runs, in the prod profile


# --------------------------------------------------------------------------- kubernetes


def _env_of(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def _containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _config_data(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    return {
        k: v
        for cm in of_kind(manifests, "ConfigMap")
        if cm["metadata"]["name"].startswith("minyi-config")
        for k, v in (cm.get("data") or {}).items()
    }


def _secret_ref(entry: dict[str, Any] | None) -> tuple[str, str] | None:
    ref = (entry or {}).get("valueFrom", {}).get("secretKeyRef")
    if not ref:
        return None
    assert ref.get("optional") is not True, f"{ref} is optional"
    return ref["name"], ref["key"]


@pytest.mark.parametrize("overlay", overlay_names())
def test_k8s_has_no_published_value_no_dev_account_and_requires_its_secrets(overlay):
    manifests = render(overlay)
    text = yaml.safe_dump_all(manifests)
    assert not _published_in(text)
    config = _config_data(manifests)
    assert config["MINYI_PROFILE"] == "prod"
    assert SEED_DEV_ACCOUNTS not in config
    for where, spec in pod_specs(manifests):
        for c in _containers(spec):
            env = _env_of(c)
            for entry in env.values():  # required: a pod without its Secret does not start
                ref = entry.get("valueFrom", {}).get("secretKeyRef", {})
                if ref and ref["name"] != "minyi-sms":  # SMS keys: per provider, optional
                    assert ref.get("optional") is not True, f"{where}/{c['name']}: {ref}"
            assert SEED_DEV_ACCOUNTS not in env, f"{where}/{c['name']}"
            assert env.get("MINYI_PROFILE", {"value": "prod"}).get("value") == "prod"
            assert not [k for k in env if k.endswith("__DEV_PASSWORD")], f"{where}/{c['name']}"


@pytest.mark.parametrize("overlay", overlay_names())
def test_k8s_every_service_requires_the_auth_secret(overlay):
    manifests = render(overlay)
    deployments = {d["metadata"]["name"]: d for d in of_kind(manifests, "Deployment")}
    assert set(deployments) == set(SERVICES)
    for name, d in deployments.items():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        env = _env_of(container)
        assert _secret_ref(env.get("MINYI_AUTH_SECRET")) == ("minyi-secrets", "MINYI_AUTH_SECRET")
        assert any(
            source.get("configMapRef", {}).get("name", "").startswith("minyi-config")
            for source in container.get("envFrom", [])
        ), f"{name}: no minyi-config (MINYI_PROFILE)"


@pytest.mark.parametrize("overlay", overlay_names())
def test_k8s_seed_gets_only_the_bootstrap_admin_from_its_secret(overlay):
    manifests = render(overlay)
    (job,) = of_kind(manifests, "Job")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    env = _env_of(migrate)
    assert env["MINYI_PROFILE"]["value"] == "prod"
    prefix = "MINYI_ROUTING__ACCOUNTS__"
    assert _secret_ref(env.get(f"{prefix}BOOTSTRAP_ADMIN_ID")) == (
        "minyi-bootstrap-admin",
        "username",
    )
    assert _secret_ref(env.get(f"{prefix}BOOTSTRAP_ADMIN_PASSWORD")) == (
        "minyi-bootstrap-admin",
        "password",
    )
    accounts = {k for k in env if k.startswith(prefix)}
    assert accounts == {f"{prefix}BOOTSTRAP_ADMIN_ID", f"{prefix}BOOTSTRAP_ADMIN_PASSWORD"}
    assert "python -m services.routing seed" in migrate["args"][0]
    # Only the seed reads the admin's secret.
    for where, spec in pod_specs(manifests):
        for c in _containers(spec):
            if c is migrate:
                continue
            refs = [e.get("valueFrom", {}).get("secretKeyRef", {}) for e in c.get("env", [])]
            assert not [r for r in refs if r.get("name") == "minyi-bootstrap-admin"], where
