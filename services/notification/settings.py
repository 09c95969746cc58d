from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.notification.domain import DispatchSettings, TemplateSettings
from services.notification.providers import SmsSettings
from shared.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    service_settings_config,
)


class NotificationSettings(BaseSettings):
    """Environment: `MINYI_NOTIFICATION__<SECTION>__<FIELD>`, e.g. `MINYI_INTAKE__HTTP__PORT`."""

    model_config = service_settings_config("notification")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = HttpSettings(port=8003)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
