"""Tencent Cloud SMS provider, using the official SDK (``tencentcloud.sms.v20210111``, async).

The SDK signs with TC3-HMAC-SHA256 and sends ``POST {protocol}://{endpoint}/`` with a JSON body
(``PhoneNumberSet``, ``SmsSdkAppId``, ``SignName``, ``TemplateId``, ``TemplateParamSet``,
``SessionContext``) and the headers ``X-TC-Action: SendSms``, ``X-TC-Version: 2021-01-11``,
``X-TC-Timestamp``, ``X-TC-Region``. Per-number results come back as HTTP 200
``{"Response": {"SendStatusSet": [{"Code": "Ok", "SerialNo": ..}], "RequestId": ..}}``;
errors of the whole request (authentication, parameters) as
``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``, which the SDK raises.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import structlog
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models
from tencentcloud.sms.v20210111.sms_client_async import SmsClient

from .base import SendResult, SmsMessage, mask_phone
from .settings import TencentSmsSettings

_log = structlog.get_logger(__name__)

# Worth retrying later: frequency and quota limits (they reset), platform-side errors.
_RETRYABLE_PREFIXES = (
    "LimitExceeded.",
    "InternalError",
    "RequestLimitExceeded",
    "ServerNetworkError",
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "ResourceUnavailable",
)


def is_retryable_code(code: str) -> bool:
    return code.startswith(_RETRYABLE_PREFIXES)


def to_tencent_phone(phone_e164: str) -> str:
    """Tencent wants E.164 ("+8613800138000"); a bare mainland number gets +86."""
    phone = phone_e164.strip().replace(" ", "").replace("-", "")
    return phone if phone.startswith("+") else f"+86{phone}"


class TencentSmsProvider:
    name = "tencent"

    def __init__(self, settings: TencentSmsSettings) -> None:
        secret = settings.secret_key.get_secret_value()
        if not settings.secret_id or not secret or not settings.sms_sdk_app_id:
            raise ValueError(
                "sms.provider=tencent needs sms.tencent.secret_id, secret_key and sms_sdk_app_id"
            )
        self._settings = settings
        self.sign_name = settings.sign_name
        http = HttpProfile(
            protocol=settings.protocol,
            endpoint=settings.endpoint,
            reqMethod=settings.req_method,
            reqTimeout=settings.timeout_s,
        )
        self._client: Any = SmsClient(
            Credential(settings.secret_id, secret),
            settings.region,
            ClientProfile(httpProfile=http),
        )

    async def send(self, message: SmsMessage) -> SendResult:
        phone = to_tencent_phone(message.phone_e164)
        masked = mask_phone(message.phone_e164)
        log = _log.bind(phone=masked, template_id=message.template_code, out_id=message.out_id)
        request = models.SendSmsRequest()
        request.PhoneNumberSet = [phone]
        request.SmsSdkAppId = self._settings.sms_sdk_app_id
        request.SignName = self._settings.sign_name
        request.TemplateId = message.template_code
        request.TemplateParamSet = list(message.params.values())
        request.SessionContext = message.out_id
        try:
            async with asyncio.timeout(self._settings.timeout_s * 2 + 1):
                response = await self._client.SendSms(request)
        except TimeoutError:
            return self._failed(log, "TIMEOUT", "SendSms timed out", True, outage=True)
        except httpx.HTTPError as exc:
            return self._failed(log, "NETWORK_ERROR", type(exc).__name__, True, outage=True)
        except TencentCloudSDKException as exc:
            code = str(exc.get_code() or "SDK_ERROR")
            text = _scrub(str(exc.get_message() or ""), phone, masked)
            outage = code in ("ServerNetworkError", "InternalError") or code.startswith(
                "InternalError."
            )
            if code == "ServerNetworkError":
                text = "HTTP error from the SMS endpoint"
            return self._failed(
                log,
                code,
                text,
                is_retryable_code(code),
                outage=outage,
                request_id=exc.get_request_id(),
            )
        except Exception as exc:
            return self._failed(log, "SDK_ERROR", type(exc).__name__, True)

        statuses = list(getattr(response, "SendStatusSet", None) or [])
        if not statuses:
            return self._failed(log, "EMPTY_RESPONSE", "SendSms returned no status", True)
        status = statuses[0]
        code = str(status.Code)
        text = _scrub(str(status.Message or ""), phone, masked)
        if code == "Ok":
            log.info("sms_sent", serial_no=status.SerialNo, request_id=response.RequestId)
            return SendResult(
                ok=True,
                provider=self.name,
                provider_message_id=status.SerialNo,
                code=code,
                message=text,
                retryable=False,
            )
        return self._failed(log, code, text, is_retryable_code(code), request_id=response.RequestId)

    def _failed(
        self,
        log: Any,
        code: str,
        text: str,
        retryable: bool,
        *,
        outage: bool = False,
        request_id: str | None = None,
    ) -> SendResult:
        log.warning(
            "sms_send_failed", code=code, error=text, retryable=retryable, request_id=request_id
        )
        return SendResult(
            ok=False,
            provider=self.name,
            provider_message_id=None,
            code=code,
            message=text,
            retryable=retryable,
            outage=outage,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _scrub(text: str, phone: str, masked: str) -> str:
    for value in (phone, phone.removeprefix("+86"), phone.removeprefix("+")):
        if value:
            text = text.replace(value, masked)
    return text
