from __future__ import annotations

from pydantic import Field
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
