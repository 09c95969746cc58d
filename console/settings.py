"""The console's settings: `MINYI_CONSOLE__<SECTION>__<FIELD>` (extra variables are refused)."""

from __future__ import annotations

import os
import secrets

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "MINYI_CONSOLE__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceUrls(_Section):
    """Base URLs of the four services (the console reads their HTTP APIs and /metrics only)."""

    intake: str = "http://127.0.0.1:8001"
    routing: str = "http://127.0.0.1:8002"
    notification: str = "http://127.0.0.1:8003"
    evaluation: str = "http://127.0.0.1:8004"

    def as_dict(self) -> dict[str, str]:
        return {
            "intake": self.intake.rstrip("/"),
            "routing": self.routing.rstrip("/"),
            "notification": self.notification.rstrip("/"),
            "evaluation": self.evaluation.rstrip("/"),
        }


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies allowed to name the client in X-Forwarded-For (addresses "
        "or CIDR networks); none by default, so the peer's address is the client's.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, gt=0, description="Larger request bodies get 413 unread."
    )


class SessionSettings(_Section):
    secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="HMAC key of the session cookie (random per process when unset: "
        "sign-ins then end with a restart).",
    )
    cookie_name: str = "minyi_console"
    secure_cookie: bool = Field(
        default=False,
        description="Always set `Secure` on the cookies (set it behind a TLS proxy that does "
        "not tell the console its scheme); a request that arrives over https gets `Secure` "
        "regardless.",
    )
    max_age_s: int = Field(default=8 * 3600, gt=0)
    check_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a confirmation by routing's /api/v1/auth/session is believed "
        "before asking again (0: ask on every request).",
    )
    check_timeout_s: float = Field(
        default=1.5, gt=0, description="Time limit of that question to routing."
    )


class UpstreamSettings(_Section):
    timeout_s: float = Field(default=5.0, gt=0, description="API calls to the services.")
    health_timeout_s: float = Field(
        default=1.5, gt=0, description="/health/ready and /metrics for the pipeline panel."
    )
    due_soon_hours: int = Field(default=48, gt=0, description="'即将到期' window.")


class ConsoleSettings(BaseSettings):
    """Environment: `MINYI_CONSOLE__<SECTION>__<FIELD>`, e.g. `MINYI_CONSOLE__HTTP__PORT`."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
        nested_model_default_partial_update=True,
    )

    services: ServiceUrls = Field(default_factory=ServiceUrls)
    http: HttpSettings = Field(default_factory=HttpSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)

    @model_validator(mode="after")
    def _no_unknown_sections(self) -> ConsoleSettings:
        """A misspelt `MINYI_CONSOLE__<SECTION>` is refused (unknown fields inside a section
        are refused by the sections' extra="forbid")."""
        known = set(type(self).model_fields)
        unknown = sorted(
            name
            for name in os.environ
            if name.upper().startswith(PREFIX)
            and name[len(PREFIX) :].split("__")[0].lower() not in known
        )
        if unknown:
            raise ValueError(f"unknown console settings: {', '.join(unknown).lower()}")
        return self
