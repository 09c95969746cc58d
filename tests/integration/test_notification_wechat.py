"""WeChat template/subscribe messages against the fake WeChat server, the access token shared
in PostgreSQL, and the SMS fallback when the voter refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Literal

import pytest
import structlog
from pydantic import SecretStr

from services.notification.app import MIGRATIONS, SCHEMA
from services.notification.providers import WechatMessage, WechatProvider, WechatSettings
from services.notification.tokens import PgTokenStore
from shared.db.pool import Pool
from tests.fakes.wechat import FakeWechatServer
from tests.helpers import migrate, open_pool

pytestmark = pytest.mark.integration

APP_ID, APP_SECRET = "wx-test-app", "wx-secret"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWechatServer]:
    with FakeWechatServer(app_id=APP_ID, app_secret=APP_SECRET) as server:
        yield server


@pytest.fixture
async def pool(infra, database_url) -> AsyncIterator[Pool]:
    await migrate(database_url, SCHEMA, MIGRATIONS)
    p = await open_pool(database_url, SCHEMA)
    yield p
    await p.close()


def _provider(
    fake: FakeWechatServer, pool: Pool, mode: Literal["template", "subscribe"] = "subscribe"
) -> WechatProvider:
    settings = WechatSettings(
        enabled=True,
        app_id=APP_ID,
        app_secret=SecretStr(APP_SECRET),
        base_url=fake.base_url,
        mode=mode,
    )
    return WechatProvider(settings, PgTokenStore(lambda: pool))


def _message() -> WechatMessage:
    return WechatMessage(
        openid=OPENID, template_id="tpl-1", params={"receipt_code": "ABCDE"}, out_id="d-1"
    )


async def test_template_and_subscribe_messages_share_one_token(fake, pool):
    fake.reset()
    first, second = _provider(fake, pool, "template"), _provider(fake, pool)  # two workers
    try:
        assert (await first.send(_message())).ok
        result = await second.send(_message())
        assert result.ok
        assert result.provider_message_id
        assert fake.token_fetches() == 1
        kinds = [r["kind"] for r in fake.requests()]
        assert kinds == ["template", "subscribe"]
        assert fake.requests()[0]["data"] == {"receipt_code": {"value": "ABCDE"}}
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("invalidate", ["expire_tokens", "revoke_tokens"])
async def test_an_expired_or_invalid_token_is_refreshed_once_and_the_send_goes(
    fake, pool, invalidate
):
    fake.reset()
    provider = _provider(fake, pool)
    try:
        assert (await provider.send(_message())).ok
        getattr(fake, invalidate)()  # 42001 / 40001 on the next call
        assert (await provider.send(_message())).ok
        assert fake.token_fetches() == 2
        codes = [a["code"] for a in fake.attempts()]
        assert codes == ["0", "0"]
        assert len(fake.requests()) == 2
    finally:
        await provider.aclose()


async def test_a_token_near_expiry_is_refreshed_before_it_expires(fake, pool):
    fake.reset()
    provider = _provider(fake, pool)
    try:
        assert (await provider.send(_message())).ok
        await pool.execute("UPDATE wechat_tokens SET expires_at = now() + interval '60 seconds'")
        assert (await provider.send(_message())).ok  # within the 300 s margin
        assert fake.token_fetches() == 2
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("code", "retryable", "outage"),
    [
        ("43101", False, False),
        ("45009", True, False),
        ("40001", True, False),
        ("HTTP_503", True, True),
    ],
)
async def test_errcodes(fake, pool, code, retryable, outage):
    fake.reset()
    provider = _provider(fake, pool)
    try:
        # 40001 twice: the refresh-and-retry also fails, so the send is retried later.
        fake.script([code, code] if code == "40001" else [code])
        with structlog.testing.capture_logs() as logs:
            result = await provider.send(_message())
        assert not result.ok
        assert (result.retryable, result.outage) == (retryable, outage)
        assert OPENID not in repr(logs)
    finally:
        await provider.aclose()
