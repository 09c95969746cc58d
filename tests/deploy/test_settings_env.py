"""Every MINYI_* variable the deployment files name is one the code's settings accept.

The services' settings use extra="forbid": a misspelt `MINYI_<SERVICE>__...` fails
validation. For each variable named in docker-compose.yml, .env.example and the rendered
Kubernetes manifests, the service's Settings class is instantiated with that variable set (to
the value the file gives it, or a plausible one for its field when the file leaves it empty).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from tests.deploy.support import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    SERVICES,
    compose,
    of_kind,
    overlay_names,
    render,
)

# Read by every service (shared/settings.py, shared/auth.py), not by one prefix.
SHARED = {
    "MINYI_AUTH_SECRET",
    "MINYI_AUTH_SECRET_FILE",
    "MINYI_PROFILE",
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
}
SERVICE_VAR = re.compile(r"^MINYI_([A-Z]+)__([A-Z0-9_]+)$")
INTERPOLATION = re.compile(r"\$\{(MINYI_[A-Z0-9_]+)")

Named = dict[str, str | None]  # variable -> the value the file gives (None: none)


def settings_class(service: str) -> type[BaseSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    (cls,) = [
        c
        for c in vars(module).values()
        if inspect.isclass(c)
        and issubclass(c, BaseSettings)
        and c is not BaseSettings
        and c.__module__ == module.__name__
    ]
    return cls


def _unwrap(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def plausible(cls: type[BaseModel], path: list[str]) -> str:
    """A value for the field at `path` (lower-case names): its default, or one of its type."""
    model: type[BaseModel] = cls
    for i, key in enumerate(path):
        field = model.model_fields.get(key)
        if field is None:
            return "x"  # unknown: the settings will refuse it, which is what we test
        (annotation, *_) = _unwrap(field.annotation)
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        if i != len(path) - 1:
            return "x"
        default = field.default
        if typing.get_origin(annotation) is typing.Literal:
            return str(typing.get_args(annotation)[0])
        if isinstance(default, SecretStr):
            return default.get_secret_value() or "x" * 32
        if annotation is SecretStr:
            return "x" * 32  # a secret without default (a token, a key)
        if isinstance(default, bool):
            return str(default).lower()
        if default is not PydanticUndefined and default not in (None, ""):
            return str(default)
        return {bool: "true", int: "1", float: "1.0"}.get(annotation, "x")
    return "x"


def check(named: Named, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The variables the settings refuse, with the reason.

    A file's variables for one service are set together, as that service's process would see
    them (e.g. MINYI_ROUTING__HTTP__HOST is valid only with MINYI_ROUTING__HTTP__PORT: a
    section read from the environment replaces the default one, port included).
    """
    assert named, "no MINYI_* variables found: the collector is broken"
    problems = []
    by_service: dict[str, dict[str, str]] = {}
    for name, value in sorted(named.items()):
        if name in SHARED:
            continue
        match = SERVICE_VAR.match(name)
        service = match.group(1).lower() if match else ""
        if not match or service not in SERVICES:
            problems.append(f"{name}: neither a shared variable nor MINYI_<SERVICE>__...")
            continue
        path = match.group(2).lower().split("__")
        by_service.setdefault(service, {})[name] = (
            value if value else plausible(settings_class(service), path)
        )
    for service, variables in by_service.items():
        with monkeypatch.context() as env:
            for name, value in variables.items():
                env.setenv(name, value)
            try:
                settings_class(service)()
            except ValidationError as exc:
                problems.append(f"{service} with {sorted(variables)}: {exc}")
    return problems


@pytest.fixture
def clean_env(monkeypatch):
    """No MINYI_* (or shared) variable from the caller's shell leaks into the check."""
    for name in list(os.environ):
        if name.startswith("MINYI_") or name in SHARED:
            monkeypatch.delenv(name)
    return monkeypatch


def from_compose() -> Named:
    named: Named = {}
    for service in compose()["services"].values():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = {
                key: (value if sep else None)
                for key, sep, value in (e.partition("=") for e in environment)
            }
        for key, value in environment.items():
            if key.startswith("MINYI_"):
                named[key] = None if value is None else str(value)
    text = COMPOSE_FILE.read_text("utf-8")
    for key in INTERPOLATION.findall(text):
        named.setdefault(key, None)
    return named


def from_env_example() -> Named:
    named: Named = {}
    for line in ENV_EXAMPLE.read_text("utf-8").splitlines():
        # Commented-out lines too: they are the ones users uncomment.
        match = re.match(r"^#?\s*(MINYI_[A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            named[match.group(1)] = match.group(2).strip() or None
    return named


def from_k8s(overlay: str) -> Named:
    named: Named = {}
    manifests = render(overlay)
    for cm in of_kind(manifests, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            if key.startswith("MINYI_"):
                named[key] = value
    for m in manifests:
        template = m.get("spec", {}).get("template", {}).get("spec", {})
        for c in [*template.get("initContainers", []), *template.get("containers", [])]:
            for env in c.get("env", []):
                if env["name"].startswith("MINYI_"):
                    named[env["name"]] = env.get("value")
    return named


def from_dockerfile() -> Named:
    named: Named = {}
    for line in DOCKERFILE.read_text("utf-8").splitlines():
        if not line.lstrip().startswith("#"):
            for key, value in re.findall(r"\b(MINYI_[A-Z0-9_]+)=(\S+)", line):
                named[key] = value
    return named


def test_compose_names_only_variables_the_settings_accept(clean_env):
    problems = check(from_compose(), clean_env)
    assert not problems, "\n".join(problems)


def test_the_image_sets_only_variables_the_settings_accept(clean_env):
    problems = check(from_dockerfile(), clean_env)
    assert not problems, "\n".join(problems)


def test_env_example_names_only_variables_the_settings_accept(clean_env):
    problems = check(from_env_example(), clean_env)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", overlay_names())
def test_k8s_manifests_name_only_variables_the_settings_accept(clean_env, overlay):
    problems = check(from_k8s(overlay), clean_env)
    assert not problems, "\n".join(problems)


def test_a_misspelt_variable_is_caught(clean_env):
    """The check is not vacuous: a typo in a section or a field fails."""
    problems = check(
        {
            "MINYI_NOTIFICATION__SMS__ALIYUN__ACCES_KEY_ID": "x",
            "MINYI_ROUTING__KAFKA__PARTITION": "12",
            "MINYI_INTAKE__LOG__LEVEL": "LOUD",
            "MINYI_BILLING__HTTP__PORT": "1",
        },
        clean_env,
    )
    assert len(problems) == 4, problems
