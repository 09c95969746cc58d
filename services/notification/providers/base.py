"""SMS provider interface shared by the notification service and its providers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SmsMessage:
    """One SMS to one recipient."""

    phone_e164: str  # "+8613800138000"
    template_code: str  # provider template code, e.g. "SMS_123456"
    params: dict[str, str]  # template variables
    out_id: str  # our id for this (event, recipient) send, passed to the provider as OutId


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


class SmsProvider(Protocol):
    name: str
    sign_name: str  # per-number limits are per provider and signature

    async def send(self, message: SmsMessage) -> SendResult: ...

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
