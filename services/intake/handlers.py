"""Intake's message handlers: a case or evaluation event → a stage of the voter's history."""

from __future__ import annotations

from services.intake.domain import grouping_of, stage_of
from services.intake.store import IntakeStore
from shared.events import EventEnvelope
from shared.messaging.inbox import Delivery


async def on_case_event(store: IntakeStore, envelope: EventEnvelope, delivery: Delivery) -> str:
    """Record the stage an event means, or the grouping of opinions into a suggestion
    (idempotent; any order); returns the outcome."""
    grouping = grouping_of(envelope)
    if grouping is not None:
        done = await store.record_grouping(delivery, envelope.event_id, grouping)
        return "processed" if done else "duplicate"
    stage = stage_of(envelope)
    if stage is None:
        return "ignored"  # not something the voter sees (reminders, unknown types)
    if not await store.record_stage(delivery, envelope, stage):
        return "duplicate"
    return "processed"
