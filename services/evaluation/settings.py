from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings

from services.evaluation.ratings import RatingSettings
from shared.auth import AuthSettings
from shared.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    service_settings_config,
)


class LimitSettings(BaseModel):
    """The voter's rating link is public: request body size (413 beyond it) and requests per
    client address (429, moving window, in memory per process)."""

    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(default=16 * 1024, ge=1024, description="Any request.")
    rate_limit_enabled: bool = True
    per_address: str = Field(
        default="60/minute", description="`limits` notation: rating-link requests per address."
    )


class EvaluationSettings(BaseSettings):
    """Environment: `MINYI_EVALUATION__<SECTION>__<FIELD>`, e.g. `MINYI_EVALUATION__HTTP__PORT`."""

    model_config = service_settings_config("evaluation")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = HttpSettings(port=8004)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rating: RatingSettings = Field(default_factory=RatingSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
