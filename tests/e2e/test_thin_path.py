"""The thin path, all four services as processes on real Kafka and PostgreSQL, over HTTP:
opinion → case → SMS to the department (at the fake Aliyun server) → evaluation's read model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared import topics
from tests.fakes.aliyun_sms import FakeAliyunServer
from tests.helpers import eventually, open_pool, read_topic
from tests.processes import ServiceProcess, run_command, service_env

pytestmark = pytest.mark.e2e

SERVICES = ("intake", "routing", "notification", "evaluation")
VOTER_PHONE = "13912345678"
VOTER_NAME = "王小明"


@dataclass
class Stack:
    services: dict[str, ServiceProcess]
    sms: FakeAliyunServer
    database_url: str
    topic_prefix: str

    def url(self, name: str) -> str:
        return self.services[name].url


@pytest.fixture
def stack(infra, database_url, topic_prefix, tmp_path) -> Iterator[Stack]:
    sms = FakeAliyunServer(access_key_id="test-key", access_key_secret="test-secret").start()
    sms_env = {
        "MINYI_NOTIFICATION__SMS__PROVIDER": "aliyun",
        "MINYI_NOTIFICATION__SMS__ALIYUN__ENDPOINT": sms.endpoint,
        "MINYI_NOTIFICATION__SMS__ALIYUN__PROTOCOL": "http",
        "MINYI_NOTIFICATION__SMS__ALIYUN__ACCESS_KEY_ID": "test-key",
        "MINYI_NOTIFICATION__SMS__ALIYUN__ACCESS_KEY_SECRET": "test-secret",
    }
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            env = service_env(
                name,
                database_url=database_url,
                topic_prefix=topic_prefix,
                extra=sms_env if name == "notification" else None,
            )
            run_command(name, "migrate", env)
            run_command(name, "seed", env)
            processes[name] = ServiceProcess(name, env, tmp_path)
        for process in processes.values():
            process.start(wait_ready=False)
        for process in processes.values():
            process.wait_ready()
        yield Stack(processes, sms, database_url, topic_prefix)
    finally:
        for process in processes.values():
            process.stop()
        sms.stop()


async def test_one_opinion_end_to_end(stack: Stack):
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{stack.url('intake')}/api/v1/opinions",
            json={
                "channel": "online",
                "station_id": "zeguo-1",
                "category_id": "traffic",
                "content": "泽国镇文化路口红绿灯时间太短，老人过马路来不及",
                "voter_name": VOTER_NAME,
                "voter_phone": VOTER_PHONE,
            },
        )
        assert answer.status_code == 201, answer.text
        receipt = answer.json()
        opinion_id = receipt["opinion_id"]
        assert answer.headers["X-Correlation-Id"] == opinion_id
        signed_in = await http.post(
            f"{stack.url('routing')}/api/v1/auth/token",
            json={"client_id": "operator", "client_secret": "minyi-dev-password"},
        )
        assert signed_in.status_code == 200, signed_in.text
        operator = {"authorization": f"Bearer {signed_in.json()['access_token']}"}
        anonymous = await http.get(
            f"{stack.url('routing')}/api/v1/cases", params={"opinion_id": opinion_id}
        )
        assert anonymous.status_code == 401

        async def routed() -> dict[str, Any] | None:
            r = await http.get(
                f"{stack.url('routing')}/api/v1/cases",
                params={"opinion_id": opinion_id},
                headers=operator,
            )
            return r.json() if r.status_code == 200 else None

        case = await eventually(routed, what="routing's case")
        assert case["department_id"] == "transport"
        assert case["state"] == "assigned"
        assert case["receipt_code"] == receipt["receipt_code"]
        assert [t["to_state"] for t in case["transitions"]] == ["assigned"]

        async def sms_sent() -> list[dict[str, Any]]:
            return stack.sms.requests()

        sent = await eventually(sms_sent, what="the SMS at the fake Aliyun server")
        assert len(sent) == 1
        assert sent[0]["phone_numbers"] == "13800138002"  # the transport bureau's contact
        assert sent[0]["sign_name"] == "温岭人大"
        assert sent[0]["template_code"] == "SMS_100000001"
        assert sent[0]["template_param"]["receipt_code"] == receipt["receipt_code"]
        assert sent[0]["access_key_id"] == "test-key"

        async def evaluated() -> dict[str, Any] | None:
            r = await http.get(
                f"{stack.url('evaluation')}/api/v1/cases/{case['id']}", headers=operator
            )
            body = r.json() if r.status_code == 200 else None
            return body if body and body["first_notified_at"] and body["assigned_at"] else None

        facts = await eventually(evaluated, what="evaluation's read model")
        assert facts["department_id"] == "transport"
        assert facts["station_id"] == "zeguo-1"
        assert facts["notifications_sent"] == 1

        deliveries_url = f"{stack.url('notification')}/api/v1/cases/{case['id']}/deliveries"
        deliveries = (await http.get(deliveries_url, headers=operator)).json()
        assert [(d["status"], d["provider"]) for d in deliveries] == [("sent", "aliyun")]
        assert deliveries[0]["provider_message_id"] == sent[0]["biz_id"]

        # The transport bureau sees its own case everywhere; another department sees nothing.
        async def sign_in(client_id: str) -> dict[str, str]:
            r = await http.post(
                f"{stack.url('routing')}/api/v1/auth/token",
                json={"client_id": client_id, "client_secret": "minyi-dev-password"},
            )
            return {"authorization": f"Bearer {r.json()['access_token']}"}

        transport, housing = await sign_in("dept-transport"), await sign_in("dept-housing")
        case_urls = [
            f"{stack.url('routing')}/api/v1/cases/{case['id']}",
            f"{stack.url('evaluation')}/api/v1/cases/{case['id']}",
            deliveries_url,
        ]
        for url in case_urls:
            assert (await http.get(url, headers=transport)).status_code == 200, url
            assert (await http.get(url, headers=housing)).status_code == 404, url
            assert (await http.get(url)).status_code == 401, url

        status = await http.get(
            receipt["status_url"].replace("http://127.0.0.1:8001", stack.url("intake"))
        )
        assert status.status_code == 200
        public = status.text
        assert VOTER_PHONE not in public
        assert VOTER_NAME not in public

    # The voter's phone and name are in no log and no event.
    for process in stack.services.values():
        log = process.log_text()
        assert VOTER_PHONE not in log, process.name
        assert VOTER_NAME not in log, process.name
    for topic in (topics.OPINION, topics.CASE, topics.NOTIFICATION):
        for record in await read_topic(stack.topic_prefix + topic, at_least=1):
            assert VOTER_PHONE.encode() not in record.value
            assert VOTER_NAME.encode() not in record.value
            # One id finds the whole story: every event carries the opinion's correlation id.
            assert json.loads(record.value)["correlation_id"] == opinion_id, topic


async def test_bad_input_gets_a_clear_422_and_changes_nothing(stack: Stack):
    pool = await open_pool(stack.database_url, "intake")
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            bad_phone = await http.post(
                f"{stack.url('intake')}/api/v1/opinions",
                json={
                    "channel": "online",
                    "station_id": "zeguo-1",
                    "content": "小区门口垃圾无人清运",
                    "voter_phone": "12345",
                },
            )
            assert bad_phone.status_code == 422
            body = bad_phone.json()
            assert [f["field"] for f in body["fields"]] == ["voter_phone"]
            assert "voter_phone" in body["message"]
            assert "Traceback" not in bad_phone.text

            unknown_station = await http.post(
                f"{stack.url('intake')}/api/v1/opinions",
                json={"channel": "online", "station_id": "atlantis-9", "content": "路灯坏了很久"},
            )
            assert unknown_station.status_code == 422
            assert unknown_station.json()["fields"][0]["field"] == "station_id"

            not_json = await http.post(
                f"{stack.url('intake')}/api/v1/opinions",
                content=b"{broken",
                headers={"content-type": "application/json"},
            )
            assert not_json.status_code == 422

        assert await pool.fetchval("SELECT count(*) FROM opinions") == 0
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
        assert await read_topic(stack.topic_prefix + topics.OPINION, quiet_s=1.0) == []
    finally:
        await pool.close()
