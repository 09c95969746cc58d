from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    service_settings_config,
)


class IntakeSettings(BaseSettings):
    """Environment: `MINYI_INTAKE__<SECTION>__<FIELD>`, e.g. `MINYI_INTAKE__HTTP__PORT`."""

    model_config = service_settings_config("intake")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = HttpSettings(port=8001)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    public_base_url: str = Field(
        default="http://127.0.0.1:8001", description="Where voters follow their receipt."
    )
