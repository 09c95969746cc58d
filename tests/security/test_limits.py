"""Limits of the public endpoints (intake's online form, receipts and WeChat callback,
evaluation's rating link): 413 for an oversized body, 429 past the rate limit (configured low
here); and list endpoints cap their page size."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.security.conftest import (
    WECHAT_TOKEN,
    Stack,
    running_stack,
    wechat_signature,
)

pytestmark = pytest.mark.e2e

PER_ADDRESS = 5
MAX_BODY = 2048
TOO_BIG = b"x" * (MAX_BODY + 1)
WECHAT_QUERY = {"timestamp": "1700000000", "nonce": "limits-nonce"}  # forged pushes only
FORGED_LINK = "not-a-rating-link"


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory) -> Iterator[Stack]:
    env = {
        "intake": {
            "MINYI_INTAKE__RATE_LIMIT__PER_ADDRESS": f"{PER_ADDRESS}/minute",
            "MINYI_INTAKE__RATE_LIMIT__PER_PHONE": "3/hour",
            "MINYI_INTAKE__LIMITS__MAX_BODY_BYTES": str(MAX_BODY),
            "MINYI_INTAKE__WECHAT__TOKEN": WECHAT_TOKEN,
        },
        "evaluation": {
            "MINYI_EVALUATION__LIMITS__PER_ADDRESS": f"{PER_ADDRESS}/minute",
            "MINYI_EVALUATION__LIMITS__MAX_BODY_BYTES": str(MAX_BODY),
        },
    }
    with running_stack(
        infra,
        tmp_path_factory.mktemp("limits"),
        services=("intake", "routing", "evaluation"),
        extra_env=env,
    ) as started:
        yield started


def _signed() -> dict[str, str]:
    """A fresh signed query (a signed URL is good once, within 300 s of its timestamp)."""
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    return {
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": wechat_signature(WECHAT_TOKEN, timestamp, nonce),
    }


def _wechat_text(openid: str, msg_id: int) -> bytes:
    return (
        f"<xml><ToUserName>gh_minyi</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>1700000000</CreateTime><MsgType>text</MsgType>"
        f"<Content>泽国镇文化路口红绿灯时间太短</Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def _posts(stack: Stack) -> dict[str, tuple[str, dict[str, str]]]:
    """The public endpoints that take a body: url and query."""
    return {
        "online form": (f"{stack.url('intake')}/api/v1/opinions", {}),
        "wechat callback": (f"{stack.url('intake')}/api/v1/wechat/callback", _signed()),
        "rating link": (f"{stack.url('evaluation')}/api/v1/ratings/{FORGED_LINK}", {}),
    }


def test_oversized_bodies_get_413(stack: Stack):
    for what, (url, query) in _posts(stack).items():
        declared = httpx.post(url, params=query, content=TOO_BIG)
        assert declared.status_code == 413, (what, declared.text)
        assert declared.json()["error"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            for _ in range(8):
                yield b"y" * (MAX_BODY // 4)

        streamed = httpx.post(url, params=query, content=chunks())
        assert streamed.status_code == 413, (what, "chunked", streamed.text)


def _hammer(send: object, *, at_most: int) -> list[int]:
    assert callable(send)
    statuses: list[int] = []
    for _ in range(at_most):
        answer: httpx.Response = send()
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1
            break
    return statuses


def test_the_online_form_is_rate_limited_per_address(stack: Stack):
    url = f"{stack.url('intake')}/api/v1/opinions"
    body = {"channel": "online", "station_id": "zeguo-1", "content": "泽国镇文化路口红绿灯时间太短"}
    statuses = _hammer(lambda: httpx.post(url, json=body), at_most=PER_ADDRESS + 2)
    assert statuses == [201] * PER_ADDRESS + [429]


def test_receipts_are_rate_limited_per_address(stack: Stack):
    url = f"{stack.url('intake')}/api/v1/receipts/NOPE0-NOPE0"
    statuses = _hammer(lambda: httpx.get(url), at_most=PER_ADDRESS + 2)
    assert statuses == [404] * PER_ADDRESS + [429]


def test_wechat_is_rate_limited(stack: Stack):
    url = f"{stack.url('intake')}/api/v1/wechat/callback"
    forged = {**WECHAT_QUERY, "signature": "0" * 40}
    wrong = _hammer(lambda: httpx.get(url, params={**forged, "echostr": "e"}), at_most=8)
    assert wrong == [403] * PER_ADDRESS + [429]
    # Signed pushes are WeChat's own servers (not throttled by address), but one account
    # (openid) may not flood: per_phone (3/hour) applies to it.
    ids = iter(range(910_000_001, 910_000_100))
    signed = _hammer(
        lambda: httpx.post(url, params=_signed(), content=_wechat_text("oLimitsTest01", next(ids))),
        at_most=6,
    )
    assert signed == [200, 200, 200, 429]


def test_the_rating_link_is_rate_limited_per_address(stack: Stack):
    url = f"{stack.url('evaluation')}/api/v1/ratings/{FORGED_LINK}"
    statuses = _hammer(lambda: httpx.get(url), at_most=PER_ADDRESS + 2)
    assert statuses == [401] * PER_ADDRESS + [429]
    assert httpx.post(url, json={"level": "satisfied"}).status_code == 429


def test_list_endpoints_cap_the_page_size(stack: Stack):
    routing = stack.url("routing")
    operator = stack.bearer("operator")
    department = stack.bearer("dept-transport")
    for url, headers in (
        (f"{routing}/api/v1/departments/transport/queue", department),
        (f"{routing}/api/v1/worklist", operator),
    ):
        assert httpx.get(url, params={"limit": 500}, headers=headers).status_code == 200, url
        too_many = httpx.get(url, params={"limit": 501}, headers=headers)
        assert too_many.status_code == 422, url
        assert httpx.get(url, params={"limit": 0}, headers=headers).status_code == 422, url
