"""A notification process killed during the provider call (shared/failpoints), restarted: it
asks the provider (Aliyun QuerySendDetails, Tencent PullSmsSendStatusByPhoneNumber, through the
real SDKs against the fakes) before it sends anything again. Real Kafka and PostgreSQL.

* killed after the provider took the message → no second SMS, the delivery recorded sent;
* killed before the provider got it → sent exactly once (grace 0 here; the grace itself is
  pinned in test_notification_delivery);
* the provider's query failing (5xx, throttling) → nothing is sent until it answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from services.notification.app import SCHEMA
from shared import topics
from shared.db.pool import Pool
from shared.events import CaseAssignedV1, EventEnvelope
from tests.fakes.aliyun_sms import FakeAliyunServer
from tests.fakes.tencent_sms import FakeTencentServer
from tests.helpers import eventually, kafka_settings, open_pool, produce_envelope, read_topic
from tests.processes import ServiceProcess, run_command, service_env

pytestmark = pytest.mark.integration

AK_ID, AK_SECRET = "ak-reconcile", "sk-reconcile"
TC_ID, TC_KEY, TC_APP = "AKIDreconcile", "tc-reconcile", "1400000000"
DEPARTMENT_PHONE = "13800138002"  # transport's contact in wenling.json
N = "MINYI_NOTIFICATION__"


@pytest.fixture(scope="module")
def aliyun() -> Iterator[FakeAliyunServer]:
    with FakeAliyunServer(access_key_id=AK_ID, access_key_secret=AK_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def tencent() -> Iterator[FakeTencentServer]:
    with FakeTencentServer(secret_id=TC_ID, secret_key=TC_KEY) as server:
        yield server


def provider_env(name: str, endpoint: str) -> dict[str, str]:
    if name == "aliyun":
        return {
            f"{N}SMS__PROVIDER": "aliyun",
            f"{N}SMS__ALIYUN__ENDPOINT": endpoint,
            f"{N}SMS__ALIYUN__PROTOCOL": "http",
            f"{N}SMS__ALIYUN__ACCESS_KEY_ID": AK_ID,
            f"{N}SMS__ALIYUN__ACCESS_KEY_SECRET": AK_SECRET,
        }
    return {
        f"{N}SMS__PROVIDER": "tencent",
        f"{N}SMS__TENCENT__ENDPOINT": endpoint,
        f"{N}SMS__TENCENT__PROTOCOL": "http",
        f"{N}SMS__TENCENT__SECRET_ID": TC_ID,
        f"{N}SMS__TENCENT__SECRET_KEY": TC_KEY,
        f"{N}SMS__TENCENT__SMS_SDK_APP_ID": TC_APP,
    }


def notification(
    database_url: str, topic_prefix: str, log_dir: Path, provider: str, endpoint: str
) -> ServiceProcess:
    env = service_env(
        "notification",
        database_url=database_url,
        topic_prefix=topic_prefix,
        extra={
            **provider_env(provider, endpoint),
            # A dead sender's claim expires at once; "not found" is believed at once.
            f"{N}DISPATCH__LEASE_S": "1",
            f"{N}DISPATCH__RECONCILE_GRACE_S": "0",
            f"{N}DISPATCH__POLL_INTERVAL_S": "0.1",
            f"{N}DISPATCH__BACKOFF_BASE_S": "0.05",
            f"{N}DISPATCH__BACKOFF_MAX_S": "0.2",
            f"{N}LIMITS__ENABLED": "false",
            f"{N}QUIET_HOURS__ENABLED": "false",
        },
    )
    run_command("notification", "migrate", env)
    run_command("notification", "seed", env)
    return ServiceProcess("notification", env, log_dir)


def assigned() -> EventEnvelope:
    now = datetime.now(UTC)
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


async def killed_during_the_call(
    proc: ServiceProcess, failpoint: str, topic_prefix: str
) -> EventEnvelope:
    """Start with the failpoint armed, hand it a case, and see it die inside the call."""
    proc.start(wait_ready=False, extra_env={"MINYI_FAILPOINTS": failpoint})
    proc.wait_ready(timeout=120)  # the shared broker can be slow to hand out partitions
    envelope = assigned()
    await produce_envelope(kafka_settings(topic_prefix).topic(topics.CASE), envelope)
    assert proc.wait_exit(timeout=60) == 137, proc.log_tail()
    return envelope


async def department_delivery(pool: Pool) -> dict[str, Any]:
    row = await pool.fetchrow(
        """SELECT id, status, attempts, provider_message_id FROM deliveries
           WHERE recipient_kind = 'department'"""
    )
    assert row is not None
    return dict(row)


async def attempts_of(pool: Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        """SELECT attempt, outcome, reconciled_at IS NOT NULL AS reconciled
           FROM delivery_attempts ORDER BY attempt"""
    )
    return [tuple(r) for r in rows]


async def wait_sent(pool: Pool) -> dict[str, Any]:
    async def sent() -> bool:
        delivery = await department_delivery(pool)
        return bool(delivery["status"] == "sent")

    await eventually(sent, timeout=60, what="the delivery recorded sent")
    return await department_delivery(pool)


async def sent_events(topic_prefix: str) -> list[dict[str, Any]]:
    records = await read_topic(kafka_settings(topic_prefix).topic(topics.NOTIFICATION), at_least=1)
    return [json.loads(r.value) for r in records]


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_killed_after_the_provider_took_it_no_second_sms(
    infra, database_url, topic_prefix, tmp_path, aliyun, tencent, provider
):
    fake = aliyun if provider == "aliyun" else tencent
    fake.reset()
    proc = notification(database_url, topic_prefix, tmp_path, provider, fake.endpoint)
    pool = await open_pool(database_url, SCHEMA)
    try:
        await killed_during_the_call(proc, "after_provider_call", topic_prefix)
        [accepted] = fake.requests()  # the provider took it; the sender died before recording
        delivery = await department_delivery(pool)
        assert (delivery["status"], delivery["attempts"]) == ("sending", 1)
        assert await attempts_of(pool) == [(1, None, False)]

        proc.start(wait_ready=False)
        proc.wait_ready(timeout=120)
        delivery = await wait_sent(pool)
        assert len(fake.requests()) == 1, "the message went out twice"
        assert await attempts_of(pool) == [(1, "sent", True)]
        if provider == "tencent":
            # PullSmsSendStatusByPhoneNumber carries the SerialNo.
            assert accepted["session_context"] == f"{delivery['id']}:1"
            assert delivery["provider_message_id"] == accepted["serial_no"]
        else:
            # QuerySendDetails carries no BizId: the delivery report will bring it.
            assert accepted["out_id"] == f"{delivery['id']}:1"
            assert delivery["provider_message_id"] is None
        [event] = await sent_events(topic_prefix)
        assert event["event_type"] == "notification.sent"
        assert event["payload"]["delivery_id"] == str(delivery["id"])
        assert [q["code"] for q in fake.queries()] in (["OK"], ["Ok"])
    finally:
        proc.stop()
        await pool.close()
    assert DEPARTMENT_PHONE not in proc.log_text()
    assert '"delivery_reconciled_sent"' in proc.log_text()


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_killed_before_the_provider_got_it_sent_once_and_only_after_a_query_answers(
    infra, database_url, topic_prefix, tmp_path, aliyun, tencent, provider
):
    fake = aliyun if provider == "aliyun" else tencent
    fake.reset()
    proc = notification(database_url, topic_prefix, tmp_path, provider, fake.endpoint)
    pool = await open_pool(database_url, SCHEMA)
    try:
        await killed_during_the_call(proc, "before_provider_call", topic_prefix)
        assert fake.requests() == []
        assert await attempts_of(pool) == [(1, None, False)]

        # The provider's query fails three times (an outage, then throttling) before answering.
        failures = (
            ["HTTP_503", "HTTP_503", "Throttling.User"]
            if provider == "aliyun"
            else ["HTTP_503", "HTTP_503", "Error:RequestLimitExceeded"]
        )
        fake.script_queries(failures)
        proc.start(wait_ready=False)
        proc.wait_ready(timeout=120)
        delivery = await wait_sent(pool)
        [sent] = fake.requests()
        queries = fake.queries()
        assert [q["code"] for q in queries[:3]] == failures
        answered = [q for q in queries if q["code"] in ("OK", "Ok")]
        assert answered, "sent without an answer from the provider"
        # Nothing went out while the provider could not be asked.
        assert sent["seq"] > max(q["seq"] for q in queries)
        assert await attempts_of(pool) == [(1, "not_sent", True), (2, "sent", False)]
        out_id = sent["out_id"] if provider == "aliyun" else sent["session_context"]
        assert out_id == f"{delivery['id']}:2"
        lookups = await pool.fetchval("SELECT lookups FROM delivery_attempts WHERE attempt = 1")
        assert lookups == 3
    finally:
        proc.stop()
        await pool.close()
    assert DEPARTMENT_PHONE not in proc.log_text()
    assert '"delivery_lookup_failed"' in proc.log_text()
