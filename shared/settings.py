"""Settings pieces every service nests into its own `Settings` (one env prefix per service).

`KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` are read as defaults by every service, so one
stack env file serves all four; a per-service variable (e.g. `MINYI_ROUTING__DATABASE__URL`)
still wins.

`MINYI_PROFILE` (`dev` or `prod`, default `prod`) says what kind of deployment this is; it is
read here only (`deployment_profile()`). Only the local stack (`make up`) and the tests run in
`dev`: what is unsafe anywhere else (the documented development accounts) is refused outside it.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

PROFILE_ENV = "MINYI_PROFILE"


class DeploymentProfile(enum.StrEnum):
    DEV = "dev"  # the local stack (make up) and the tests
    PROD = "prod"  # everything else: compose, Kubernetes, any real deployment


def deployment_profile() -> DeploymentProfile:
    """The deployment profile from `MINYI_PROFILE` (unset: prod)."""
    raw = os.environ.get(PROFILE_ENV, DeploymentProfile.PROD.value)
    try:
        return DeploymentProfile(raw.strip().lower())
    except ValueError:
        allowed = " or ".join(repr(p.value) for p in DeploymentProfile)
        raise ValueError(f"{PROFILE_ENV}={raw!r}: expected {allowed}") from None


def read_secret_file(path: Path, what: str) -> str:
    """A secret kept in a file (a mounted Kubernetes Secret, a Docker secret): its text without
    the trailing newline editors and `echo` add."""
    try:
        return path.read_text("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


def secret_from_environment(name: str) -> str | None:
    """The secret in variable `name`, or in the file variable `<name>_FILE` names (not both);
    None when neither is set."""
    value = os.environ.get(name)
    file_name = f"{name}_FILE"
    path = os.environ.get(file_name)
    if value is not None and path is not None:
        raise ValueError(f"set {name} or {file_name}, not both")
    if path is not None:
        return read_secret_file(Path(path), file_name)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(
        default_factory=lambda: os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    topic_prefix: str = Field(
        default="", description="Prepended to every topic name (tests, several tenants)."
    )
    partitions: int = Field(default=6, ge=1, description="Partitions of topics we create.")
    replication_factor: int = Field(default=1, ge=1)
    max_attempts: int = Field(
        default=5, ge=1, description="Handler attempts before a message is dead-lettered."
    )
    retry_backoff_s: float = Field(default=0.2, ge=0)
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    graceful_timeout_s: float = 15.0
    lag_interval_s: float = Field(default=15.0, gt=0, description="Consumer lag gauge refresh.")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class DatabaseSettings(_Section):
    url: str = Field(
        default_factory=lambda: os.environ.get(
            "DATABASE_URL", "postgresql://postgres@127.0.0.1:15432/minyi"
        )
    )
    min_pool_size: int = 1
    max_pool_size: int = 10
    command_timeout_s: float = 30.0


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies in front of the "
        "service. Only a request from one of them may name the client in X-Forwarded-For; "
        "empty (the default): the header is ignored, the client is the TCP peer. Used by both "
        "uvicorn (forwarded_allow_ips) and the service's rate limiters.",
    )


class OutboxSettings(_Section):
    batch_size: int = Field(default=500, ge=1)
    poll_interval_s: float = Field(default=1.0, gt=0, description="Fallback when NOTIFY is missed.")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool | None = Field(default=None, description="None: JSON unless on a TTY.")


def service_settings_config(service: str) -> SettingsConfigDict:
    """The pydantic-settings config of one service: `MINYI_<SERVICE>__` and `__` nesting."""
    return SettingsConfigDict(
        env_prefix=f"MINYI_{service.upper()}__",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
        # MINYI_INTAKE__HTTP__HOST alone keeps the section's other defaults (e.g. the port).
        nested_model_default_partial_update=True,
    )
