"""When a message may go out: backoff with jitter, per-number rate limits, quiet hours and the
circuit breaker of each provider. Pure rules (the breaker keeps state but does no I/O); time
always comes in as an argument or from an injected clock."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

Clock = Callable[[], datetime]


class DispatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(default=50, ge=1)
    concurrency: int = Field(
        default=16,
        ge=1,
        description="Provider calls in flight at once, each for a different delivery (a call "
        "takes tens of milliseconds, mostly waiting). 1 = one after another. While a circuit "
        "breaker is not closed, calls go one at a time (a single probe).",
    )
    max_attempts: int = Field(default=8, ge=1, description="Provider calls before giving up.")
    lease_s: float = Field(default=60, gt=0, description="A crashed sender's claim expires.")
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=600, gt=0)
    jitter: float = Field(
        default=0.5, ge=0, le=1, description="Share of each backoff delay drawn at random."
    )
    poll_interval_s: float = Field(default=1.0, gt=0)
    no_contact_retry_s: float = Field(
        default=60, gt=0, description="A voter's contact may arrive after the event: wait."
    )
    resend_uncertain: bool = Field(
        default=True,
        description="A message whose sender died during the provider call, where the provider "
        "cannot be asked whether it took it (WeChat; a provider changed since): True resends "
        "it (prefers a duplicate to a loss), False records it failed (UNCERTAIN). SMS "
        "providers are asked first (reconciliation) and this does not apply to them.",
    )
    reconcile_grace_s: float = Field(
        default=60,
        ge=0,
        description="How old an attempt whose outcome is unknown must be before the "
        "provider's \"not found\" is believed (its query lags the send by seconds; Tencent's "
        "status reports by up to minutes). A younger one waits until then.",
    )


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    window_s: float = Field(gt=0)
    max_count: int = Field(ge=1)


def _aliyun_limits() -> list[RateLimit]:
    # Aliyun's defaults per number and signature: 1/min, 5/hour, 10/day. We stay at or below.
    return [
        RateLimit(window_s=60, max_count=1),
        RateLimit(window_s=3600, max_count=5),
        RateLimit(window_s=86400, max_count=10),
    ]


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    sms: list[RateLimit] = Field(default_factory=_aliyun_limits)


class QuietHoursSettings(BaseModel):
    """Non-urgent messages to voters wait for the morning."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    start: time = time(21, 0)
    end: time = time(8, 0)
    timezone: str = "Asia/Shanghai"


class BreakerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failure_threshold: int = Field(default=5, ge=1, description="Consecutive outage errors.")
    open_s: float = Field(default=30, gt=0, description="How long an open breaker waits.")
    max_open_s: float = Field(default=600, gt=0)


def retry_delay(
    attempts: int, settings: DispatchSettings, rand: Callable[[], float] = random.random
) -> timedelta:
    """Exponential backoff base · 2^(attempts-1), capped, of which `jitter` is random:
    the delay is drawn from [d·(1-jitter), d], so many failed senders do not return together."""
    cap = min(settings.backoff_base_s * 2 ** max(0, attempts - 1), settings.backoff_max_s)
    seconds = cap * (1 - settings.jitter * (1 - rand()))
    return timedelta(seconds=seconds)


def next_allowed(
    sent_at: Sequence[datetime], now: datetime, limits: Sequence[RateLimit]
) -> datetime | None:
    """None if one more message may go now; otherwise the earliest time it may.

    `sent_at`: when earlier messages to the same number (and provider) went out. For each
    window holding `max_count` messages already, the next may go when the oldest that must
    leave the window has left it.
    """
    earliest: datetime | None = None
    for limit in limits:
        window = timedelta(seconds=limit.window_s)
        inside = sorted(t for t in sent_at if t > now - window)
        if len(inside) >= limit.max_count:
            free_at = inside[len(inside) - limit.max_count] + window
            if earliest is None or free_at > earliest:
                earliest = free_at
    return earliest


def rate_key(provider: str, sign: str, address: str) -> str:
    """The per-number counter's key (a hash: the number itself is not stored twice)."""
    return hashlib.sha256(f"{provider}|{sign}|{address}".encode()).hexdigest()


def quiet_until(now: datetime, settings: QuietHoursSettings) -> datetime | None:
    """The end of the quiet hours if `now` falls in them, else None."""
    if not settings.enabled or settings.start == settings.end:
        return None
    tz = ZoneInfo(settings.timezone)
    local = now.astimezone(tz)
    t = local.time()
    if settings.start > settings.end:  # spans midnight, e.g. 21:00–08:00
        quiet = t >= settings.start or t < settings.end
    else:
        quiet = settings.start <= t < settings.end
    if not quiet:
        return None
    release = datetime.combine(local.date(), settings.end, tzinfo=tz)
    if release <= local:
        release = datetime.combine(local.date() + timedelta(days=1), settings.end, tzinfo=tz)
    return release


@dataclass
class CircuitBreaker:
    """Per provider: `failure_threshold` consecutive outage errors open it; while open nothing
    is sent (messages wait, they are not attempts); after `open_s` one probe goes (half-open):
    success closes it, another outage error opens it again for twice as long (capped)."""

    name: str
    settings: BreakerSettings
    clock: Clock
    failures: int = 0
    opened_until: datetime | None = None
    open_for_s: float = 0.0
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_until is None:
            return "closed"
        return "open" if self.clock() < self.opened_until else "half_open"

    def blocked_until(self) -> datetime | None:
        """None if a call may go now; otherwise when to try again."""
        if self.opened_until is None:
            return None
        now = self.clock()
        if now < self.opened_until:
            return self.opened_until
        if self.probing:  # one probe at a time
            return now + timedelta(seconds=min(1.0, self.settings.open_s))
        self.probing = True
        return None

    def record(self, *, success: bool, outage: bool) -> bool:
        """Feed an outcome; True if this opened the breaker."""
        self.probing = False
        if success or not outage:
            self.failures = 0
            self.opened_until = None
            self.open_for_s = 0.0
            return False
        self.failures += 1
        half_open = self.opened_until is not None
        if half_open or self.failures >= self.settings.failure_threshold:
            self.open_for_s = (
                min(self.open_for_s * 2, self.settings.max_open_s)
                if half_open and self.open_for_s
                else self.settings.open_s
            )
            self.opened_until = self.clock() + timedelta(seconds=self.open_for_s)
            return True
        return False
