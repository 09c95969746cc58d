from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from services.routing.domain import DeadlineSettings, TriageSettings
from shared.auth import AuthSettings
from shared.settings import (
    DatabaseSettings,
    DeploymentProfile,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    deployment_profile,
    read_secret_file,
    service_settings_config,
)

DEV_PASSWORD = "minyi-dev-password"  # noqa: S105 - the documented development default
MIN_PASSWORD_LENGTH = 12


def password_problem(password: str, *, client_id: str | None = None) -> str | None:
    """Why `password` may not guard an account (None: it may)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"it has {len(password)} characters; at least {MIN_PASSWORD_LENGTH} are needed"
    if password.strip().lower() == DEV_PASSWORD:
        return "it is the published development password"
    if client_id is not None and password.strip().lower() == client_id.strip().lower():
        return "it is the account's own name"
    return None


class AccountSettings(BaseModel):
    """Sign-in accounts.

    A deployment gets one administrator, configured as a secret. `seed` creates the account
    named by `bootstrap_admin_id`, or updates it (an active admin with that password), and no
    other; `python -m services.routing account` adds or changes the others. The development
    accounts (one per department and station, a committee, an operator and an admin, all with
    `dev_password`) are seeded only when `seed_dev_accounts` is on, which the dev profile
    alone allows (`MINYI_PROFILE=dev`: `make up` and the tests)."""

    model_config = ConfigDict(extra="forbid")
    seed_dev_accounts: bool = Field(
        default=False, description="Seed the development accounts (dev profile only)."
    )
    dev_password: SecretStr = SecretStr(DEV_PASSWORD)
    bootstrap_admin_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The admin `seed` provides."
    )
    bootstrap_admin_password: SecretStr | None = Field(
        default=None, description=f"Its password: at least {MIN_PASSWORD_LENGTH} characters."
    )
    bootstrap_admin_password_file: Path | None = Field(
        default=None, description="Or a file holding it (a mounted secret)."
    )
    # argon2id cost (OWASP's minimum: 19 MiB, 2 iterations, 1 lane).
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19_456, ge=8_192)
    argon2_parallelism: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _safe_for_the_profile(self) -> Self:
        if self.seed_dev_accounts and deployment_profile() is not DeploymentProfile.DEV:
            raise ValueError(
                "accounts.seed_dev_accounts: the development accounts and their published "
                "password are for the dev profile only (MINYI_PROFILE=dev); a deployment gets "
                "its admin from accounts.bootstrap_admin_id / bootstrap_admin_password"
            )
        if self.bootstrap_admin_password_file is not None:
            if self.bootstrap_admin_password is not None:
                raise ValueError(
                    "set accounts.bootstrap_admin_password or bootstrap_admin_password_file, "
                    "not both"
                )
            self.bootstrap_admin_password = SecretStr(
                read_secret_file(
                    self.bootstrap_admin_password_file, "accounts.bootstrap_admin_password_file"
                )
            )
        has_id = self.bootstrap_admin_id is not None
        if has_id != (self.bootstrap_admin_password is not None):
            raise ValueError("accounts.bootstrap_admin_id and bootstrap_admin_password go together")
        if self.bootstrap_admin_password is not None:
            problem = password_problem(
                self.bootstrap_admin_password.get_secret_value(),
                client_id=self.bootstrap_admin_id,
            )
            if problem:
                raise ValueError(f"accounts.bootstrap_admin_password refused: {problem}")
        return self


class TimerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often due timers are looked for."
    )
    batch_size: int = Field(default=500, ge=1)


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anonymous_case_reads: bool = Field(
        default=False,
        description=(
            "Let callers without a token read one case by its id or its opinion's id "
            "(unguessable UUIDs; no contact details shown). Off: voters follow their case "
            "through intake's receipt page; everyone else signs in."
        ),
    )
    sse_ping_s: int = Field(default=15, ge=1)


class LimitSettings(BaseModel):
    """Request body size (413 beyond it) and the sign-in limiter: failed sign-ins per account
    and per client address within a moving window, counted in routing's PostgreSQL (shared by
    every replica). Past `signin_max_failures` the next attempt gets 429 with Retry-After —
    even with the right secret — until the window has moved past enough failures."""

    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(default=16 * 1024, ge=1024, description="Any request.")
    signin_max_failures: int = Field(
        default=10, ge=1, description="Failed sign-ins per account, and per address, allowed."
    )
    signin_window_s: int = Field(
        default=15 * 60, ge=1, description="The moving window failures are counted in."
    )


class RoutingSettings(BaseSettings):
    """Environment: `MINYI_ROUTING__<SECTION>__<FIELD>`, e.g. `MINYI_ROUTING__HTTP__PORT`."""

    model_config = service_settings_config("routing")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = HttpSettings(port=8002)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    deadlines: DeadlineSettings = Field(default_factory=DeadlineSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)
    timers: TimerSettings = Field(default_factory=TimerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    accounts: AccountSettings = Field(default_factory=AccountSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
