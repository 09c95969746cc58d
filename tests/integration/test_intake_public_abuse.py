"""Abuse of intake's public endpoints that must not work: invalid posts naming a voter's phone
locking that voter out of the form, and replaying a captured signed WeChat callback URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.intake import wechat
from services.intake.settings import RateLimitSettings
from tests.integration.intake_support import WECHAT_TOKEN, running_intake

pytestmark = pytest.mark.integration

PHONE = "13912345678"
PER_PHONE = 10  # the default: rate_limit.per_phone is 10/hour


def form(**extra: object) -> dict[str, object]:
    return {
        "channel": "online",
        "station_id": "taiping-1",
        "category_id": "utilities",
        "content": "横湖路一带连续三天停水，老人孩子用水困难",
        "voter_phone": PHONE,
        **extra,
    }


async def test_invalid_posts_do_not_count_against_a_voter_s_phone(
    infra, database_url, topic_prefix
):
    limits = RateLimitSettings(per_address="1000/minute", per_phone=f"{PER_PHONE}/hour")
    async with running_intake(database_url, topic_prefix, rate_limit=limits) as intake:
        for n in range(PER_PHONE):  # unknown stations: refused after the body is read
            bad = await intake.http.post("/api/v1/opinions", json=form(station_id=f"nope-{n}"))
            assert bad.status_code == 422, bad.text
        good = await intake.http.post("/api/v1/opinions", json=form())
        assert good.status_code == 201, good.text
        # Accepted submissions still count: PER_PHONE in all, then 429.
        for _ in range(PER_PHONE - 1):
            assert (await intake.http.post("/api/v1/opinions", json=form())).status_code == 201
        over = await intake.http.post("/api/v1/opinions", json=form())
        assert over.status_code == 429, over.text
        assert await intake.count("opinions") == PER_PHONE


# A signed callback captured at NOW; the service's freshness clock is NOW + 10 s.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OPENID = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"


def signed(timestamp: datetime, nonce: str) -> dict[str, str]:
    ts = str(int(timestamp.timestamp()))
    return {"timestamp": ts, "nonce": nonce, "signature": wechat.signature(WECHAT_TOKEN, ts, nonce)}


def text_message(msg_id: int, content: str) -> bytes:
    return (
        f"<xml><ToUserName>gh_97417a04a28d</ToUserName><FromUserName>{OPENID}</FromUserName>"
        f"<CreateTime>{int(NOW.timestamp())}</CreateTime><MsgType>text</MsgType>"
        f"<Content>{content}</Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


async def test_a_replayed_or_stale_wechat_callback_is_refused_and_writes_nothing(
    infra, database_url, topic_prefix
):
    async with running_intake(
        database_url, topic_prefix, wechat_clock=lambda: NOW + timedelta(seconds=10)
    ) as intake:
        url = "/api/v1/wechat/callback"
        query = signed(NOW, "1234567890")
        first = await intake.http.post(
            url, params=query, content=text_message(1, "太平街道万昌路的路灯坏了半个月")
        )
        assert first.status_code == 200, first.text
        receipt = await intake.pool.fetchval("SELECT receipt_code FROM opinions")
        assert receipt in first.text

        # The captured URL (same timestamp, nonce, signature) with another message: 403.
        replayed = await intake.http.post(
            url, params=query, content=text_message(2, "伪造的第二条意见内容，冒用签名链接")
        )
        assert replayed.status_code == 403, replayed.text
        # WeChat's own retry of the push (the very same request): the same receipt, no write.
        retry = await intake.http.post(
            url, params=query, content=text_message(1, "太平街道万昌路的路灯坏了半个月")
        )
        assert retry.status_code == 200, retry.text
        assert receipt in retry.text

        # Signed correctly but outside the 300 s window, either way: 403.
        for at in (NOW - timedelta(seconds=301), NOW + timedelta(seconds=311)):
            stale = await intake.http.post(
                url, params=signed(at, "2345678901"), content=text_message(3, "过期签名的意见内容")
            )
            assert stale.status_code == 403, (at, stale.text)
        # URL verification (GET) is single-use too.
        check = {**signed(NOW, "3456789012"), "echostr": "5188249346781239961"}
        assert (await intake.http.get(url, params=check)).status_code == 200
        again = await intake.http.get(url, params={**check, "echostr": "another-echo"})
        assert again.status_code == 403
        stale_check = {**signed(NOW - timedelta(hours=1), "4567890123"), "echostr": "e"}
        assert (await intake.http.get(url, params=stale_check)).status_code == 403

        assert await intake.count("opinions") == 1
        assert await intake.count("outbox", "event_type = 'opinion.submitted'") == 1
        assert await intake.count("idempotency_keys") == 1
