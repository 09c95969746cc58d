"""What to do with an attempt whose outcome was never recorded (its sender died during the
provider call), given what the provider says about it. Pure: no I/O, time comes in.

| the provider says                 | the attempt is …            | then                          |
|-----------------------------------|-----------------------------|-------------------------------|
| found                             | any age                     | record it sent; send nothing  |
| not found                         | older than the grace        | send again (it never went)    |
| not found                         | younger than the grace      | wait until the grace is over  |
| the query failed (5xx, throttled) | any age                     | ask again after a backoff     |
| cannot be asked (WeChat, too old) | any age                     | `resend_uncertain`: resend    |
|                                   |                             | blind, or fail as UNCERTAIN   |

The grace covers the provider's lag: a message it took a moment ago may not be in its query
results yet (`dispatch.reconcile_grace_s`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from services.notification.delivery_rules import DispatchSettings, retry_delay
from services.notification.providers.base import Lookup

Action = Literal["record_sent", "send", "wait", "ask_again", "resend_blind", "give_up"]


@dataclass(frozen=True)
class Decision:
    action: Action
    until: datetime | None = None  # for "wait" and "ask_again"


def out_id(delivery_id: UUID | str, attempt: int) -> str:
    """The id an attempt carries to the provider (Aliyun OutId, Tencent SessionContext):
    unique per (delivery, attempt), so a lookup finds this very attempt."""
    return f"{delivery_id}:{attempt}"


def parse_out_id(value: str | None) -> tuple[UUID, int] | None:
    """(delivery id, attempt) from an OutId; None for anything else (an older bare id too)."""
    if not value:
        return None
    delivery, sep, attempt = value.rpartition(":")
    if not sep or not attempt.isdigit():
        return None
    try:
        return UUID(delivery), int(attempt)
    except ValueError:
        return None


def decide(
    lookup: Lookup,
    *,
    started_at: datetime,
    now: datetime,
    settings: DispatchSettings,
    failed_lookups: int = 0,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """The rule of the table above. `failed_lookups`: earlier failed queries for this attempt
    (the backoff grows with them, as it does with failed sends)."""
    if lookup.answer == "found":
        return Decision("record_sent")
    if lookup.answer == "not_found":
        final_at = started_at + timedelta(seconds=settings.reconcile_grace_s)
        if now >= final_at:
            return Decision("send")
        return Decision("wait", until=final_at)
    if lookup.answer == "unavailable":
        return Decision("ask_again", until=now + retry_delay(failed_lookups + 1, settings, rand))
    return Decision("resend_blind" if settings.resend_uncertain else "give_up")
