"""The providers' status-report callbacks: each behind its own shared secret (`?token=`), on the
service wired as in production (build_app: real Kafka and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.notification import domain
from services.notification.app import MIGRATIONS, SCHEMA, build_app, seed
from services.notification.settings import CallbackSettings, NotificationSettings
from services.notification.store import NotificationStore
from shared import topics
from shared.events import CaseAssignedV1, EventEnvelope
from shared.messaging.inbox import Delivery
from shared.settings import DatabaseSettings, OutboxSettings
from tests.helpers import kafka_settings, migrate, open_pool, read_topic

pytestmark = pytest.mark.integration

ALIYUN_TOKEN = "aliyun-callback-secret-0123456789"
TENCENT_TOKEN = "tencent-callback-secret-0123456789"


def _settings(database_url: str, topic_prefix: str, **callbacks: Any) -> NotificationSettings:
    return NotificationSettings(
        kafka=kafka_settings(topic_prefix),
        database=DatabaseSettings(url=database_url),
        outbox=OutboxSettings(poll_interval_s=0.2),
        callbacks=CallbackSettings(**callbacks),
    )


def _aliyun(biz_id: str, out_id: str | None = None) -> dict[str, Any]:
    return {
        "phone_number": "1380013****",
        "send_time": "2025-03-03 09:00:00",
        "report_time": "2025-03-03 09:00:05",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
        "biz_id": biz_id,
        "out_id": out_id,
    }


def _tencent(sid: str) -> dict[str, Any]:
    return {
        "user_receive_time": "2025-03-03 09:00:05",
        "nationcode": "86",
        "mobile": "1380013****",
        "report_status": "SUCCESS",
        "errmsg": "DELIVRD",
        "description": "用户短信送达成功",
        "sid": sid,
    }


@pytest.fixture
def client(infra, database_url, topic_prefix) -> Iterator[TestClient]:
    import asyncio

    settings = _settings(
        database_url,
        topic_prefix,
        aliyun_token=SecretStr(ALIYUN_TOKEN),
        tencent_token=SecretStr(TENCENT_TOKEN),
    )
    asyncio.run(migrate(database_url, SCHEMA, MIGRATIONS))
    asyncio.run(seed(settings))
    with TestClient(build_app(settings)) as started:
        yield started


async def _reports(database_url: str) -> int:
    pool = await open_pool(database_url, SCHEMA)
    try:
        count: int = await pool.fetchval("SELECT count(*) FROM delivery_reports")
        return count
    finally:
        await pool.close()


async def test_a_missing_or_wrong_token_is_refused_and_nothing_recorded(client, database_url):
    for path, body in (
        ("/api/v1/reports/aliyun", _aliyun("1^0")),
        ("/api/v1/reports/tencent", _tencent("s1")),
    ):
        for params in ({}, {"token": "wrong"}, {"token": ALIYUN_TOKEN + TENCENT_TOKEN}):
            answer = client.post(path, params=params, json=[body])
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"] == "unauthorized"
            assert "token" in answer.json()["message"]
    # Each provider has its own secret: Aliyun's does not open Tencent's endpoint.
    crossed = client.post(
        "/api/v1/reports/tencent", params={"token": ALIYUN_TOKEN}, json=[_tencent("s1")]
    )
    assert crossed.status_code == 401
    assert await _reports(database_url) == 0


async def test_the_right_token_records_the_report_and_fills_in_a_reconciled_biz_id(
    client, database_url, topic_prefix
):
    # A delivery recorded sent by reconciliation: Aliyun's QuerySendDetails gave no BizId.
    pool = await open_pool(database_url, SCHEMA)
    try:
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
        envelope = EventEnvelope.wrap(event, producer="routing", correlation_id=uuid4())
        [planned] = [
            p for p in domain.plan_deliveries(envelope) if p.recipient_kind == "department"
        ]
        store = NotificationStore(pool, topic_prefix=topic_prefix)
        await store.plan(Delivery("t", "t", 0, 0), envelope, [planned])
        await pool.execute(
            """UPDATE deliveries SET status = 'sent', provider = 'aliyun', attempts = 1,
                   sent_at = now() WHERE id = $1""",
            planned.delivery_id,
        )
        await pool.execute(
            """INSERT INTO delivery_attempts (delivery_id, attempt, channel, provider,
                   started_at, finished_at, outcome, code, reconciled_at)
               VALUES ($1, 1, 'sms', 'aliyun', now(), now(), 'sent', 'SendStatus=3', now())""",
            planned.delivery_id,
        )
        answer = client.post(
            "/api/v1/reports/aliyun",
            params={"token": ALIYUN_TOKEN},
            json=[_aliyun("700000000000000001^0", f"{planned.delivery_id}:1")],
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"code": 0, "msg": "成功"}
        row = await pool.fetchrow(
            "SELECT provider_message_id, report_status FROM deliveries WHERE id = $1",
            planned.delivery_id,
        )
        assert row is not None
        assert tuple(row) == ("700000000000000001^0", "DELIVERED")
        attempt_id = await pool.fetchval(
            "SELECT provider_message_id FROM delivery_attempts WHERE delivery_id = $1",
            planned.delivery_id,
        )
        assert attempt_id == "700000000000000001^0"
        answer = client.post(
            "/api/v1/reports/tencent", params={"token": TENCENT_TOKEN}, json=[_tencent("s-x")]
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"result": 0, "errmsg": "OK"}
    finally:
        await pool.close()
    assert await _reports(database_url) == 2
    records = await read_topic(kafka_settings(topic_prefix).topic(topics.NOTIFICATION), at_least=1)
    delivered = [json.loads(r.value) for r in records]
    assert [d["event_type"] for d in delivered] == ["notification.delivered"]
    assert delivered[0]["payload"]["delivery_id"] == str(planned.delivery_id)


def test_without_a_token_configured_the_callbacks_are_off(database_url, topic_prefix):
    # No lifespan: the answer comes before anything touches the database.
    app = build_app(_settings(database_url, topic_prefix))
    client = TestClient(app)
    for path in ("/api/v1/reports/aliyun", "/api/v1/reports/tencent"):
        answer = client.post(path, params={"token": "anything"}, json=[])
        assert answer.status_code == 404
        assert answer.json()["error"] == "callbacks_not_configured"


def test_batches_and_bodies_are_bounded(database_url, topic_prefix):
    app = build_app(
        _settings(
            database_url,
            topic_prefix,
            aliyun_token=SecretStr(ALIYUN_TOKEN),
            max_items=1000,
            max_body_bytes=64 * 1024,
        )
    )
    client = TestClient(app)
    params = {"token": ALIYUN_TOKEN}
    too_many = [_aliyun(f"{i}^0") for i in range(1001)]
    answer = client.post("/api/v1/reports/aliyun", params=params, json=too_many[:600])
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"
    small = [{"biz_id": f"{i}^0", "success": True} for i in range(1001)]
    answer = client.post("/api/v1/reports/aliyun", params=params, json=small)
    assert answer.status_code == 422
    assert answer.json()["error"] == "validation_failed"
    # Unauthenticated: refused before the body is looked at.
    assert client.post("/api/v1/reports/aliyun", json=small).status_code == 401
