from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings

from services.routing.domain import DeadlineSettings, TriageSettings
from shared.auth import AuthSettings
from shared.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    service_settings_config,
)

DEV_PASSWORD = "minyi-dev-password"  # noqa: S105 - the documented development default


class AccountSettings(BaseModel):
    """Sign-in accounts. `seed` creates one per department, station, and a committee,
    an operator and an admin account, all with `dev_password` (for development only)."""

    model_config = ConfigDict(extra="forbid")
    seed_dev_accounts: bool = True
    dev_password: SecretStr = SecretStr(DEV_PASSWORD)
    # argon2id cost (OWASP's minimum: 19 MiB, 2 iterations, 1 lane).
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19_456, ge=8_192)
    argon2_parallelism: int = Field(default=1, ge=1)


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
