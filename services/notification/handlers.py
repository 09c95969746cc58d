"""Notification's handlers: plan deliveries from events; the dispatcher sends them.

The dispatcher's order for each claimed delivery: address → reconciliation of an attempt whose
sender died mid-call (ask the provider, see `reconciliation`) → quiet hours → circuit breaker →
per-number limits and the attempt row (one transaction, committed before the call) →
provider call → outcome (sent / retry with backoff and jitter / failed, and its event).
Deferrals (quiet hours, breaker, limits, a voter contact not known yet, a provider lookup to
repeat) are not attempts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from services.notification import domain, reconciliation
from services.notification.delivery_rules import (
    CircuitBreaker,
    Clock,
    QuietHoursSettings,
    RateLimitSettings,
    quiet_until,
    rate_key,
    retry_delay,
)
from services.notification.metrics import RECONCILIATIONS, UNCERTAIN_RESENDS
from services.notification.providers import (
    Lookup,
    SendResult,
    SentQuery,
    SmsMessage,
    SmsProvider,
)
from services.notification.providers.wechat import WechatMessage, WechatProvider
from services.notification.store import Deferred, NotificationStore, Reserved, Unresolved
from shared.events import (
    EventEnvelope,
    NotificationFailedV1,
    NotificationSentV1,
    VoterContactRecordedV1,
)
from shared.failpoints import failpoint
from shared.messaging.inbox import Delivery

SERVICE = "notification"
log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def on_event(
    store: NotificationStore,
    envelope: EventEnvelope,
    delivery: Delivery,
    audiences: Collection[str] = domain.ALL_AUDIENCES,
) -> str:
    """Any event of minyi.opinion / minyi.case / minyi.evaluation: plan who hears of it."""
    if not domain.rules_for(envelope, audiences):
        return "ignored"
    planned = await store.plan_event(
        delivery,
        envelope,
        lambda directory: domain.plan_deliveries(envelope, directory, audiences),
        audiences,
    )
    if planned is None:
        return "duplicate"
    failpoint("after_handler_commit")
    log.info(
        "deliveries_planned",
        count=len(planned),
        case_id=str(planned[0].case_id) if planned else None,
    )
    return "processed"


# Kept for the name the service used before the table of recipients grew.
on_case_event = on_event


async def on_contact_event(
    store: NotificationStore, envelope: EventEnvelope, delivery: Delivery
) -> str:
    """voter_contact.recorded: how to reach the voter of an opinion (never logged)."""
    if not envelope.is_a(VoterContactRecordedV1):
        return "ignored"
    contact = envelope.payload_as(VoterContactRecordedV1)
    if not await store.record_voter_contact(delivery, envelope, contact):
        return "duplicate"
    log.info("voter_contact_recorded", opinion_id=str(contact.opinion_id))
    return "processed"


Provider = SmsProvider | WechatProvider


class Dispatcher:
    """Sends due deliveries; one claim (lease) per delivery, one attempt row per call."""

    def __init__(
        self,
        store: NotificationStore,
        provider: SmsProvider,
        settings: domain.DispatchSettings,
        templates: domain.TemplateSettings,
        *,
        wechat: WechatProvider | None = None,
        limits: RateLimitSettings | None = None,
        quiet_hours: QuietHoursSettings | None = None,
        breakers: Mapping[str, CircuitBreaker] | None = None,
        breaker_settings: domain.BreakerSettings | None = None,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._providers: dict[str, Provider] = {"sms": provider}
        if wechat is not None:
            self._providers["wechat"] = wechat
        self._settings = settings
        self._templates = templates
        self._limits = limits or RateLimitSettings()
        self._quiet = quiet_hours or QuietHoursSettings()
        self._clock = clock
        self._rand = rand
        given = dict(breakers or {})
        for p in self._providers.values():
            given.setdefault(
                p.name, CircuitBreaker(p.name, breaker_settings or domain.BreakerSettings(), clock)
            )
        self._breakers = given

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        return self._breakers

    async def dispatch_once(self) -> int:
        now = self._clock()
        channels = [
            ch for ch, p in self._providers.items() if self._breakers[p.name].state != "open"
        ]
        claimed = await self._store.claim_due(
            now=now,
            limit=self._settings.batch_size,
            lease=timedelta(seconds=self._settings.lease_s),
            channels=channels,
        )
        # Only rows that went (or failed) count as work: deferred ones must not spin the loop.
        width = self._settings.concurrency
        if (
            width <= 1
            or len(claimed) <= 1
            or any(b.state != "closed" for b in self._breakers.values())
        ):
            return sum([await self._send(row) for row in claimed])
        gate = asyncio.Semaphore(width)

        async def send(row: dict[str, Any]) -> bool:
            async with gate:
                return await self._send(row)

        # Each row is its own delivery with its own lease and attempt rows; per-number limits
        # are counted in PostgreSQL (`reserve`), so concurrent calls keep them as replicas do.
        return sum(await asyncio.gather(*(send(row) for row in claimed)))

    async def _send(self, row: dict[str, Any]) -> bool:
        delivery_id = row["id"]
        channel = str(row["channel"])
        provider = self._providers[channel]
        bound = log.bind(
            delivery_id=str(delivery_id),
            case_id=str(row["case_id"]) if row["case_id"] else None,
            recipient_kind=row["recipient_kind"],
            channel=channel,
            template=row["template"],
        )
        now = self._clock()
        address = await self._store.address_of(row)
        to = (
            (address.openid if address.wechat_opted_in else None)
            if channel == "wechat"
            else address.phone
        )
        if to is None:
            waited = now - row["created_at"]
            patience = timedelta(
                seconds=self._settings.no_contact_retry_s * self._settings.max_attempts
            )
            if row["recipient_kind"] == domain.VOTER and waited < patience:
                until = now + timedelta(seconds=self._settings.no_contact_retry_s)
                await self._store.defer(delivery_id, until=until, reason="no_contact_yet")
                bound.info("delivery_deferred", reason="no_contact_yet")
                return False
            await self._fail(row, None, None, "NO_CONTACT", "no address for this recipient", now)
            bound.error("delivery_failed", code="NO_CONTACT")
            return True
        pending = await self._store.unresolved_attempt(delivery_id)
        if pending is not None:
            handled = await self._reconcile(row, pending, provider, to, bound)
            if handled is not None:
                return handled
            now = self._clock()
        if row["recipient_kind"] == domain.VOTER and not row["urgent"]:
            release = quiet_until(now, self._quiet)
            if release is not None:
                await self._store.defer(delivery_id, until=release, reason="quiet_hours")
                bound.info("delivery_deferred", reason="quiet_hours", until=release.isoformat())
                return False
        breaker = self._breakers[provider.name]
        blocked = breaker.blocked_until()
        if blocked is not None:
            await self._store.defer(delivery_id, until=blocked, reason="circuit_open")
            bound.info("delivery_deferred", reason="circuit_open", until=blocked.isoformat())
            return False
        key = None
        if channel == "sms" and self._limits.enabled:
            key = rate_key(provider.name, getattr(provider, "sign_name", ""), to)
        reserved = await self._store.reserve(
            delivery_id,
            now=now,
            channel=channel,
            provider=provider.name,
            rate_key=key,
            limits=self._limits.sms,
        )
        if isinstance(reserved, Deferred):
            breaker.probing = False
            bound.info("delivery_deferred", reason="rate_limit", until=reserved.until.isoformat())
            return False
        if reserved is None:
            breaker.probing = False
            bound.warning("delivery_taken_over")
            return False
        if reserved.uncertain:
            if not self._settings.resend_uncertain:
                breaker.probing = False
                await self._fail(row, reserved, provider.name, "UNCERTAIN", "outcome unknown", now)
                bound.error("delivery_failed", code="UNCERTAIN")
                return True
            UNCERTAIN_RESENDS.labels(provider.name).inc()
            bound.warning("delivery_resend_after_unknown_outcome", attempt=reserved.attempt)

        failpoint("before_provider_call")
        result = await self._call(provider, channel, to, row, reserved.attempt)
        failpoint("after_provider_call")
        opened = breaker.record(success=result.ok, outage=result.outage)
        if opened:
            bound.warning("circuit_opened", provider=provider.name, state=breaker.state)
        done = self._clock()
        attempt = reserved.attempt
        if result.ok:
            await self._sent(row, attempt, result, done)
            bound.info("delivery_sent", provider=result.provider, attempts=attempt)
            return True
        error = f"{result.code}: {result.message}"
        if result.retryable and (attempt < self._settings.max_attempts or result.outage):
            # An outage is the provider's fault, not the message's: it does not use up the
            # message's attempts (the breaker limits how often we knock).
            delay = retry_delay(attempt, self._settings, self._rand)
            await self._store.mark_retry(
                delivery_id,
                attempt=attempt,
                provider=provider.name,
                code=result.code,
                error=error,
                now=done,
                next_at=done + delay,
                uncertain=result.uncertain,
            )
            bound.warning(
                "delivery_retry",
                code=result.code,
                attempts=attempt,
                delay_s=round(delay.total_seconds(), 3),
            )
            return True
        await self._fail(row, reserved, provider.name, result.code, error, done, address=address)
        bound.error("delivery_failed", code=result.code, attempts=attempt)
        return True

    async def _reconcile(
        self,
        row: dict[str, Any],
        pending: Unresolved,
        provider: Provider,
        to: str,
        bound: Any,
    ) -> bool | None:
        """An earlier attempt's outcome is unknown: ask the provider before anything is resent
        (the rule: `reconciliation.decide`). True/False: handled here (recorded sent / deferred,
        as `_send` counts them); None: go on — send (it never went), or fall back to
        `resend_uncertain` where the provider cannot be asked."""
        delivery_id = row["id"]
        breaker = self._breakers[provider.name]
        bound = bound.bind(attempt=pending.attempt)
        if pending.provider != provider.name:
            lookup = Lookup.unsupported(f"sent through {pending.provider}")
        else:
            blocked = breaker.blocked_until()
            if blocked is not None:
                await self._store.defer(delivery_id, until=blocked, reason="circuit_open")
                bound.info("delivery_deferred", reason="circuit_open", until=blocked.isoformat())
                return False
            lookup = await provider.find_sent(
                SentQuery(
                    to=to,
                    out_id=reconciliation.out_id(delivery_id, pending.attempt),
                    started_at=pending.started_at,
                )
            )
            if lookup.answer == "unavailable":
                if breaker.record(success=False, outage=lookup.outage):
                    bound.warning("circuit_opened", provider=provider.name, state=breaker.state)
            elif lookup.answer == "unsupported":
                breaker.probing = False
            else:
                breaker.record(success=True, outage=False)
        RECONCILIATIONS.labels(provider.name, lookup.answer).inc()
        now = self._clock()
        decision = reconciliation.decide(
            lookup,
            started_at=pending.started_at,
            now=now,
            settings=self._settings,
            failed_lookups=pending.lookups,
            rand=self._rand,
        )
        bound = bound.bind(lookup=lookup.answer, lookup_code=lookup.code)
        if decision.action == "record_sent":
            found = SendResult(
                ok=True,
                provider=provider.name,
                provider_message_id=lookup.provider_message_id,
                code=lookup.code,
                message="found at the provider",
                retryable=False,
            )
            await self._sent(row, pending.attempt, found, pending.started_at, reconciled=True)
            bound.info("delivery_reconciled_sent", provider=provider.name)
            return True
        if decision.action == "send":
            await self._store.record_not_sent(delivery_id, pending.attempt, now=now)
            bound.info("delivery_reconciled_not_sent", provider=provider.name)
            return None
        if decision.action in ("wait", "ask_again"):
            assert decision.until is not None
            failed = decision.action == "ask_again"
            await self._store.defer_lookup(
                delivery_id,
                pending.attempt,
                until=decision.until,
                reason="reconcile_retry" if failed else "reconcile_grace",
                error=f"{lookup.code}: {lookup.detail}" if failed else None,
                failed=failed,
            )
            event = "delivery_lookup_failed" if failed else "delivery_deferred"
            (bound.warning if failed else bound.info)(
                event,
                reason="reconcile_retry" if failed else "reconcile_grace",
                until=decision.until.isoformat(),
            )
            return False
        return None  # resend_blind / give_up: `reserve` marks it 'unknown', as before

    async def _call(
        self, provider: Provider, channel: str, to: str, row: dict[str, Any], attempt: int
    ) -> SendResult:
        template = str(row["template"])
        params = {str(k): str(v) for k, v in dict(row["params"]).items()}
        code = self._templates.code_for(provider.name, template)
        out_id = reconciliation.out_id(row["id"], attempt)
        if channel == "wechat":
            assert isinstance(provider, WechatProvider)
            return await provider.send(
                WechatMessage(openid=to, template_id=code, params=params, out_id=out_id)
            )
        assert not isinstance(provider, WechatProvider)
        return await provider.send(
            SmsMessage(phone_e164=to, template_code=code, params=params, out_id=out_id)
        )

    async def _sent(
        self,
        row: dict[str, Any],
        attempt: int,
        result: SendResult,
        at: datetime,
        *,
        reconciled: bool = False,
    ) -> None:
        source = row["source_event_id"]
        event = EventEnvelope.wrap(
            NotificationSentV1(
                delivery_id=row["id"],
                case_id=row["case_id"],
                source_event_id=source,
                recipient_kind=str(row["recipient_kind"]),
                recipient_ref=str(row["recipient_ref"]),
                channel=str(row["channel"]),
                template=str(row["template"]),
                provider=result.provider,
                provider_message_id=result.provider_message_id,
                sent_at=at,
            ),
            producer=SERVICE,
            correlation_id=row["correlation_id"],
            causation_id=source,
        )
        await self._store.mark_sent(
            row["id"],
            attempt=attempt,
            provider=result.provider,
            provider_message_id=result.provider_message_id,
            sent_at=at,
            event=event,
            code=result.code if reconciled else "OK",
            reconciled=reconciled,
        )

    async def _fail(
        self,
        row: dict[str, Any],
        reserved: Reserved | None,
        provider: str | None,
        code: str,
        error: str,
        at: datetime,
        *,
        address: Any = None,
    ) -> None:
        source = row["source_event_id"]
        event = EventEnvelope.wrap(
            NotificationFailedV1(
                delivery_id=row["id"],
                case_id=row["case_id"],
                source_event_id=source,
                recipient_kind=str(row["recipient_kind"]),
                recipient_ref=str(row["recipient_ref"]),
                channel=str(row["channel"]),
                template=str(row["template"]),
                provider=provider,
                error_code=code,
                attempts=reserved.attempt if reserved else int(row["attempts"]),
                failed_at=at,
            ),
            producer=SERVICE,
            correlation_id=row["correlation_id"],
            causation_id=source,
        )
        fallback = None
        if (
            row["channel"] == "wechat"
            and address is not None
            and getattr(address, "phone", None)
            and row["recipient_kind"] == domain.VOTER
        ):
            # WeChat failed for good (the voter refused, the openid is gone…): SMS instead.
            source_envelope = EventEnvelope(
                event_id=source,
                event_type="fallback",
                event_version=1,
                occurred_at=at,
                producer=SERVICE,
                aggregate_type="notification",
                aggregate_id=str(row["id"]),
                correlation_id=row["correlation_id"],
                payload={},
            )
            planned = domain.PlannedDelivery(
                delivery_id=domain.delivery_id(
                    source, str(row["recipient_kind"]), str(row["recipient_ref"]), "sms"
                ),
                source_event_id=source,
                case_id=row["case_id"],
                recipient_kind=str(row["recipient_kind"]),
                recipient_ref=str(row["recipient_ref"]),
                channel="sms",
                template=str(row["template"]),
                params=dict(row["params"]),
                urgent=bool(row["urgent"]),
            )
            fallback = (source_envelope, planned)
        await self._store.mark_failed(
            row["id"],
            attempt=reserved.attempt if reserved else None,
            provider=provider,
            code=code,
            error=error,
            now=at,
            event=event,
            fallback=fallback,
        )
