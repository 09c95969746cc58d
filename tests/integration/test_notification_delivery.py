"""Delivery semantics on real Kafka + PostgreSQL with the real Aliyun SDK against the fake:
once per (event, recipient, channel), backoff, permanent failures, per-number limits by
deferral, quiet hours, the circuit breaker, and no personal data in any log line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import structlog
from pydantic import SecretStr

from services.notification import domain, handlers
from services.notification.app import MIGRATIONS, SCHEMA, build_runtime, seed
from services.notification.delivery_rules import (
    BreakerSettings,
    DispatchSettings,
    QuietHoursSettings,
    RateLimit,
    RateLimitSettings,
)
from services.notification.providers import AliyunSmsSettings, SmsSettings, build_sms_provider
from services.notification.settings import NotificationSettings
from services.notification.store import NotificationStore
from shared import topics
from shared.events import CaseAssignedV1, EventEnvelope, VoterContactRecordedV1
from shared.messaging.inbox import Delivery
from shared.metrics import EVENTS_CONSUMED
from shared.settings import DatabaseSettings, OutboxSettings
from tests.fakes.aliyun_sms import FakeAliyunServer
from tests.helpers import (
    eventually,
    kafka_settings,
    migrate,
    open_pool,
    produce_envelope,
    read_topic,
)

pytestmark = pytest.mark.integration

AK_ID, AK_SECRET = "ak-notify", "sk-notify"
DEPARTMENT_PHONE = "13800138002"  # transport's contact in wenling.json
VOTER_PHONE = "+8613912345678"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAliyunServer]:
    with FakeAliyunServer(access_key_id=AK_ID, access_key_secret=AK_SECRET) as server:
        yield server


def settings_for(
    database_url: str, topic_prefix: str, fake: FakeAliyunServer, **overrides: Any
) -> NotificationSettings:
    values: dict[str, Any] = {
        "kafka": kafka_settings(topic_prefix),
        "database": DatabaseSettings(url=database_url),
        "outbox": OutboxSettings(poll_interval_s=0.2),
        "sms": SmsSettings(
            provider="aliyun",
            aliyun=AliyunSmsSettings(
                access_key_id=AK_ID,
                access_key_secret=SecretStr(AK_SECRET),
                endpoint=fake.endpoint,
                protocol="http",
                timeout_ms=2000,
            ),
        ),
        "dispatch": DispatchSettings(
            poll_interval_s=0.1, backoff_base_s=0.05, backoff_max_s=0.3, max_attempts=3
        ),
        "limits": RateLimitSettings(enabled=False),
        "quiet_hours": QuietHoursSettings(enabled=False),
        "breaker": BreakerSettings(failure_threshold=2, open_s=0.3, max_open_s=1.0),
        "recipients": domain.RecipientSettings(
            audiences=["department", "voter", "station_staff", "committee"]
        ),
    }
    values.update(overrides)
    return NotificationSettings(**values)


def assigned(department_id: str = "transport", opinion_id: UUID | None = None) -> EventEnvelope:
    now = datetime.now(UTC)
    event = CaseAssignedV1(
        case_id=uuid4(),
        opinion_id=opinion_id or uuid4(),
        receipt_code="ABCDE-FGHJK",
        department_id=department_id,
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
        kind="general",
        assigned_at=now,
        acknowledge_due_at=now + timedelta(days=1),
        complete_due_at=now + timedelta(days=9),
    )
    return EventEnvelope.wrap(event, producer="routing", correlation_id=uuid4())


@pytest.fixture
async def prepared(infra, database_url, topic_prefix, fake) -> NotificationSettings:
    fake.reset()
    settings = settings_for(database_url, topic_prefix, fake)
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(settings)
    return settings


@pytest.fixture
def logs() -> Iterator[list[Any]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def assert_no_personal_data(logs: list[Any], *values: str) -> None:
    text = json.dumps(logs, default=str, ensure_ascii=False)
    for value in (DEPARTMENT_PHONE, VOTER_PHONE, VOTER_PHONE.removeprefix("+86"), *values):
        assert value not in text


async def test_the_same_case_assigned_three_times_sends_one_sms(prepared, fake, logs):
    runtime = build_runtime(prepared)
    await runtime.start()
    try:
        envelope = assigned()
        case_topic = prepared.kafka.topic(topics.CASE)
        duplicates = EVENTS_CONSUMED.labels("notification", case_topic, "duplicate")
        before = duplicates._value.get()
        for _ in range(3):
            await produce_envelope(case_topic, envelope)
        await eventually(lambda: _async(duplicates._value.get() - before >= 2), what="3 deliveries")
        await eventually(lambda: _async(fake.requests()), what="the SMS")
        sent = await read_topic(prepared.kafka.topic(topics.NOTIFICATION), at_least=1)
        assert len(sent) == 1
        assert len(fake.requests()) == 1
        assert fake.requests()[0]["phone_numbers"] == DEPARTMENT_PHONE
        rows = await runtime.pool.fetch(
            "SELECT recipient_kind, channel, status FROM deliveries ORDER BY 1"
        )
        # The department's SMS went; the voter's waits for their contact (not known yet).
        assert [tuple(r) for r in rows] == [
            ("department", "sms", "sent"),
            ("voter", "sms", "pending"),
        ]
    finally:
        await runtime.stop()
    assert_no_personal_data(logs)


async def _async(value: Any) -> Any:
    return value


async def test_six_messages_to_one_number_one_now_the_rest_deferred_none_dropped(
    prepared, fake, logs
):
    limits = [RateLimit(window_s=0.5, max_count=1), RateLimit(window_s=2.0, max_count=2)]
    pool = await open_pool(prepared.database.url, SCHEMA)
    store = NotificationStore(pool, topic_prefix=prepared.kafka.topic_prefix)
    provider = build_sms_provider(prepared.sms)
    dispatcher = handlers.Dispatcher(
        store,
        provider,
        prepared.dispatch,
        prepared.templates,
        limits=RateLimitSettings(sms=limits),
        quiet_hours=QuietHoursSettings(enabled=False),
    )
    try:
        for i in range(6):
            envelope = assigned()
            planned = [
                p for p in domain.plan_deliveries(envelope) if p.recipient_kind == "department"
            ]
            assert await store.plan(Delivery("test", "t", 0, i), envelope, planned)
        assert await dispatcher.dispatch_once() == 1
        rows = await pool.fetch("SELECT status, deferred_reason, next_attempt_at FROM deliveries")
        assert sorted(r["status"] for r in rows) == ["pending"] * 5 + ["sent"]
        now = datetime.now(UTC)
        assert all(
            r["deferred_reason"] == "rate_limit" and r["next_attempt_at"] > now
            for r in rows
            if r["status"] == "pending"
        )
        assert len(fake.requests()) == 1

        async def all_sent() -> bool:
            await dispatcher.dispatch_once()
            count: int = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status='sent'")
            return count == 6

        await eventually(all_sent, what="all six messages")
        requests = fake.requests()
        assert len(requests) == 6
        assert len({r["out_id"] for r in requests}) == 6
        assert all(a["code"] == "OK" for a in fake.attempts())  # never hit the provider's limit
        started = sorted(
            r["started_at"] for r in await pool.fetch("SELECT started_at FROM delivery_attempts")
        )
        assert len(started) == 6
        for limit in limits:
            window = timedelta(seconds=limit.window_s)
            for t in started:
                assert sum(1 for s in started if t <= s < t + window) <= limit.max_count
    finally:
        await provider.aclose()
        await pool.close()
    assert_no_personal_data(logs)


async def test_provider_down_for_a_while_nothing_lost_nothing_doubled(prepared, fake, logs):
    fake.script(["HTTP_503"] * 8)
    runtime = build_runtime(prepared)
    await runtime.start()
    try:
        case_topic = prepared.kafka.topic(topics.CASE)
        departments = ["transport", "housing", "utilities"]
        for department in departments:
            await produce_envelope(case_topic, assigned(department))

        async def delivered() -> bool:
            return len(fake.requests()) >= 3

        await eventually(delivered, timeout=60, what="all three SMS after the outage")
        records = await read_topic(prepared.kafka.topic(topics.NOTIFICATION), at_least=3)
        ids = [json.loads(r.value)["payload"]["delivery_id"] for r in records]
        assert len(ids) == len(set(ids)) == 3
        assert len(fake.requests()) == 3
        assert len({r["out_id"] for r in fake.requests()}) == 3
        outcomes = await runtime.pool.fetch(
            "SELECT outcome, count(*) AS n FROM delivery_attempts GROUP BY 1"
        )
        by_outcome = {r["outcome"]: r["n"] for r in outcomes}
        assert by_outcome["sent"] == 3
        assert by_outcome.get("retry", 0) >= 1
        statuses = await runtime.pool.fetch(
            "SELECT status FROM deliveries WHERE recipient_kind = 'department'"
        )
        assert [r["status"] for r in statuses] == ["sent"] * 3
    finally:
        await runtime.stop()
    events = [entry["event"] for entry in logs]
    assert "circuit_opened" in events
    assert "delivery_deferred" in events  # messages waited while the breaker was open
    assert_no_personal_data(logs)


async def test_a_permanent_error_is_not_retried_and_publishes_failed(prepared, fake, logs):
    fake.script(["isv.MOBILE_NUMBER_ILLEGAL"])
    runtime = build_runtime(prepared)
    await runtime.start()
    try:
        await produce_envelope(prepared.kafka.topic(topics.CASE), assigned())
        records = await read_topic(prepared.kafka.topic(topics.NOTIFICATION), at_least=1)
        payloads = [json.loads(r.value) for r in records]
        assert [p["event_type"] for p in payloads] == ["notification.failed"]
        assert payloads[0]["payload"]["error_code"] == "isv.MOBILE_NUMBER_ILLEGAL"
        assert payloads[0]["payload"]["attempts"] == 1
        row = await runtime.pool.fetchrow(
            "SELECT status, attempts, error_code FROM deliveries WHERE recipient_kind='department'"
        )
        assert row is not None
        assert tuple(row) == ("failed", 1, "isv.MOBILE_NUMBER_ILLEGAL")
        assert len(fake.attempts()) == 1
    finally:
        await runtime.stop()
    assert_no_personal_data(logs)


async def test_voter_messages_wait_for_the_morning_department_ones_do_not(prepared, fake, logs):
    clock = [datetime(2025, 3, 3, 22, 30, tzinfo=domain.CHINA)]
    pool = await open_pool(prepared.database.url, SCHEMA)
    store = NotificationStore(pool, topic_prefix=prepared.kafka.topic_prefix)
    provider = build_sms_provider(prepared.sms)
    dispatcher = handlers.Dispatcher(
        store,
        provider,
        prepared.dispatch,
        prepared.templates,
        limits=RateLimitSettings(enabled=False),
        quiet_hours=QuietHoursSettings(),
        clock=lambda: clock[0],
    )
    try:
        opinion_id = uuid4()
        contact = VoterContactRecordedV1(opinion_id=opinion_id, phone_e164=VOTER_PHONE)
        contact_env = EventEnvelope.wrap(contact, producer="intake", correlation_id=opinion_id)
        await store.record_voter_contact(Delivery("c", "t", 0, 0), contact_env, contact)
        envelope = assigned(opinion_id=opinion_id)
        planned = await store.plan_event(
            Delivery("t", "t", 0, 1), envelope, lambda d: domain.plan_deliveries(envelope, d)
        )
        assert planned is not None
        assert sorted((p.recipient_kind, p.channel) for p in planned) == [
            ("department", "sms"),
            ("voter", "sms"),
        ]
        await pool.execute("UPDATE deliveries SET next_attempt_at = $1", clock[0])
        assert await dispatcher.dispatch_once() == 1
        voter = await pool.fetchrow(
            "SELECT status, deferred_reason, next_attempt_at FROM deliveries "
            "WHERE recipient_kind = 'voter'"
        )
        assert voter is not None
        assert voter["status"] == "pending"
        assert voter["deferred_reason"] == "quiet_hours"
        assert voter["next_attempt_at"] == datetime(2025, 3, 4, 8, 0, tzinfo=domain.CHINA)
        assert [r["phone_numbers"] for r in fake.requests()] == [DEPARTMENT_PHONE]

        clock[0] = datetime(2025, 3, 4, 8, 0, 1, tzinfo=domain.CHINA)
        assert await dispatcher.dispatch_once() == 1
        assert [r["phone_numbers"] for r in fake.requests()] == [
            DEPARTMENT_PHONE,
            VOTER_PHONE.removeprefix("+86"),
        ]
    finally:
        await provider.aclose()
        await pool.close()
    assert_no_personal_data(logs)


async def test_a_sender_that_died_before_the_provider_got_it_is_looked_up_then_sent_once(
    prepared, fake, logs
):
    pool = await open_pool(prepared.database.url, SCHEMA)
    store = NotificationStore(pool, topic_prefix=prepared.kafka.topic_prefix)
    provider = build_sms_provider(prepared.sms)
    clock = [datetime.now(UTC)]
    dispatcher = handlers.Dispatcher(
        store,
        provider,
        prepared.dispatch.model_copy(update={"reconcile_grace_s": 60}),
        prepared.templates,
        limits=RateLimitSettings(enabled=False),
        clock=lambda: clock[0],
    )
    try:
        envelope = assigned()
        planned = [p for p in domain.plan_deliveries(envelope) if p.recipient_kind == "department"]
        await store.plan(Delivery("t", "t", 0, 0), envelope, planned)
        started = clock[0] = datetime.now(UTC)
        # A sender claims and records its attempt, then dies before its call reaches Aliyun.
        claimed = await store.claim_due(
            now=started, limit=10, lease=timedelta(seconds=60), channels=["sms"]
        )
        await store.reserve(
            claimed[0]["id"],
            now=started,
            channel="sms",
            provider="aliyun",
            rate_key=None,
            limits=[],
        )
        assert await dispatcher.dispatch_once() == 0  # still leased
        await pool.execute("UPDATE deliveries SET lease_until = $1", started)
        clock[0] = started + timedelta(seconds=1)
        # Aliyun has no such OutId, but the attempt is younger than the grace: wait.
        assert await dispatcher.dispatch_once() == 0
        row = await pool.fetchrow("SELECT status, deferred_reason, next_attempt_at FROM deliveries")
        assert row is not None
        assert (row["status"], row["deferred_reason"]) == ("pending", "reconcile_grace")
        assert row["next_attempt_at"] == started + timedelta(seconds=60)
        assert fake.requests() == []
        assert len(fake.queries()) == 1

        clock[0] = started + timedelta(seconds=61)
        assert await dispatcher.dispatch_once() == 1
        attempts = await pool.fetch(
            "SELECT attempt, outcome FROM delivery_attempts ORDER BY attempt"
        )
        assert [tuple(a) for a in attempts] == [(1, "not_sent"), (2, "sent")]
        [sent] = fake.requests()
        assert sent["out_id"] == f"{claimed[0]['id']}:2"
    finally:
        await provider.aclose()
        await pool.close()
    events = [entry["event"] for entry in logs]
    assert "delivery_reconciled_not_sent" in events
    assert "delivery_resend_after_unknown_outcome" not in events
    assert_no_personal_data(logs)


async def test_a_send_whose_answer_never_came_is_looked_up_not_sent_again(prepared, fake, logs):
    """Aliyun took the message but its answer came after our timeout: the attempt keeps no
    outcome, and the next try finds the OutId at the provider instead of sending twice."""
    settings = prepared.sms.model_copy(
        update={"aliyun": prepared.sms.aliyun.model_copy(update={"timeout_ms": 300})}
    )
    pool = await open_pool(prepared.database.url, SCHEMA)
    store = NotificationStore(pool, topic_prefix=prepared.kafka.topic_prefix)
    provider = build_sms_provider(settings)
    clock = [datetime.now(UTC)]
    dispatcher = handlers.Dispatcher(
        store,
        provider,
        prepared.dispatch.model_copy(update={"reconcile_grace_s": 60}),
        prepared.templates,
        limits=RateLimitSettings(enabled=False),
        clock=lambda: clock[0],
    )
    fake.send_delay(5)
    try:
        envelope = assigned()
        planned = [p for p in domain.plan_deliveries(envelope) if p.recipient_kind == "department"]
        await store.plan(Delivery("t", "t", 0, 0), envelope, planned)
        started = clock[0] = datetime.now(UTC)
        assert await dispatcher.dispatch_once() == 1  # sent, but the answer timed out
        [attempt] = await pool.fetch("SELECT attempt, outcome, code FROM delivery_attempts")
        assert (attempt["attempt"], attempt["outcome"]) == (1, None), attempt["code"]
        assert len(fake.requests()) == 1
        fake.send_delay(0)

        clock[0] = started + timedelta(seconds=61)
        assert await dispatcher.dispatch_once() == 1
        attempts = await pool.fetch(
            "SELECT attempt, outcome FROM delivery_attempts ORDER BY attempt"
        )
        assert [tuple(a) for a in attempts] == [(1, "sent")]
        status = await pool.fetchval("SELECT status FROM deliveries")
        assert status == "sent"
        assert len(fake.requests()) == 1, "the message went out twice"
    finally:
        fake.send_delay(0)
        await provider.aclose()
        await pool.close()
    events = [entry["event"] for entry in logs]
    assert "delivery_reconciled_sent" in events
    assert "delivery_resend_after_unknown_outcome" not in events
    assert_no_personal_data(logs)
