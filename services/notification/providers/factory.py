"""Build the configured SMS provider."""

from __future__ import annotations

from .aliyun import AliyunSmsProvider
from .base import SmsProvider
from .console import ConsoleSmsProvider
from .settings import SmsSettings
from .tencent import TencentSmsProvider


def build_sms_provider(settings: SmsSettings) -> SmsProvider:
    if settings.provider == "aliyun":
        return AliyunSmsProvider(settings.aliyun)
    if settings.provider == "tencent":
        return TencentSmsProvider(settings.tencent)
    return ConsoleSmsProvider()
