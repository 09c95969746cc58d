from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.routing.domain import DeadlineSettings
from shared.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    service_settings_config,
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
