"""Aliyun (Alibaba Cloud) SMS provider, using the official dysmsapi 2017-05-25 SDK.

The SDK signs with the V3 scheme (ACS3-HMAC-SHA256) and sends
``POST {protocol}://{endpoint}/?OutId=..&PhoneNumbers=..&SignName=..&TemplateCode=..&TemplateParam=..``
with the action and version in the ``x-acs-action: SendSms`` / ``x-acs-version: 2017-05-25``
headers. Business errors come back as HTTP 200 with ``Code != "OK"``; gateway errors
(signature, missing parameters, throttling, 5xx) are raised by the SDK as exceptions.

``QuerySendDetails`` (``?PhoneNumber=..&SendDate=yyyyMMdd&PageSize=50&CurrentPage=n``) lists
what was sent to one number on one day (Beijing time, the last 30 days):
``{"Code": "OK", "TotalCount": .., "SmsSendDetailDTOs": {"SmsSendDetailDTO": [{"OutId", "PhoneNum",
"SendStatus" (1 waiting for the receipt, 2 failed, 3 delivered), "ErrCode", "SendDate", ..}]}}``.
It carries no BizId: a message found there is recorded without one (the delivery report, which
carries our OutId, fills it in).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import structlog
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_dysmsapi20170525.models import QuerySendDetailsRequest, SendSmsRequest
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
from alibabacloud_tea_openapi.models import Config
from darabonba.exceptions import RetryError as DaraRetryError
from darabonba.exceptions import UnretryableException
from darabonba.runtime import RuntimeOptions

from .base import Lookup, SendResult, SentQuery, SmsMessage, mask_phone
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
BEIJING = ZoneInfo("Asia/Shanghai")  # QuerySendDetails' SendDate is a Beijing date
QUERY_PAGE_SIZE = 50  # QuerySendDetails' maximum
QUERY_DAYS = 30  # how far back QuerySendDetails reaches


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
            return self._failed(
                log, "TIMEOUT", "SendSms timed out", retryable=True, outage=True, uncertain=True
            )
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
            return self._failed(
                log,
                code,
                text,
                retryable=True,
                outage=network,
                uncertain=_may_have_been_sent(inner),
            )
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

    async def find_sent(self, query: SentQuery) -> Lookup:
        """Look the attempt's OutId up with QuerySendDetails, on the attempt's (Beijing) send
        date and the next day (a call started just before midnight may be dated after it)."""
        phone = to_aliyun_phone(query.to)
        masked = mask_phone(query.to)
        log = _log.bind(phone=masked, out_id=query.out_id)
        now = datetime.now(BEIJING)
        first = query.started_at.astimezone(BEIJING).date()
        if (now.date() - first).days >= QUERY_DAYS:
            return Lookup.unsupported(f"older than QuerySendDetails' {QUERY_DAYS} days")
        days = [first] + ([first + timedelta(days=1)] if first < now.date() else [])
        for day in days:
            page = 1
            while True:
                request = QuerySendDetailsRequest(
                    phone_number=phone,
                    send_date=day.strftime("%Y%m%d"),
                    page_size=QUERY_PAGE_SIZE,
                    current_page=page,
                )
                try:
                    async with asyncio.timeout(2 * self._timeout_s + 1):
                        response = await self._client.query_send_details_with_options_async(
                            request, RuntimeOptions()
                        )
                except Exception as exc:
                    failed = _lookup_failed(exc, (query.to, phone, masked))
                    log.warning("sms_lookup_failed", code=failed.code, error=failed.detail)
                    return failed
                body = getattr(response, "body", None)
                code = str(getattr(body, "code", "") or "EMPTY_RESPONSE")
                if body is None or code != "OK":
                    text = _scrub(str(getattr(body, "message", "") or ""), query.to, phone, masked)
                    log.warning("sms_lookup_failed", code=code, error=text)
                    return Lookup.unavailable(code, text)
                holder = body.sms_send_detail_dtos
                rows = list((holder.sms_send_detail_dto if holder else None) or [])
                for row in rows:
                    if row.out_id == query.out_id:
                        log.info("sms_lookup_found", send_status=row.send_status)
                        return Lookup.found(None, code=f"SendStatus={row.send_status}")
                total = int(body.total_count or 0)
                if not rows or page * QUERY_PAGE_SIZE >= total:
                    break
                page += 1
        log.info("sms_lookup_not_found", days=len(days))
        return Lookup.not_found()

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
        uncertain: bool = False,
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
            uncertain=uncertain,
        )

    async def aclose(self) -> None:
        # The SDK opens a fresh aiohttp session per call; nothing to release.
        return None


def _may_have_been_sent(inner: BaseException | None) -> bool:
    """The SDK turns every I/O error into RetryError(str(e)); the original is its context. A
    request that got no answer (read timeout, connection dropped mid-response) may have been
    taken; one that never connected was not."""
    original = inner.__context__ if isinstance(inner, DaraRetryError) else inner
    if isinstance(original, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return False
    return isinstance(
        original,
        aiohttp.SocketTimeoutError
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | TimeoutError,
    )


def _lookup_failed(exc: Exception, phones: tuple[str, str, str]) -> Lookup:
    """A failed QuerySendDetails call: ask again later (an outage feeds the breaker)."""
    if isinstance(exc, TimeoutError):
        return Lookup.unavailable("TIMEOUT", "QuerySendDetails timed out", outage=True)
    if isinstance(exc, AlibabaCloudException):
        status = exc.status_code
        text = _scrub(str(exc.message or ""), *phones)
        outage = status is not None and status >= 500
        return Lookup.unavailable(str(exc.code or "UNKNOWN_ERROR"), text, outage=outage)
    if isinstance(exc, UnretryableException):
        inner = exc.inner_exception
        network = isinstance(inner, DaraRetryError | OSError | TimeoutError)
        return Lookup.unavailable(
            "NETWORK_ERROR" if network else "SDK_ERROR", type(inner).__name__, outage=network
        )
    return Lookup.unavailable("SDK_ERROR", type(exc).__name__)


def _scrub(text: str, e164: str, national: str, masked: str) -> str:
    """Keep full phone numbers out of error texts we log and return."""
    for value in (e164, national):
        if value:
            text = text.replace(value, masked)
    return text
