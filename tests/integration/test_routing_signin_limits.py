"""The sign-in limiter on real PostgreSQL: failed sign-ins are counted per account and per
client address (10 within 15 minutes by default); the 11th attempt gets 429 with Retry-After —
even with the right secret — until the window has moved on. Client addresses come from
X-Forwarded-For because the test client's address is named a trusted proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.routing.settings import LimitSettings
from shared.auth import CLIENT_ADDRESS_HEADER, AuthSettings, sign_client_address
from shared.settings import HttpSettings
from tests.integration.test_routing_api import Routing, routing_settings, running_routing

pytestmark = pytest.mark.integration

RIGHT = "minyi-dev-password"
WRONG = "not-the-password-0"
LIMIT = 10  # the default: limits.signin_max_failures
WINDOW_S = 15 * 60  # the default: limits.signin_window_s


@pytest.fixture
async def routing(infra, database_url, topic_prefix) -> AsyncIterator[Routing]:
    settings = routing_settings(
        database_url,
        topic_prefix,
        # httpx's ASGI transport calls from 127.0.0.1: the proxy that names the client.
        http=HttpSettings(port=8002, trusted_proxies=["127.0.0.1"]),
    )
    assert settings.limits == LimitSettings()  # the defaults are what is tested
    async with running_routing(settings) as running:
        yield running


async def sign_in(routing: Routing, client_id: str, secret: str, address: str) -> httpx.Response:
    return await routing.http.post(
        "/api/v1/auth/token",
        json={"client_id": client_id, "client_secret": secret},
        headers={"x-forwarded-for": address},
    )


def statuses(answers: list[httpx.Response]) -> list[int]:
    return [a.status_code for a in answers]


async def test_the_eleventh_attempt_is_refused_even_with_the_right_secret(routing: Routing):
    wrong = [await sign_in(routing, "dept-transport", WRONG, "10.0.0.1") for _ in range(LIMIT)]
    assert statuses(wrong) == [401] * LIMIT
    eleventh = await sign_in(routing, "dept-transport", WRONG, "10.0.0.1")
    assert eleventh.status_code == 429, eleventh.text
    assert eleventh.json()["error"] == "too_many_requests"
    assert 1 <= int(eleventh.headers["Retry-After"]) <= WINDOW_S
    # The right secret is refused too, from this address and from any other: the account is
    # locked until its failures leave the window.
    for address in ("10.0.0.1", "10.0.0.2"):
        right = await sign_in(routing, "dept-transport", RIGHT, address)
        assert right.status_code == 429, (address, right.text)
        assert "access_token" not in right.text
    # Another account from another address is not affected.
    other = await sign_in(routing, "dept-housing", RIGHT, "10.0.0.3")
    assert other.status_code == 200, other.text

    # The attempted secrets are kept nowhere.
    rows = await routing.runtime.pool.fetch("SELECT * FROM signin_failures")
    assert len(rows) == 2 * LIMIT  # one per failure for the account, one for the address
    assert not any(WRONG in str(value) for row in rows for value in row.values())

    # Once the window has moved past the failures, the right secret works again.
    await routing.runtime.pool.execute(
        "UPDATE signin_failures SET failed_at = failed_at - make_interval(secs => $1)",
        float(WINDOW_S + 1),
    )
    again = await sign_in(routing, "dept-transport", RIGHT, "10.0.0.1")
    assert again.status_code == 200, again.text


async def test_an_address_is_limited_across_accounts_and_a_success_does_not_reset_it(
    routing: Routing,
):
    address = "10.0.0.7"
    departments = [f"dept-{d}" for d in ("transport", "housing", "utilities", "education")]
    first = [await sign_in(routing, departments[n % 4], WRONG, address) for n in range(LIMIT - 1)]
    assert statuses(first) == [401] * (LIMIT - 1)
    # A success from this address (its own account) leaves the address's failures standing.
    assert (await sign_in(routing, "operator", RIGHT, address)).status_code == 200
    assert (await sign_in(routing, "committee", WRONG, address)).status_code == 401  # the 10th
    for client_id, secret in (("admin", RIGHT), ("dept-transport", WRONG)):
        refused = await sign_in(routing, client_id, secret, address)
        assert refused.status_code == 429, (client_id, refused.text)
    # The same accounts from another address are not locked (no account has 10 failures).
    assert (await sign_in(routing, "admin", RIGHT, "10.0.0.8")).status_code == 200


async def test_concurrent_guesses_cannot_slip_past_the_count(routing: Routing):
    """Twenty guesses at once (as from several replicas): exactly ten are checked."""

    async def guess(n: int) -> int:
        answer = await sign_in(routing, "dept-education", f"{WRONG}{n}", f"10.1.0.{n}")
        return answer.status_code

    results = await asyncio.gather(*(guess(n) for n in range(2 * LIMIT)))
    counted: dict[Any, int] = {s: results.count(s) for s in set(results)}
    assert counted == {401: LIMIT, 429: LIMIT}


# ---- the console's users, each counted under their own address ---------------------------


@pytest.fixture
async def routing_behind_console(infra, database_url, topic_prefix) -> AsyncIterator[Routing]:
    """Routing with the defaults: no trusted proxy, so X-Forwarded-For counts for nothing."""
    settings = routing_settings(database_url, topic_prefix)
    assert not settings.http.trusted_proxies
    async with running_routing(settings) as running:
        yield running


async def console_sign_in(
    routing: Routing, client_id: str, secret: str, header: str | None
) -> httpx.Response:
    headers = {CLIENT_ADDRESS_HEADER: header} if header else {}
    body = {"client_id": client_id, "client_secret": secret}
    return await routing.http.post("/api/v1/auth/token", json=body, headers=headers)


ACCOUNTS = [f"station-{n}" for n in ("taiping-1", "taiping-2", "zeguo-1", "zeguo-2", "daxi-1")]


async def test_people_behind_the_console_are_counted_by_their_own_signed_address(
    routing_behind_console: Routing,
):
    """All sign-ins come from the console's one address; the console names each person's,
    signed with the shared key. One person's ten failures lock out that person's address,
    not everyone who signs in through the console."""
    routing = routing_behind_console
    auth = routing.settings.auth
    guesser = sign_client_address(auth, "203.0.113.9")
    tries = [
        await console_sign_in(routing, ACCOUNTS[n % len(ACCOUNTS)], WRONG, guesser)
        for n in range(LIMIT)
    ]
    assert statuses(tries) == [401] * LIMIT
    assert (await console_sign_in(routing, "operator", RIGHT, guesser)).status_code == 429
    # Another person at the console, from another address: signs in.
    colleague = sign_client_address(auth, "198.51.100.4")
    assert (await console_sign_in(routing, "operator", RIGHT, colleague)).status_code == 200


async def test_an_unsigned_or_forged_client_address_is_ignored(routing_behind_console: Routing):
    """Rotating addresses in the header without the key changes nothing: the failures count
    under the caller's own address."""
    routing = routing_behind_console
    forged = [f"203.0.113.{n} {'0' * 64}" for n in range(LIMIT)]
    tries = [
        await console_sign_in(routing, ACCOUNTS[n % len(ACCOUNTS)], WRONG, forged[n])
        for n in range(LIMIT)
    ]
    assert statuses(tries) == [401] * LIMIT
    fresh = "203.0.113.200"
    assert (await console_sign_in(routing, "operator", RIGHT, fresh)).status_code == 429
    wrong_key = AuthSettings(secret=SecretStr("k" * 40))
    assert (
        await console_sign_in(routing, "operator", RIGHT, sign_client_address(wrong_key, fresh))
    ).status_code == 429
