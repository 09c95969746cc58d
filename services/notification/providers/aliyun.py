"""Aliyun (Alibaba Cloud) SMS provider, using the official dysmsapi 2017-05-25 SDK.

The SDK signs with the V3 scheme (ACS3-HMAC-SHA256) and sends
``POST {protocol}://{endpoint}/?OutId=..&PhoneNumbers=..&SignName=..&TemplateCode=..&TemplateParam=..``
with the action and version in the ``x-acs-action: SendSms`` / ``x-acs-version: 2017-05-25``
headers. Business errors come back as HTTP 200 with ``Code != "OK"``; gateway errors
(signature, missing parameters, throttling, 5xx) are raised by the SDK as exceptions.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_dysmsapi20170525.models import SendSmsRequest
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
from alibabacloud_tea_openapi.models import Config
from darabonba.exceptions import RetryError as DaraRetryError
from darabonba.exceptions import UnretryableException

from .base import SendResult, SmsMessage, mask_phone
from .settings import AliyunSmsSettings

_log = structlog.get_logger(__name__)

# Codes worth retrying later: flow control, quota, platform-side (isp.*) errors.
_RETRYABLE_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",
        "isv.DAY_LIMIT_CONTROL",
        "isv.MONTH_LIMIT_CONTROL",
        "isv.OUT_OF_SERVICE",
        "isp.SYSTEM_ERROR",
        "isp.GATEWAY_ERROR",
        "ServiceUnavailable",
        "InternalError",
    }
)
_RETRYABLE_PREFIXES = ("Throttling", "isp.", "ServiceUnavailable", "InternalError")


def is_retryable_code(code: str) -> bool:
    """Whether an Aliyun response/error code is transient (throttling, platform error)."""
    return code in _RETRYABLE_CODES or code.startswith(_RETRYABLE_PREFIXES)


def to_aliyun_phone(phone_e164: str) -> str:
    """Aliyun wants "13800138000" for +8613800138000 and "85212345678" for +85212345678."""
    phone = phone_e164.strip().replace(" ", "").replace("-", "")
    if phone.startswith("+86"):
        return phone[3:]
    if phone.startswith("+"):
        return phone[1:]
    return phone


class AliyunSmsProvider:
    name = "aliyun"

    def __init__(self, settings: AliyunSmsSettings) -> None:
        secret = settings.access_key_secret.get_secret_value()
        if not settings.access_key_id or not secret:
            raise ValueError(
                "sms.provider=aliyun needs sms.aliyun.access_key_id and access_key_secret"
            )
        self._settings = settings
        self.sign_name = settings.sign_name
        self._timeout_s = settings.timeout_ms / 1000
        config = Config(
            access_key_id=settings.access_key_id,
            access_key_secret=secret,
            endpoint=settings.endpoint,
            protocol=settings.protocol.upper(),
            region_id=settings.region_id,
            connect_timeout=settings.timeout_ms,
            read_timeout=settings.timeout_ms,
        )
        self._client: Any = Client(config)

    async def send(self, message: SmsMessage) -> SendResult:
        phone = to_aliyun_phone(message.phone_e164)
        masked = mask_phone(message.phone_e164)
        request = SendSmsRequest(
            phone_numbers=phone,
            sign_name=self._settings.sign_name,
            template_code=message.template_code,
            template_param=(
                json.dumps(message.params, ensure_ascii=False, separators=(",", ":"))
                if message.params
                else None
            ),
            out_id=message.out_id,
        )
        log = _log.bind(phone=masked, template_code=message.template_code, out_id=message.out_id)
        try:
            # The SDK applies connect/read timeouts separately; this bounds the whole call.
            async with asyncio.timeout(2 * self._timeout_s + 1):
                response = await self._client.send_sms_async(request)
        except TimeoutError:
            return self._failed(log, "TIMEOUT", "SendSms timed out", retryable=True, outage=True)
        except AlibabaCloudException as exc:
            code = str(exc.code or "UNKNOWN_ERROR")
            status = exc.status_code
            retryable = (
                isinstance(exc, ThrottlingException)
                or (status is not None and (status >= 500 or status == 429))
                or is_retryable_code(code)
            )
            text = _scrub(str(exc.message or ""), message.phone_e164, phone, masked)
            return self._failed(
                log,
                code,
                text,
                retryable=retryable,
                status=status,
                request_id=exc.request_id,
                outage=status is not None and status >= 500,
            )
        except UnretryableException as exc:
            inner = exc.inner_exception
            network = isinstance(inner, DaraRetryError | OSError | TimeoutError)
            code = "NETWORK_ERROR" if network else "SDK_ERROR"
            detail = inner.message if isinstance(inner, DaraRetryError) else repr(inner)
            text = _scrub(str(detail), message.phone_e164, phone, masked)
            return self._failed(log, code, text, retryable=True, outage=network)
        except Exception as exc:
            text = _scrub(f"{type(exc).__name__}: {exc}", message.phone_e164, phone, masked)
            return self._failed(log, "SDK_ERROR", text, retryable=True)

        body = getattr(response, "body", None)
        if body is None or not body.code:
            return self._failed(log, "EMPTY_RESPONSE", "SendSms returned no body", retryable=True)
        code = str(body.code)
        text = _scrub(str(body.message or ""), message.phone_e164, phone, masked)
        if code == "OK":
            log.info("sms_sent", biz_id=body.biz_id, request_id=body.request_id)
            return SendResult(
                ok=True,
                provider=self.name,
                provider_message_id=body.biz_id,
                code=code,
                message=text,
                retryable=False,
            )
        return self._failed(
            log, code, text, retryable=is_retryable_code(code), request_id=body.request_id
        )

    def _failed(
        self,
        log: Any,
        code: str,
        text: str,
        *,
        retryable: bool,
        status: int | None = None,
        request_id: str | None = None,
        outage: bool = False,
    ) -> SendResult:
        log.warning(
            "sms_send_failed",
            code=code,
            error=text,
            retryable=retryable,
            http_status=status,
            request_id=request_id,
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
        # The SDK opens a fresh aiohttp session per call; nothing to release.
        return None


def _scrub(text: str, e164: str, national: str, masked: str) -> str:
    """Keep full phone numbers out of error texts we log and return."""
    for value in (e164, national):
        if value:
            text = text.replace(value, masked)
    return text
