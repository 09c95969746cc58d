"""Development provider: logs the SMS instead of sending it."""

from __future__ import annotations

import uuid

import structlog

from .base import SendResult, SmsMessage, mask_phone

_log = structlog.get_logger(__name__)


class ConsoleSmsProvider:
    name = "console"
    sign_name = "console"

    async def send(self, message: SmsMessage) -> SendResult:
        message_id = f"console-{uuid.uuid4().hex}"
        _log.info(
            "sms_console_send",
            phone=mask_phone(message.phone_e164),
            template_code=message.template_code,
            params=message.params,
            out_id=message.out_id,
            provider_message_id=message_id,
        )
        return SendResult(
            ok=True,
            provider=self.name,
            provider_message_id=message_id,
            code="OK",
            message="logged to console",
            retryable=False,
        )

    async def aclose(self) -> None:
        return None
