"""SMS provider interface shared by the notification service and its providers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol


@dataclass(frozen=True)
class SmsMessage:
    """One SMS to one recipient."""

    phone_e164: str  # "+8613800138000"
    template_code: str  # provider template code, e.g. "SMS_123456"
    params: dict[str, str]  # template variables
    out_id: str  # our id for this (delivery, attempt), passed to the provider as OutId


@dataclass(frozen=True)
class SendResult:
    """Outcome of one send attempt."""

    ok: bool
    provider: str  # "aliyun" | "tencent" | "wechat" | "console"
    provider_message_id: str | None  # Aliyun BizId
    code: str  # provider's code, "OK" on success
    message: str
    retryable: bool  # True for throttling / network / 5xx
    # The provider itself seems down (network error, timeout, 5xx): feeds the circuit breaker.
    outage: bool = False
    # The request may have reached the provider but no answer came back (a read timeout, a
    # connection dropped mid-response): like a sender that died mid-call, the attempt is left
    # without outcome and the provider is asked before anything is sent again.
    uncertain: bool = False


@dataclass(frozen=True)
class SentQuery:
    """Did this attempt reach the provider? Asked before resending an attempt whose sender
    died during the call (its outcome was never recorded)."""

    to: str  # E.164 phone (SMS) or openid (WeChat): personal data, never logged
    out_id: str  # the OutId / SessionContext the attempt carried
    started_at: datetime  # when the attempt was recorded: the call went out at or after it


LookupAnswer = Literal["found", "not_found", "unavailable", "unsupported"]


@dataclass(frozen=True)
class Lookup:
    """The provider's answer about one attempt.

    * ``found``: the provider took the message (``provider_message_id`` where its query
      returns one: Tencent's SerialNo; Aliyun's QuerySendDetails carries no BizId);
    * ``not_found``: it has no such message (final only once the attempt is older than the
      provider's lag, ``dispatch.reconcile_grace_s``);
    * ``unavailable``: the query itself failed (network, 5xx, throttling): ask again later;
    * ``unsupported``: this provider cannot be asked (WeChat has no query API; too old).
    """

    answer: LookupAnswer
    provider_message_id: str | None = None
    code: str = ""
    detail: str = ""
    outage: bool = False  # for "unavailable": the provider itself seems down (the breaker)

    @classmethod
    def found(cls, provider_message_id: str | None, code: str = "FOUND") -> Lookup:
        return cls("found", provider_message_id=provider_message_id, code=code)

    @classmethod
    def not_found(cls) -> Lookup:
        return cls("not_found", code="NOT_FOUND")

    @classmethod
    def unavailable(cls, code: str, detail: str = "", *, outage: bool = False) -> Lookup:
        return cls("unavailable", code=code, detail=detail, outage=outage)

    @classmethod
    def unsupported(cls, detail: str) -> Lookup:
        return cls("unsupported", code="UNSUPPORTED", detail=detail)


class SmsProvider(Protocol):
    name: str
    sign_name: str  # per-number limits are per provider and signature

    async def send(self, message: SmsMessage) -> SendResult: ...

    async def find_sent(self, query: SentQuery) -> Lookup: ...

    async def aclose(self) -> None: ...


def mask_phone(phone: str) -> str:
    """Mask a phone number for logs: "+8613800138000" -> "138****8000".

    The country code is dropped for mainland numbers; never returns more than the first
    three and last four digits.
    """
    digits = "".join(ch for ch in phone if ch.isdigit())
    if phone.startswith("+86") or (len(digits) == 13 and digits.startswith("86")):
        digits = digits[2:]
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 3:
        return f"****{digits[-2:]}"
    return "****"
