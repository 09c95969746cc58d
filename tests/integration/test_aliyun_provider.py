"""The Aliyun SMS provider, with the real SDK, against the fake Aliyun SMS server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import structlog
from pydantic import SecretStr

from services.notification.providers import (
    AliyunSmsProvider,
    AliyunSmsSettings,
    ConsoleSmsProvider,
    SmsMessage,
    SmsSettings,
    build_sms_provider,
    mask_phone,
)
from tests.fakes.aliyun_sms import FakeAliyunServer
from tests.fakes.runner import free_port

AK_ID = "LTAI-test-key"
AK_SECRET = "test-secret-不要外传"
PHONE = "+8613800138000"


def _settings(endpoint: str, *, secret: str = AK_SECRET, timeout_ms: int = 3000) -> SmsSettings:
    return SmsSettings(
        provider="aliyun",
        aliyun=AliyunSmsSettings(
            access_key_id=AK_ID,
            access_key_secret=SecretStr(secret),
            endpoint=endpoint,
            protocol="http",
            sign_name="温岭人大",
            timeout_ms=timeout_ms,
        ),
    )


def _message(out_id: str = "evt-1:voter-1", phone: str = PHONE) -> SmsMessage:
    return SmsMessage(
        phone_e164=phone,
        template_code="SMS_123456",
        params={"name": "张三", "ticket": "MY-2025-0001", "note": "a&b=c+d"},
        out_id=out_id,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAliyunServer]:
    with FakeAliyunServer(access_key_id=AK_ID, access_key_secret=AK_SECRET) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeAliyunServer) -> AsyncIterator[AliyunSmsProvider]:
    fake.reset()
    p = build_sms_provider(_settings(fake.endpoint))
    assert isinstance(p, AliyunSmsProvider)
    yield p
    await p.aclose()


async def test_success_records_the_request(fake: FakeAliyunServer, provider: AliyunSmsProvider):
    result = await provider.send(_message())

    assert result.ok
    assert result.provider == "aliyun"
    assert result.code == "OK"
    assert not result.retryable
    assert result.provider_message_id
    recorded = fake.requests()
    assert len(recorded) == 1
    req = recorded[0]
    assert req["phone_numbers"] == "13800138000"
    assert req["sign_name"] == "温岭人大"
    assert req["template_code"] == "SMS_123456"
    assert req["template_param"] == {"name": "张三", "ticket": "MY-2025-0001", "note": "a&b=c+d"}
    assert req["out_id"] == "evt-1:voter-1"
    assert req["access_key_id"] == AK_ID
    assert req["biz_id"] == result.provider_message_id
    assert req["received_at"]


async def test_business_limit_control_is_retryable(
    fake: FakeAliyunServer, provider: AliyunSmsProvider
):
    fake.script(["isv.BUSINESS_LIMIT_CONTROL"])
    result = await provider.send(_message())
    assert not result.ok
    assert result.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert result.retryable
    assert result.provider_message_id is None
    assert fake.requests() == []  # scripted answers are not deliveries
    # the script is consumed: the next call goes through
    assert (await provider.send(_message())).ok
    assert len(fake.requests()) == 1


async def test_illegal_mobile_number_is_not_retryable(
    fake: FakeAliyunServer, provider: AliyunSmsProvider
):
    fake.script(["isv.MOBILE_NUMBER_ILLEGAL"])
    result = await provider.send(_message())
    assert not result.ok
    assert result.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert not result.retryable


async def test_fake_validates_phone_numbers(fake: FakeAliyunServer, provider: AliyunSmsProvider):
    result = await provider.send(_message(phone="+86not-a-number"))
    assert (result.ok, result.code, result.retryable) == (False, "isv.MOBILE_NUMBER_ILLEGAL", False)
    assert fake.requests() == []


@pytest.mark.parametrize(
    ("scripted", "code"),
    [("HTTP_503", "ServiceUnavailable"), ("HTTP_500", "InternalError"), ("Throttling.User", None)],
)
async def test_gateway_errors_are_retryable(
    fake: FakeAliyunServer, provider: AliyunSmsProvider, scripted: str, code: str | None
):
    fake.script([scripted])
    result = await provider.send(_message())
    assert not result.ok
    assert result.retryable
    assert result.code == (code or scripted)


async def test_bad_signature_is_rejected_and_not_retryable(fake: FakeAliyunServer):
    fake.reset()
    provider = build_sms_provider(_settings(fake.endpoint, secret="wrong-secret"))
    result = await provider.send(_message())
    assert not result.ok
    assert result.code == "SignatureDoesNotMatch"
    assert not result.retryable
    assert fake.requests() == []


def test_fake_rejects_unsigned_and_incomplete_requests(fake: FakeAliyunServer):
    r = httpx.post(
        f"{fake.base_url}/",
        params={"PhoneNumbers": "13800138000", "SignName": "x", "TemplateCode": "SMS_1"},
        headers={"x-acs-action": "SendSms", "x-acs-version": "2017-05-25"},
    )
    assert r.status_code == 400
    assert r.json()["Code"] == "IncompleteSignature"
    assert r.json()["RequestId"]


def test_fake_rejects_missing_phone_numbers():
    # An unverified fake (no key pair) only checks the signature's shape, so a hand-made
    # request can reach the parameter checks.
    with FakeAliyunServer() as server:
        headers = {
            "x-acs-action": "SendSms",
            "x-acs-version": "2017-05-25",
            "x-acs-date": "2025-01-01T00:00:00Z",
            "x-acs-signature-nonce": "n1",
            "x-acs-content-sha256": (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            "Authorization": "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders="
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;"
            "x-acs-version,Signature=" + "0" * 64,
        }
        r = httpx.post(
            f"{server.base_url}/",
            params={"SignName": "x", "TemplateCode": "SMS_1"},
            headers=headers,
        )
        assert r.status_code == 400
        assert r.json()["Code"] == "MissingPhoneNumbers"
        assert server.requests() == []


async def test_stopped_server_is_a_retryable_network_error():
    server = FakeAliyunServer().start()
    endpoint = server.endpoint
    server.stop()
    provider = build_sms_provider(_settings(endpoint))
    result = await provider.send(_message())
    assert not result.ok
    assert result.code == "NETWORK_ERROR"
    assert result.retryable


async def test_unresponsive_server_times_out_retryably():
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(hang, "127.0.0.1", port)
    try:
        provider = build_sms_provider(_settings(f"127.0.0.1:{port}", timeout_ms=300))
        result = await asyncio.wait_for(provider.send(_message()), timeout=10)
    finally:
        server.close()
    assert not result.ok
    assert result.retryable
    assert result.code in {"NETWORK_ERROR", "TIMEOUT"}


def test_aliyun_provider_requires_credentials():
    with pytest.raises(ValueError, match="access_key_id"):
        build_sms_provider(SmsSettings(provider="aliyun"))


async def test_console_provider_masks_the_phone():
    provider = build_sms_provider(SmsSettings())
    assert isinstance(provider, ConsoleSmsProvider)
    with structlog.testing.capture_logs() as logs:
        result = await provider.send(_message())
    assert result.ok
    assert result.provider == "console"
    assert result.code == "OK"
    assert result.provider_message_id
    assert logs
    text = repr(logs)
    assert "13800138000" not in text
    assert "138****8000" in text


async def test_aliyun_logs_mask_the_phone(fake: FakeAliyunServer, provider: AliyunSmsProvider):
    fake.script(["isv.BUSINESS_LIMIT_CONTROL"])
    with structlog.testing.capture_logs() as logs:
        assert not (await provider.send(_message())).ok
        assert (await provider.send(_message())).ok
    text = repr(logs)
    assert len(logs) == 2
    assert "13800138000" not in text
    assert "138****8000" in text


def test_mask_phone():
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("+85291234567") == "852****4567"
    assert mask_phone("12") == "****"
