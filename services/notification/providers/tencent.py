"""Tencent Cloud SMS provider, using the official SDK (``tencentcloud.sms.v20210111``, async).

The SDK signs with TC3-HMAC-SHA256 and sends ``POST {protocol}://{endpoint}/`` with a JSON body
(``PhoneNumberSet``, ``SmsSdkAppId``, ``SignName``, ``TemplateId``, ``TemplateParamSet``,
``SessionContext``) and the headers ``X-TC-Action: SendSms``, ``X-TC-Version: 2021-01-11``,
``X-TC-Timestamp``, ``X-TC-Region``. Per-number results come back as HTTP 200
``{"Response": {"SendStatusSet": [{"Code": "Ok", "SerialNo": ..}], "RequestId": ..}}``;
errors of the whole request (authentication, parameters) as
``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``, which the SDK raises.

``SessionContext`` carries our OutId (delivery and attempt). ``PullSmsSendStatusByPhoneNumber``
(``BeginTime``/``EndTime`` in Unix seconds, at most 7 days back; ``Offset`` fixed at 0;
``Limit`` ≤ 100) returns the number's status reports,
``{"PullSmsSendStatusSet": [{"SerialNo", "SessionContext", "ReportStatus", ..}]}``: a message
appears there once the operator's receipt is in, seconds (sometimes minutes) after the send —
set ``dispatch.reconcile_grace_s`` accordingly. SessionContext in these reports may need to be
switched on by Tencent support.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import structlog
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models
from tencentcloud.sms.v20210111.sms_client_async import SmsClient

from .base import Lookup, SendResult, SentQuery, SmsMessage, mask_phone
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
PULL_LIMIT = 100  # PullSmsSendStatusByPhoneNumber's maximum (and Offset must be 0)
PULL_MAX_AGE_S = 7 * 86400
CLOCK_SKEW_S = 60


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
            return self._failed(
                log, "TIMEOUT", "SendSms timed out", True, outage=True, uncertain=True
            )
        except httpx.HTTPError as exc:
            # Only a failed connect proves the request never reached Tencent.
            sent_maybe = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            return self._failed(
                log, "NETWORK_ERROR", type(exc).__name__, True, outage=True, uncertain=sent_maybe
            )
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

    async def find_sent(self, query: SentQuery) -> Lookup:
        """Look the attempt's SessionContext up among the number's status reports since the
        attempt started (PullSmsSendStatusByPhoneNumber)."""
        phone = to_tencent_phone(query.to)
        masked = mask_phone(query.to)
        log = _log.bind(phone=masked, out_id=query.out_id)
        now = int(time.time())
        begin = int(query.started_at.timestamp()) - CLOCK_SKEW_S
        if now - begin >= PULL_MAX_AGE_S:
            return Lookup.unsupported("older than PullSmsSendStatusByPhoneNumber's 7 days")
        request = models.PullSmsSendStatusByPhoneNumberRequest()
        request.BeginTime = begin
        request.EndTime = now + CLOCK_SKEW_S
        request.Offset = 0
        request.Limit = PULL_LIMIT
        request.PhoneNumber = phone
        request.SmsSdkAppId = self._settings.sms_sdk_app_id
        try:
            async with asyncio.timeout(self._settings.timeout_s * 2 + 1):
                response = await self._client.PullSmsSendStatusByPhoneNumber(request)
        except TimeoutError:
            failed = Lookup.unavailable("TIMEOUT", "pull timed out", outage=True)
        except httpx.HTTPError as exc:
            failed = Lookup.unavailable("NETWORK_ERROR", type(exc).__name__, outage=True)
        except TencentCloudSDKException as exc:
            code = str(exc.get_code() or "SDK_ERROR")
            outage = code in ("ServerNetworkError", "InternalError") or code.startswith(
                "InternalError."
            )
            failed = Lookup.unavailable(
                code, _scrub(str(exc.get_message() or ""), phone, masked), outage=outage
            )
        except Exception as exc:
            failed = Lookup.unavailable("SDK_ERROR", type(exc).__name__)
        else:
            statuses = list(getattr(response, "PullSmsSendStatusSet", None) or [])
            for status in statuses:
                if status.SessionContext == query.out_id:
                    log.info("sms_lookup_found", report_status=status.ReportStatus)
                    return Lookup.found(status.SerialNo, code=str(status.ReportStatus or "FOUND"))
            if len(statuses) >= PULL_LIMIT:
                # Offset cannot move past the first 100: the answer may be cut off.
                return Lookup.unsupported("more reports for this number than one pull returns")
            log.info("sms_lookup_not_found")
            return Lookup.not_found()
        log.warning("sms_lookup_failed", code=failed.code, error=failed.detail)
        return failed

    def _failed(
        self,
        log: Any,
        code: str,
        text: str,
        retryable: bool,
        *,
        outage: bool = False,
        request_id: str | None = None,
        uncertain: bool = False,
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
            uncertain=uncertain,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _scrub(text: str, phone: str, masked: str) -> str:
    for value in (phone, phone.removeprefix("+86"), phone.removeprefix("+")):
        if value:
            text = text.replace(value, masked)
    return text
