"""The console's guards as pure pieces (issue 14): the CSRF tokens and the cross-site check,
the session-check cache, control characters, and path segments escaped for the services."""

from __future__ import annotations

import pytest

from console import csrf
from console.app import has_control_characters
from console.session import Session
from console.session_checks import SessionChecks
from console.upstream import segment

SECRET = "s" * 32


def a_session(token: str) -> Session:
    return Session(token, "operator", "operator", None, None, expires_at=2_000_000_000)


def test_tokens_bind_to_their_session_and_nonce():
    alice, bob = a_session("token-a"), a_session("token-b")
    assert csrf.tokens_match(csrf.session_token(SECRET, alice), csrf.session_token(SECRET, alice))
    assert not csrf.tokens_match(csrf.session_token(SECRET, alice), csrf.session_token(SECRET, bob))
    # another key, or the sign-in form's token for the same value: no match
    assert not csrf.tokens_match(
        csrf.session_token(SECRET, alice), csrf.session_token("t" * 32, alice)
    )
    assert not csrf.tokens_match(
        csrf.session_token(SECRET, alice), csrf.presession_token(SECRET, "token-a")
    )
    n1, n2 = csrf.new_nonce(), csrf.new_nonce()
    assert n1 != n2
    assert len(n1) >= 32
    assert not csrf.tokens_match(
        csrf.presession_token(SECRET, n1), csrf.presession_token(SECRET, n2)
    )
    for given in (None, "", 42, ["x"]):
        assert not csrf.tokens_match(csrf.presession_token(SECRET, n1), given)
    assert not csrf.tokens_match(None, "anything")
    assert not csrf.tokens_match("", "")


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # an old browser or a script: the token decides
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "none"}, False),
        ({"sec-fetch-site": "same-site"}, True),
        ({"sec-fetch-site": "cross-site"}, True),
        ({"origin": "http://console.example:8000"}, False),
        ({"origin": "https://console.example:8000"}, False),  # behind a TLS proxy
        ({"origin": "http://evil.example"}, True),
        ({"origin": "http://console.example"}, True),  # another port: another origin
        ({"origin": "http://console.example:8000.evil.example"}, True),
        ({"origin": "null"}, True),
        ({"origin": ""}, True),
        ({"origin": "http://console.example:8000", "sec-fetch-site": "cross-site"}, True),
    ],
)
def test_cross_site_reason(headers: dict[str, str], refused: bool):
    reason = csrf.cross_site_reason(headers, "console.example:8000")
    assert (reason is not None) is refused, reason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Routing:
    """Answers of routing's /auth/session, counted."""

    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.asked = 0

    async def ask(self) -> bool | None:
        self.asked += 1
        return self.answer


async def test_session_checks_cache_confirmations_for_their_ttl_only():
    clock, routing = Clock(), Routing(True)
    checks = SessionChecks(5.0, clock)
    s = a_session("t1")
    assert await checks.holds(s, routing.ask)
    clock.now += 4.9
    assert await checks.holds(s, routing.ask)
    assert routing.asked == 1  # believed within 5 s
    clock.now += 0.2
    routing.answer = False  # signed out elsewhere
    assert not await checks.holds(s, routing.ask)
    assert routing.asked == 2
    assert not await checks.holds(s, routing.ask)  # a refusal is never cached as valid
    assert routing.asked == 3


async def test_session_checks_forget_and_no_answer():
    clock, routing = Clock(), Routing(True)
    checks = SessionChecks(5.0, clock)
    s = a_session("t1")
    assert await checks.holds(s, routing.ask)
    checks.forget(s)  # signed out through this process: asked again at once
    routing.answer = False
    assert not await checks.holds(s, routing.ask)
    assert routing.asked == 2
    down = Routing(None)  # routing does not answer: the signed cookie stands, nothing cached
    assert await checks.holds(a_session("t2"), down.ask)
    assert await checks.holds(a_session("t2"), down.ask)
    assert down.asked == 2
    uncached = SessionChecks(0, clock)
    ok = Routing(True)
    assert await uncached.holds(s, ok.ask)
    assert await uncached.holds(s, ok.ask)
    assert ok.asked == 2


def test_control_characters_and_path_segments():
    for text in ("\x00", "a\x1fb", "\x7f", "x\u0085", "\t", "\n"):
        assert has_control_characters(text), repr(text)
    for text in ("GFBP0-H68TX", "横湖路停水", "a b", "../x", "%00"):
        assert not has_control_characters(text), repr(text)
    assert segment("GFBP0-H68TX") == "GFBP0-H68TX"
    assert segment("../worklist") == "..%2Fworklist"
    assert segment("a?b#c%d") == "a%3Fb%23c%25d"


# ---- sign-in through the console: the person's address, signed; too many tries -----------


async def test_sign_in_names_the_persons_signed_address_and_explains_a_lockout():
    import httpx

    from console.upstream import Upstream
    from shared.auth import CLIENT_ADDRESS_HEADER

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(429, headers={"retry-after": "301"}, json={"error": "x"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        up = Upstream({"routing": "http://routing"}, http, 1.0)
        message = await up.sign_in("operator", "pw", "cid", "203.0.113.9 abc")
    assert seen[0].headers[CLIENT_ADDRESS_HEADER] == "203.0.113.9 abc"
    assert message == "登录失败次数过多，请 6 分钟后再试。"


def test_signed_client_address_round_trip_and_tampering():
    from pydantic import SecretStr

    from shared.auth import AuthSettings, sign_client_address, verified_client_address

    auth = AuthSettings(secret=SecretStr("s" * 40))
    header = sign_client_address(auth, "198.51.100.4")
    assert header is not None
    assert verified_client_address(auth, header) == "198.51.100.4"
    assert verified_client_address(auth, header.replace("198.51.100.4", "198.51.100.5")) is None
    other = AuthSettings(secret=SecretStr("t" * 40))
    assert verified_client_address(other, header) is None
    assert sign_client_address(auth, "not-an-address") is None
    keyless = AuthSettings.model_construct(secret=None)  # no MINYI_AUTH_SECRET taken from env
    assert sign_client_address(keyless, "198.51.100.4") is None
    assert verified_client_address(auth, None) is None
