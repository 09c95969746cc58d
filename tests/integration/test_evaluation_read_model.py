"""Evaluation's read model: the same events redelivered or out of order give the same state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.handlers import on_event
from services.evaluation.store import EvaluationStore
from shared.events import CaseAssignedV1, EventEnvelope, NotificationSentV1
from shared.messaging.inbox import Delivery
from tests.helpers import migrate, open_pool

pytestmark = pytest.mark.integration


def _story() -> list[EventEnvelope]:
    case_id, correlation = uuid4(), uuid4()
    at = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
    assigned = EventEnvelope.wrap(
        CaseAssignedV1(
            case_id=case_id,
            opinion_id=uuid4(),
            receipt_code="ABCDE-FGHJK",
            department_id="transport",
            station_id="zeguo-1",
            town_id="zeguo",
            category_id="traffic",
            kind="general",
            assigned_at=at,
            acknowledge_due_at=at + timedelta(days=1),
            complete_due_at=at + timedelta(days=9),
        ),
        producer="routing",
        correlation_id=correlation,
    )

    def sent(minutes: int) -> EventEnvelope:
        return assigned.caused(
            NotificationSentV1(
                delivery_id=uuid4(),
                case_id=case_id,
                source_event_id=assigned.event_id,
                recipient_kind="department",
                recipient_ref=f"transport-{minutes}",
                channel="sms",
                template="case_assigned_department",
                provider="aliyun",
                provider_message_id=f"biz-{minutes}",
                sent_at=at + timedelta(minutes=minutes),
            ),
            producer="notification",
        )

    return [assigned, sent(1), sent(2)]


async def _fold(store: EvaluationStore, envelopes: list[EventEnvelope], case_id) -> dict[str, Any]:
    for offset, envelope in enumerate(envelopes):
        topic = "minyi.case" if envelope.event_type.startswith("case.") else "minyi.notification"
        await on_event(
            store, envelope, Delivery(f"evaluation.{topic}", topic, 0, offset), links=None
        )
    row = await store.case(case_id)
    assert row is not None
    row.pop("updated_at")
    return row


async def test_every_order_and_redelivery_gives_the_same_read_model(infra, database_url):
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    try:
        store = EvaluationStore(pool)
        story = _story()
        case_id = story[0].payload_as(CaseAssignedV1).case_id
        states = []
        for order in itertools.permutations(story):
            await pool.execute("TRUNCATE case_facts, kpi_counters, processed_messages")
            # Each order, with every event delivered twice.
            states.append(await _fold(store, [e for e in order for _ in range(2)], case_id))
        assert all(s == states[0] for s in states)
        final = states[0]
        assert final["department_id"] == "transport"
        assert final["notifications_sent"] == 2
        assert final["first_notified_at"] == datetime(2025, 3, 3, 1, 1, tzinfo=UTC)
    finally:
        await pool.close()
