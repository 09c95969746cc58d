from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings

from shared.auth import AuthSettings
from shared.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    service_settings_config,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitSettings(_Section):
    """Request body size limits (413 beyond them)."""

    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Any request.")
    batch_max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="A station's batch (up to 500 items)."
    )
    batch_max_items: int = Field(default=500, ge=1, le=5000)


class RateLimitSettings(_Section):
    """Public endpoints (online form, receipts, WeChat): moving windows, in memory."""

    enabled: bool = True
    per_address: str = Field(
        default="60/minute", description="`limits` notation, per client address."
    )
    per_phone: str = Field(
        default="10/hour", description="Per voter phone number (and WeChat openid)."
    )


class ReferenceCacheSettings(_Section):
    """Live stations, categories and deputies, cached in process (not read per request)."""

    ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="A change made by another replica or the CLI is seen within this many "
        "seconds (this process's own admin changes at once); 0 reads the tables per request.",
    )


class WriteSettings(_Section):
    """Group commit: opinions queued by concurrent requests commit in one transaction."""

    group_commit: bool = Field(
        default=True, description="False: one transaction per request (the direct path)."
    )
    writers: int = Field(default=2, ge=1, le=16, description="Transactions in flight at once.")
    max_rows: int = Field(default=1000, ge=1, description="Opinions per transaction at most.")


class WeChatSettings(_Section):
    """The official account's server callback (plaintext mode)."""

    token: SecretStr = Field(
        default=SecretStr(""), description="The Token set in the official account's console."
    )
    station_id: str = Field(
        default="taiping-online", description="The (online) station WeChat opinions go to."
    )
    account_id: str = Field(
        default="", description="The official account's id (gh_…); replies name it as sender."
    )
    freshness_s: int = Field(
        default=300,
        ge=1,
        description="A callback's signed timestamp must be within this many seconds of our "
        "clock, and each (timestamp, nonce) is accepted once within it (403 otherwise).",
    )


class IntakeSettings(BaseSettings):
    """Environment: `MINYI_INTAKE__<SECTION>__<FIELD>`, e.g. `MINYI_INTAKE__HTTP__PORT`."""

    model_config = service_settings_config("intake")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = HttpSettings(port=8001)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    reference_cache: ReferenceCacheSettings = Field(default_factory=ReferenceCacheSettings)
    write: WriteSettings = Field(default_factory=WriteSettings)
    public_base_url: str = Field(
        default="http://127.0.0.1:8001", description="Where voters follow their receipt."
    )
