"""SMS settings, nested by the notification service in its own settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AliyunSmsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_key_id: str = ""
    access_key_secret: SecretStr = SecretStr("")
    endpoint: str = "dysmsapi.aliyuncs.com"
    protocol: Literal["https", "http"] = "https"
    sign_name: str = "温岭人大"
    region_id: str = "cn-hangzhou"
    timeout_ms: int = Field(default=5000, gt=0)


class TencentSmsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret_id: str = ""
    secret_key: SecretStr = SecretStr("")
    sms_sdk_app_id: str = ""
    endpoint: str = "sms.tencentcloudapi.com"
    protocol: Literal["https", "http"] = "https"
    req_method: Literal["POST", "GET"] = "POST"
    region: str = "ap-guangzhou"
    sign_name: str = "温岭人大"
    timeout_s: int = Field(default=5, gt=0)


class SmsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["console", "aliyun", "tencent"] = "console"
    aliyun: AliyunSmsSettings = Field(default_factory=AliyunSmsSettings)
    tencent: TencentSmsSettings = Field(default_factory=TencentSmsSettings)
