"""Intake's channels against real Kafka and PostgreSQL: the public form, idempotency keys,
body limits, station staff (single and batch), WeChat, rate limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.intake import wechat
from services.intake.settings import LimitSettings, RateLimitSettings
from shared import topics
from shared.auth import Role
from shared.settings import HttpSettings
from tests.helpers import read_topic
from tests.integration.intake_support import running_intake, token

pytestmark = pytest.mark.integration

PHONE = "13912345678"
NAME = "王小明"


# WeChat's documentation sample is signed at 1714037059: the freshness clock is set near it.
DOC_TIME = datetime.fromtimestamp(1714037059 + 30, UTC)


@pytest.fixture
async def intake(infra, database_url, topic_prefix):
    async with running_intake(database_url, topic_prefix, wechat_clock=lambda: DOC_TIME) as running:
        yield running


def form(**extra: Any) -> dict[str, Any]:
    return {
        "channel": "online",
        "station_id": "taiping-1",
        "category_id": "utilities",
        "content": "横湖路一带连续三天停水，老人孩子用水困难",
        **extra,
    }


def item(**extra: Any) -> dict[str, Any]:
    return {
        "channel": "station_reception",
        "category_id": "traffic",
        "content": "文化路口红绿灯时间太短，老人过马路来不及",
        **extra,
    }


async def events(topic: str, at_least: int) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in await read_topic(topic, at_least=at_least)]


async def test_the_public_form_publishes_the_opinion_and_the_contact_apart(intake, topic_prefix):
    answer = await intake.http.post(
        "/api/v1/opinions", json=form(voter_phone=PHONE, voter_name=NAME)
    )
    assert answer.status_code == 201, answer.text
    receipt = answer.json()

    [submitted] = await events(topic_prefix + topics.OPINION, 1)
    assert submitted["event_type"] == "opinion.submitted"
    assert submitted["payload"]["channel"] == "online"
    assert submitted["payload"]["receipt_code"] == receipt["receipt_code"]
    assert submitted["payload"]["voter_reachable"] is True
    [contact] = await events(topic_prefix + topics.CONTACT, 1)
    assert contact["event_type"] == "voter_contact.recorded"
    assert contact["payload"]["phone_e164"] == "+86" + PHONE
    assert contact["payload"]["opinion_id"] == receipt["opinion_id"]
    assert contact["correlation_id"] == submitted["correlation_id"]
    assert PHONE not in json.dumps(submitted)
    assert NAME not in json.dumps(submitted)

    # Without a phone: no contact event at all.
    assert (await intake.http.post("/api/v1/opinions", json=form())).status_code == 201
    assert await intake.count("outbox", "event_type = 'voter_contact.recorded'") == 0
    assert len(await events(topic_prefix + topics.OPINION, 2)) == 2
    assert len(await events(topic_prefix + topics.CONTACT, 1)) == 1


async def test_an_idempotency_key_returns_the_same_receipt_on_retry(intake):
    headers = {"Idempotency-Key": "form-7f3c2a9e-0001"}
    first = await intake.http.post("/api/v1/opinions", json=form(), headers=headers)
    again = await intake.http.post("/api/v1/opinions", json=form(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await intake.count("opinions") == 1

    other = await intake.http.post(
        "/api/v1/opinions", json=form(content="另一件事：路灯坏了两个星期"), headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"] == "conflict"
    assert "Idempotency-Key" in other.json()["message"]
    assert await intake.count("opinions") == 1
    assert await intake.count("outbox", "event_type = 'opinion.submitted'") <= 1


async def test_a_body_over_the_limit_gets_413_and_writes_nothing(infra, database_url, topic_prefix):
    limits = LimitSettings(max_body_bytes=4096)
    async with running_intake(database_url, topic_prefix, limits=limits) as intake:
        answer = await intake.http.post("/api/v1/opinions", json=form(content="长" * 3000))
        assert answer.status_code == 413
        assert answer.json()["error"] == "payload_too_large"
        assert "4096 bytes" in answer.json()["message"]
        assert await intake.count("opinions") == 0
        # Streamed (no Content-Length) is counted as it arrives.
        body = json.dumps(form(content="长" * 3000)).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 1000):
                yield body[i : i + 1000]

        streamed = await intake.http.post(
            "/api/v1/opinions", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert await intake.count("opinions") == 0


async def test_station_staff_enter_opinions_for_their_own_station_only(intake, topic_prefix):
    clerk = token(Role.STATION, station_id="zeguo-1")
    for channel in ("station_reception", "deputy_visit", "joint_session", "mailbox", "hotline"):
        answer = await intake.http.post(
            "/api/v1/stations/zeguo-1/opinions",
            json=item(channel=channel, voter_phone=PHONE),
            headers=clerk,
        )
        assert answer.status_code == 201, answer.text
    published = await events(topic_prefix + topics.OPINION, 5)
    assert sorted(e["payload"]["channel"] for e in published) == [
        "deputy_visit",
        "hotline",
        "joint_session",
        "mailbox",
        "station_reception",
    ]
    assert {e["payload"]["station_id"] for e in published} == {"zeguo-1"}
    assert len(await events(topic_prefix + topics.CONTACT, 5)) == 5
    assert await intake.count("opinions", "entered_by = 'clerk-1'") == 5

    other_station = await intake.http.post(
        "/api/v1/stations/taiping-1/opinions", json=item(), headers=clerk
    )
    assert other_station.status_code == 403
    anonymous = await intake.http.post("/api/v1/stations/zeguo-1/opinions", json=item())
    assert anonymous.status_code == 401
    department = token(Role.DEPARTMENT, subject="dept")
    assert (
        await intake.http.post("/api/v1/stations/zeguo-1/opinions", json=item(), headers=department)
    ).status_code == 403
    online = await intake.http.post(
        "/api/v1/stations/zeguo-1/opinions", json=item(channel="online"), headers=clerk
    )
    assert online.status_code == 422
    assert await intake.count("opinions") == 5


async def test_staff_channels_on_the_public_form_need_a_station_account(
    infra, database_url, topic_prefix
):
    async with running_intake(database_url, topic_prefix) as intake:
        anonymous = await intake.http.post(
            "/api/v1/opinions", json=form(channel="station_reception")
        )
        assert anonymous.status_code == 401
        clerk = token(Role.STATION, station_id="taiping-1")
        signed_in = await intake.http.post(
            "/api/v1/opinions", json=form(channel="station_reception"), headers=clerk
        )
        assert signed_in.status_code == 201
        wechat_form = await intake.http.post("/api/v1/opinions", json=form(channel="wechat"))
        assert wechat_form.status_code == 422
        assert await intake.count("opinions") == 1


async def test_a_batch_with_a_bad_item_37_records_nothing_and_names_item_37(intake, topic_prefix):
    clerk = token(Role.STATION, station_id="zeguo-1")
    items = [item(voter_phone=f"1391234{i:04d}") for i in range(60)]
    items[37]["voter_phone"] = "12345"
    answer = await intake.http.post(
        "/api/v1/stations/zeguo-1/opinions/batch", json={"items": items}, headers=clerk
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["items"] == [37]
    assert [f["field"] for f in body["fields"]] == ["items.37.voter_phone"]
    assert "37" in body["message"]

    items[37]["voter_phone"] = PHONE
    items[37]["category_id"] = "no-such-category"
    unknown = await intake.http.post(
        "/api/v1/stations/zeguo-1/opinions/batch", json={"items": items}, headers=clerk
    )
    assert unknown.status_code == 422
    assert [f["field"] for f in unknown.json()["fields"]] == ["items.37.category_id"]
    assert await intake.count("opinions") == 0
    assert await intake.count("outbox", "event_type <> 'reference.changed'") == 0

    too_many = await intake.http.post(
        "/api/v1/stations/zeguo-1/opinions/batch",
        json={"items": [item() for _ in range(501)]},
        headers=clerk,
    )
    assert too_many.status_code == 422
    assert await read_topic(topic_prefix + topics.OPINION, quiet_s=1.0) == []


async def test_a_batch_of_500_is_recorded_at_once_and_replayed_by_its_key(intake, topic_prefix):
    clerk = token(Role.STATION, station_id="zeguo-1")
    items = [item(content=f"第{i}号意见：路灯坏了，晚上出行不便") for i in range(500)]
    items[3]["voter_phone"] = PHONE
    headers = {**clerk, "Idempotency-Key": "reception-2026-11-27-zeguo-1"}
    answer = await intake.http.post(
        "/api/v1/stations/zeguo-1/opinions/batch", json={"items": items}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    receipts = answer.json()["receipts"]
    assert answer.json()["count"] == len(receipts) == 500
    assert len({r["receipt_code"] for r in receipts}) == 500
    again = await intake.http.post(
        "/api/v1/stations/zeguo-1/opinions/batch", json={"items": items}, headers=headers
    )
    assert again.json() == answer.json()
    assert await intake.count("opinions") == 500
    published = await events(topic_prefix + topics.OPINION, 500)
    assert len(published) == 500
    [contact] = await events(topic_prefix + topics.CONTACT, 1)
    assert contact["payload"]["opinion_id"] == receipts[3]["opinion_id"]


# WeChat's own example (消息加解密说明, 明文模式): Token "AAAAA", timestamp 1714037059,
# nonce 486452656 → signature 899cf89e464efb63f54ddac96b0a0a235f53aa78.
DOC_QUERY = {
    "signature": "899cf89e464efb63f54ddac96b0a0a235f53aa78",
    "timestamp": "1714037059",
    "nonce": "486452656",
}
OPENID = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"  # the FromUserName of the same example

TEXT_MESSAGE = f"""<xml>
  <ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>
  <FromUserName><![CDATA[{OPENID}]]></FromUserName>
  <CreateTime>1714037059</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[太平街道万昌路的路灯坏了半个月，晚上很危险]]></Content>
  <MsgId>24538937372583401</MsgId>
