"""Notification's handlers: plan deliveries from events; the dispatcher sends them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from services.notification import domain
from services.notification.providers import SmsMessage, SmsProvider
from services.notification.store import NotificationStore
from shared.events import EventEnvelope, NotificationSentV1
from shared.failpoints import failpoint
from shared.messaging.inbox import Delivery

SERVICE = "notification"
log = structlog.get_logger(__name__)


async def on_case_event(
    store: NotificationStore, envelope: EventEnvelope, delivery: Delivery
) -> str:
    planned = domain.plan_deliveries(envelope)
    if not planned:
        return "ignored"
    if not await store.plan(delivery, envelope, planned):
        return "duplicate"
    failpoint("after_handler_commit")
    log.info("deliveries_planned", count=len(planned), case_id=str(planned[0].case_id))
    return "processed"


class Dispatcher:
    """Sends due deliveries through the provider; one claim (lease) per delivery."""

    def __init__(
        self,
        store: NotificationStore,
        provider: SmsProvider,
        settings: domain.DispatchSettings,
        templates: domain.TemplateSettings,
    ) -> None:
        self._store = store
        self._provider = provider
        self._settings = settings
        self._templates = templates

    async def dispatch_once(self) -> int:
        claimed = await self._store.claim_due(
            self._settings.batch_size, timedelta(seconds=self._settings.lease_s)
        )
        for row in claimed:
            await self._send(row)
        return len(claimed)

    async def _send(self, row: dict[str, Any]) -> None:
        delivery_id = row["id"]
        bound = log.bind(delivery_id=str(delivery_id), case_id=str(row["case_id"]))
        phone: str | None = row["phone"]
        if phone is None:
            await self._store.mark_failed(delivery_id, error="no contact for this recipient")
            bound.error("delivery_failed_no_contact", recipient_ref=row["recipient_ref"])
            return
        template = str(row["template"])
        params: dict[str, Any] = row["params"]
        result = await self._provider.send(
            SmsMessage(
                phone_e164=phone,
                template_code=getattr(self._templates, template),
                params={str(k): str(v) for k, v in params.items()},
                out_id=str(delivery_id),
            )
        )
        attempts: int = row["attempts"]
        if result.ok:
            sent_at = datetime.now(UTC)
            source = row["source_event_id"]
            event = EventEnvelope.wrap(
                NotificationSentV1(
                    delivery_id=delivery_id,
                    case_id=row["case_id"],
                    source_event_id=source,
                    recipient_kind=str(row["recipient_kind"]),
                    recipient_ref=str(row["recipient_ref"]),
                    channel=str(row["channel"]),
                    template=template,
                    provider=result.provider,
                    provider_message_id=result.provider_message_id,
                    sent_at=sent_at,
                ),
                producer=SERVICE,
                correlation_id=row["correlation_id"],
                causation_id=source,
            )
            await self._store.mark_sent(
                delivery_id,
                provider=result.provider,
                provider_message_id=result.provider_message_id,
                sent_at=sent_at,
                event=event,
            )
            bound.info("delivery_sent", provider=result.provider, attempts=attempts)
        elif result.retryable and attempts < self._settings.max_attempts:
            delay = domain.retry_delay(attempts, self._settings)
            await self._store.mark_retry(
                delivery_id, error=f"{result.code}: {result.message}", delay=delay
            )
            bound.warning(
                "delivery_retry", code=result.code, attempts=attempts, delay_s=delay.seconds
            )
        else:
            await self._store.mark_failed(delivery_id, error=f"{result.code}: {result.message}")
            bound.error("delivery_failed", code=result.code, attempts=attempts)
