from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.notification.delivery_rules import (
    BreakerSettings,
    DispatchSettings,
    QuietHoursSettings,
    RateLimitSettings,
)
from services.notification.domain import RecipientSettings, TemplateSettings
from services.notification.providers import SmsSettings, WechatSettings
from shared.auth import AuthSettings
from shared.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    OutboxSettings,
    service_settings_config,
)


class NotificationSettings(BaseSettings):
    """Environment: `MINYI_NOTIFICATION__<SECTION>__<FIELD>`, e.g.
    `MINYI_NOTIFICATION__SMS__PROVIDER=tencent`,
    `MINYI_NOTIFICATION__LIMITS__SMS='[{"window_s": 60, "max_count": 1}]'`."""

    model_config = service_settings_config("notification")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = HttpSettings(port=8003)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    wechat: WechatSettings = Field(default_factory=WechatSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    quiet_hours: QuietHoursSettings = Field(default_factory=QuietHoursSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    recipients: RecipientSettings = Field(default_factory=RecipientSettings)
