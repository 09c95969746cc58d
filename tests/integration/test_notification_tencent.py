"""The Tencent Cloud SMS provider, with the real SDK (TC3 signed), against the fake server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import structlog
from pydantic import SecretStr

from services.notification.providers import (
    SmsMessage,
    SmsSettings,
    TencentSmsProvider,
    TencentSmsSettings,
    build_sms_provider,
)
from tests.fakes.tencent_sms import FakeTencentServer

SECRET_ID, SECRET_KEY = "AKIDtest", "tencent-secret"
PHONE = "+8613800138000"


def _settings(endpoint: str, key: str = SECRET_KEY) -> SmsSettings:
    return SmsSettings(
        provider="tencent",
        tencent=TencentSmsSettings(
            secret_id=SECRET_ID,
            secret_key=SecretStr(key),
            sms_sdk_app_id="1400000000",
            endpoint=endpoint,
            protocol="http",
            timeout_s=3,
        ),
    )


def _message(phone: str = PHONE) -> SmsMessage:
    return SmsMessage(
        phone_e164=phone,
        template_code="2000001",
        params={"receipt_code": "ABCDE-FGHJK", "due": "03月04日09:00"},
        out_id="delivery-1",
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTencentServer]:
    with FakeTencentServer(secret_id=SECRET_ID, secret_key=SECRET_KEY) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeTencentServer) -> AsyncIterator[TencentSmsProvider]:
    fake.reset()
    p = build_sms_provider(_settings(fake.endpoint))
    assert isinstance(p, TencentSmsProvider)
    yield p
    await p.aclose()


async def test_success_is_signed_and_recorded(fake, provider):
    result = await provider.send(_message())
    assert (result.ok, result.code, result.provider) == (True, "Ok", "tencent")
    [req] = fake.requests()
    assert req["phone_number"] == PHONE
    assert req["template_id"] == "2000001"
    assert req["template_params"] == ["ABCDE-FGHJK", "03月04日09:00"]  # in template order
    assert req["session_context"] == "delivery-1"
    assert req["secret_id"] == SECRET_ID
    assert req["serial_no"] == result.provider_message_id


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("LimitExceeded.PhoneNumberDailyLimit", True),
        ("InvalidParameterValue.IncorrectPhoneNumber", False),
        ("FailedOperation.TemplateIncorrectOrUnapproved", False),
    ],
)
async def test_send_status_codes(fake, provider, code, retryable):
    fake.script([code])
    result = await provider.send(_message())
    assert (result.ok, result.code, result.retryable) == (False, code, retryable)
    assert fake.requests() == []


async def test_fake_checks_phone_numbers(fake, provider):
    result = await provider.send(_message(phone="+86abc"))
    assert result.code == "InvalidParameterValue.IncorrectPhoneNumber"
    assert not result.retryable


async def test_a_wrong_key_is_an_auth_error_not_retried(fake):
    fake.reset()
    provider = build_sms_provider(_settings(fake.endpoint, key="wrong"))
    result = await provider.send(_message())
    await provider.aclose()
    assert (result.ok, result.code, result.retryable) == (
        False,
        "AuthFailure.SignatureFailure",
        False,
    )
    assert fake.requests() == []


async def test_503_is_a_retryable_outage(fake, provider):
    fake.script(["HTTP_503"])
    result = await provider.send(_message())
    assert (result.ok, result.retryable, result.outage) == (False, True, True)
    assert (await provider.send(_message())).ok


async def test_stopped_server_is_a_retryable_outage():
    server = FakeTencentServer().start()
    endpoint = server.endpoint
    server.stop()
    provider = build_sms_provider(_settings(endpoint))
    result = await provider.send(_message())
    await provider.aclose()
    assert (result.ok, result.retryable, result.outage) == (False, True, True)


async def test_logs_mask_the_phone(fake, provider):
    fake.script(["LimitExceeded.PhoneNumberDailyLimit"])
    with structlog.testing.capture_logs() as logs:
        await provider.send(_message())
        await provider.send(_message())
    text = repr(logs)
    assert "13800138000" not in text
    assert "138****8000" in text
