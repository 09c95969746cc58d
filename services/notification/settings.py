from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
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


class CallbackSettings(BaseModel):
    """The providers' status-report callbacks (`/api/v1/reports/{aliyun,tencent}`).

    Aliyun's and Tencent's HTTP pushes carry no signature: each callback URL configured in the
    provider's console carries a shared secret instead, `…/reports/aliyun?token=<secret>`.
    Without a token for a provider its endpoint answers 404 (callbacks not configured)."""

    model_config = ConfigDict(extra="forbid")

    aliyun_token: SecretStr | None = Field(
        default=None,
        description="Secret in the Aliyun SmsReport callback URL (?token=…); at least 24 "
        "characters. None: the endpoint is off (404).",
    )
    tencent_token: SecretStr | None = Field(
        default=None,
        description="Secret in the Tencent Cloud status callback URL (?token=…); at least 24 "
        "characters. None: the endpoint is off (404).",
    )
    max_items: int = Field(
        default=1000, ge=1, le=10000, description="Reports per push; longer batches get 422."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="A push's body; larger ones get 413."
    )

    @field_validator("aliyun_token", "tencent_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # an empty variable: not configured
        if value is not None and len(value.get_secret_value()) < 24:
            raise ValueError("a callback token needs at least 24 characters")
        return value


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
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
