"""SMS providers for the notification service."""

from .aliyun import AliyunSmsProvider
from .base import Lookup, SendResult, SentQuery, SmsMessage, SmsProvider, mask_phone
from .console import ConsoleSmsProvider
from .factory import build_sms_provider
from .settings import AliyunSmsSettings, SmsSettings, TencentSmsSettings
from .tencent import TencentSmsProvider
from .wechat import WechatMessage, WechatProvider, WechatSettings

__all__ = [
    "AliyunSmsProvider",
    "AliyunSmsSettings",
    "ConsoleSmsProvider",
    "Lookup",
    "SendResult",
    "SentQuery",
    "SmsMessage",
    "SmsProvider",
    "SmsSettings",
    "TencentSmsProvider",
    "TencentSmsSettings",
    "WechatMessage",
    "WechatProvider",
    "WechatSettings",
    "build_sms_provider",
    "mask_phone",
]