</xml>""".encode()


def test_the_signature_scheme_gives_wechat_s_documented_value():
    assert wechat.signature("AAAAA", "1714037059", "486452656") == DOC_QUERY["signature"]


async def test_wechat_url_verification_echoes_echostr_only_when_signed(intake):
    ok = await intake.http.get(
        "/api/v1/wechat/callback", params={**DOC_QUERY, "echostr": "5188249346781239961"}
    )
    assert ok.status_code == 200
    assert ok.text == "5188249346781239961"
    bad = await intake.http.get(
        "/api/v1/wechat/callback",
        params={**DOC_QUERY, "nonce": "486452657", "echostr": "5188249346781239961"},
    )
    assert bad.status_code == 403
    assert "5188249346781239961" not in bad.text


async def test_a_wechat_text_message_becomes_an_opinion_and_the_reply_has_its_receipt(
    intake, topic_prefix
):
    answer = await intake.http.post(
        "/api/v1/wechat/callback",
        params=DOC_QUERY,
        content=TEXT_MESSAGE,
        headers={"content-type": "text/xml"},
    )
    assert answer.status_code == 200, answer.text
    reply = wechat.parse(answer.content)
    assert reply.msg_type == "text"
    assert reply.from_user == "gh_97417a04a28d"
    assert answer.text.count(OPENID) == 1  # ToUserName: the voter
    row = await intake.pool.fetchrow("SELECT receipt_code, channel, wechat_openid FROM opinions")
    assert (row["channel"], row["wechat_openid"]) == ("wechat", OPENID)
    assert row["receipt_code"] in (reply.content or "")

    [submitted] = await events(topic_prefix + topics.OPINION, 1)
    assert submitted["payload"]["channel"] == "wechat"
    assert submitted["payload"]["voter_reachable"] is True
    assert OPENID not in json.dumps(submitted)
    [contact] = await events(topic_prefix + topics.CONTACT, 1)
    assert contact["payload"]["wechat_openid"] == OPENID

    # WeChat retries a push it had no answer to: the same receipt, no second opinion.
    retry = await intake.http.post(
        "/api/v1/wechat/callback", params=DOC_QUERY, content=TEXT_MESSAGE
    )
    assert row["receipt_code"] in (wechat.parse(retry.content).content or "")
    assert await intake.count("opinions") == 1


async def test_a_wechat_push_with_a_wrong_signature_gets_403_and_writes_nothing(intake):
    forged = {**DOC_QUERY, "signature": "0" * 40}
    answer = await intake.http.post("/api/v1/wechat/callback", params=forged, content=TEXT_MESSAGE)
    assert answer.status_code == 403
    missing = await intake.http.post(
        "/api/v1/wechat/callback",
        params={"timestamp": "1714037059", "nonce": "486452656"},
        content=TEXT_MESSAGE,
    )
    assert missing.status_code in (403, 422)
    assert await intake.count("opinions") == 0
    assert await intake.count("outbox", "event_type <> 'reference.changed'") == 0
    assert await intake.count("idempotency_keys") == 0


async def test_public_endpoints_are_rate_limited_per_address_and_per_phone(
    infra, database_url, topic_prefix
):
    limits = RateLimitSettings(per_address="3/minute", per_phone="2/hour")
    proxied = HttpSettings(port=8001, trusted_proxies=["10.0.0.1"])  # the test client's address
    async with running_intake(
        database_url, topic_prefix, rate_limit=limits, http=proxied
    ) as intake:
        for _ in range(3):
            ok = await intake.http.get("/api/v1/receipts/NOSUCH-CODE0")
            assert ok.status_code == 404
        limited = await intake.http.get("/api/v1/receipts/NOSUCH-CODE0")
        assert limited.status_code == 429
        assert limited.json()["error"] == "too_many_requests"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # Another address is not affected.
        other = await intake.http.get(
            "/api/v1/receipts/NOSUCH-CODE0", headers={"X-Forwarded-For": "10.9.9.9"}
        )
        assert other.status_code == 404

        # Per phone: from three addresses, the third submission with one phone is refused.
        for n, address in enumerate(("10.1.1.1", "10.1.1.2", "10.1.1.3")):
            answer = await intake.http.post(
                "/api/v1/opinions",
                json=form(voter_phone=PHONE),
                headers={"X-Forwarded-For": address},
            )
            assert answer.status_code == (201 if n < 2 else 429), answer.text
        assert int(answer.headers["Retry-After"]) > 60
        assert await intake.count("opinions") == 2
