"""SMS providers for the notification service."""

from .aliyun import AliyunSmsProvider
from .base import SendResult, SmsMessage, SmsProvider, mask_phone
from .console import ConsoleSmsProvider
from .factory import build_sms_provider
from .settings import AliyunSmsSettings, SmsSettings

__all__ = [
    "AliyunSmsProvider",
    "AliyunSmsSettings",
    "ConsoleSmsProvider",
    "SendResult",
    "SmsMessage",
    "SmsProvider",
    "SmsSettings",
    "build_sms_provider",
    "mask_phone",
]
