from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.notification import domain
from shared.events import CaseAssignedV1, EventEnvelope, NotificationSentV1


def _assigned() -> EventEnvelope:
    now = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
    event = CaseAssignedV1(
        case_id=uuid4(),
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        department_id="transport",
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
        kind="general",
        assigned_at=now,
        acknowledge_due_at=now + timedelta(days=1),
        complete_due_at=now + timedelta(days=9),
    )
    return EventEnvelope.wrap(event, producer="routing", correlation_id=uuid4())


def test_a_new_case_tells_its_department_by_sms_once():
    envelope = _assigned()
    planned = domain.plan_deliveries(envelope)
    assert [(p.recipient_kind, p.recipient_ref, p.channel) for p in planned] == [
        ("department", "transport", "sms")
    ]
    assert planned[0].params == {
        "receipt_code": "ABCDE-FGHJK",
        "acknowledge_due": "03月04日09:00",
        "complete_due": "03月12日09:00",
    }
    # The same event planned again gives the same delivery id: the database keeps one.
    assert domain.plan_deliveries(envelope)[0].delivery_id == planned[0].delivery_id


def test_events_without_recipients_plan_nothing():
    sent = NotificationSentV1(
        delivery_id=uuid4(),
        case_id=uuid4(),
        source_event_id=uuid4(),
        recipient_kind="department",
        recipient_ref="transport",
        channel="sms",
        template="case_assigned_department",
        provider="console",
        provider_message_id=None,
        sent_at=datetime.now(UTC),
    )
    envelope = EventEnvelope.wrap(sent, producer="notification", correlation_id=uuid4())
    assert domain.plan_deliveries(envelope) == []


def test_retry_delay_grows_and_is_capped():
    s = domain.DispatchSettings(backoff_base_s=2, backoff_max_s=30)
    assert [domain.retry_delay(n, s).total_seconds() for n in (1, 2, 3, 4, 5, 6)] == [
        2,
        4,
        8,
        16,
        30,
        30,
    ]
