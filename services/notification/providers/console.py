"""Development provider: logs the SMS instead of sending it."""

from __future__ import annotations

import uuid

import structlog

from .base import Lookup, SendResult, SentQuery, SmsMessage, mask_phone

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

    async def find_sent(self, query: SentQuery) -> Lookup:
        """Nothing ever leaves this provider: a dead sender's message was at most a log line,
        so it is "not found" and goes (to the log) again once the grace has passed."""
        return Lookup.not_found()

    async def aclose(self) -> None:
        return None
