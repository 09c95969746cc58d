"""The console's sign-in, sign-out and forms against routing on real PostgreSQL and Kafka
(routing in-process, the console reaching it over an ASGI transport; issue 14):

* cross-site posts and posts without this session's CSRF token → 403, nothing changes;
* a session cookie copied before sign-out is refused after it, and routing's
  `/api/v1/auth/session` refuses its token (revocation in routing's database);
* routing's two session routes on their own (401s, 204, idempotence, purge of expired rows);
* `Secure` cookies over TLS; control characters in a query → 400, not 500.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI

from console.app import build_app as build_console
from console.settings import ConsoleSettings, ServiceUrls, SessionSettings
from services.routing.app import MIGRATIONS, SCHEMA, seed
from services.routing.app import build_app as build_routing
from services.routing.settings import DEV_PASSWORD
from shared.auth import AuthSettings, Principal, Role, issue_token
from shared.runtime import ServiceRuntime
from tests.helpers import migrate
from tests.integration.test_routing_api import routing_settings

pytestmark = pytest.mark.integration

PASSWORD = DEV_PASSWORD
ROUTING = "http://routing"
CONSOLE = "http://console"
SESSION_COOKIE = "minyi_console"
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')
SIGNED_OUT = "/login?reason=signed_out"


@dataclass
class Stack:
    auth: AuthSettings
    routing_app: FastAPI
    runtime: ServiceRuntime
    routing: httpx.AsyncClient  # straight to routing

    def console_app(self, **session: object) -> FastAPI:
        settings = ConsoleSettings(
            services=ServiceUrls(
                intake=ROUTING, routing=ROUTING, notification=ROUTING, evaluation=ROUTING
            ),
            session=SessionSettings(secret="console-test-secret-0123456789abcdef", **session),
        )
        return build_console(settings, transport=httpx.ASGITransport(app=self.routing_app))

    async def revoked_rows(self) -> int:
        count: int = await self.runtime.pool.fetchval("SELECT count(*) FROM revoked_tokens")
        return count


@pytest.fixture
async def stack(infra, database_url, topic_prefix) -> AsyncIterator[Stack]:
    settings = routing_settings(database_url, topic_prefix)
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(settings)
    app = build_routing(settings)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ROUTING) as http:
            yield Stack(settings.auth, app, runtime, http)
    finally:
        await runtime.stop()


@pytest.fixture
async def console(stack: Stack) -> AsyncIterator[FastAPI]:
    app = stack.console_app()
    async with app.router.lifespan_context(app):
        yield app


def browser(app: FastAPI, base_url: str = CONSOLE) -> httpx.AsyncClient:
    """A client that keeps cookies, as a browser of the console's own pages would."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


SAME_ORIGIN = {"origin": CONSOLE, "sec-fetch-site": "same-origin"}


def form_token(html: str) -> str:
    """The page's CSRF token ("" when it has none: the tests then fail on what they assert,
    not here)."""
    found = TOKEN_FIELD.search(html)
    return found.group(1) if found else ""


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def session_set(response: httpx.Response) -> bool:
    return any(
        c.startswith(f"{SESSION_COOKIE}=") and not c.startswith(f'{SESSION_COOKIE}=""')
        for c in set_cookies(response)
    )


async def sign_in(client: httpx.AsyncClient, user: str = "operator") -> str:
    """Signs in through the form; returns the CSRF token of the signed-in pages."""
    page = await client.get("/login")
    answer = await client.post(
        "/login",
        data={"username": user, "secret": PASSWORD, "csrf_token": form_token(page.text)},
        headers=SAME_ORIGIN,
    )
    assert answer.status_code == 303, answer.text
    assert session_set(answer)
    home = await client.get("/cases")
    assert home.status_code == 200, home.text
    return form_token(home.text)


def bearer_of(client: httpx.AsyncClient) -> dict[str, str]:
    """The routing token inside the console's session cookie (payload.mac; JSON payload)."""
    import base64
    import json

    payload = client.cookies[SESSION_COOKIE].split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {"authorization": f"Bearer {data['token']}"}


# ---- a. cross-site requests ------------------------------------------------------------------


async def test_cross_site_sign_in_is_refused_and_sets_no_cookie(console: FastAPI):
    async with browser(console) as victim, browser(console) as attacker:
        page = await victim.get("/login")
        assert page.status_code == 200
        token = form_token(page.text)
        good = {"username": "operator", "secret": PASSWORD, "csrf_token": token}
        foreign_token = form_token((await attacker.get("/login")).text)
        refused = [
            ("foreign Origin", good, {"origin": "https://evil.example"}),
            ("Origin null", good, {"origin": "null"}),
            ("cross-site fetch", good, {"sec-fetch-site": "cross-site"}),
            ("same-site fetch", good, {"sec-fetch-site": "same-site"}),
            ("no token", {**good, "csrf_token": ""}, SAME_ORIGIN),
            ("no token field", {"username": "operator", "secret": PASSWORD}, SAME_ORIGIN),
            ("another browser's token", {**good, "csrf_token": foreign_token}, SAME_ORIGIN),
        ]
        for what, data, headers in refused:
            answer = await victim.post("/login", data=data, headers=headers)
            assert answer.status_code == 403, what
            assert "无法确认这个请求来自本监控台" in answer.text, what
            assert not session_set(answer), what
        assert SESSION_COOKIE not in victim.cookies
        # The right token but without the pre-session cookie it belongs to (a forged form
        # carrying a token lifted from the attacker's own visit): refused.
        async with browser(console) as fresh:
            answer = await fresh.post("/login", data=good, headers=SAME_ORIGIN)
            assert answer.status_code == 403
            assert not session_set(answer)
        # The same form from the console's own page goes through (the refusals above were the
        # CSRF checks, not the credentials).
        answer = await victim.post("/login", data=good, headers=SAME_ORIGIN)
        assert answer.status_code == 303
        assert session_set(answer)


async def test_a_post_without_this_sessions_token_changes_nothing(stack: Stack, console: FastAPI):
    async with browser(console) as alice, browser(console) as bob:
        await sign_in(alice, "operator")
        bobs_token = await sign_in(bob, "committee")
        alice_bearer = bearer_of(alice)
        for what, data, headers in (
            ("no token", {}, SAME_ORIGIN),
            ("another session's token", {"csrf_token": bobs_token}, SAME_ORIGIN),
            ("a sign-in form's token", {"csrf_token": form_token((await bob.get("/login")).text)},
             SAME_ORIGIN),
            ("cross-site", {"csrf_token": bobs_token}, {"origin": "https://evil.example"}),
        ):  # fmt: skip
            answer = await alice.post("/logout", data=data, headers=headers)
            assert answer.status_code == 403, what
            assert SESSION_COOKIE in alice.cookies, what
        # Nothing changed: alice is still signed in, at the console and at routing.
        assert (await alice.get("/")).headers["location"] == "/overview"
        assert (
            await stack.routing.get("/api/v1/auth/session", headers=alice_bearer)
        ).status_code == 200
        assert await stack.revoked_rows() == 0


# ---- b. sign-out ends the session everywhere -------------------------------------------------


async def test_a_cookie_copied_before_sign_out_is_refused_after_it(stack: Stack, console: FastAPI):
    async with browser(console) as user, browser(console) as thief:
        token = await sign_in(user, "dept-transport")
        copied = user.cookies[SESSION_COOKIE]
        bearer = bearer_of(user)
        thief.cookies.set(SESSION_COOKIE, copied)
        before = await thief.get("/")
        assert before.status_code == 303
        assert before.headers["location"] == "/departments/transport"  # the copy works now

        out = await user.post("/logout", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert out.status_code == 303
        assert SESSION_COOKIE not in user.cookies

        after = await thief.get("/departments/transport")
        assert after.status_code == 303
        assert after.headers["location"] == SIGNED_OUT
        assert out.headers["location"] == SIGNED_OUT
        assert await stack.revoked_rows() == 1
        page = await thief.get(after.headers["location"])
        assert "您已退出登录" in page.text
        thief.cookies.set(SESSION_COOKIE, copied)
        api = await thief.get("/api/pipeline")
        assert api.status_code == 401
        session = await stack.routing.get("/api/v1/auth/session", headers=bearer)
        assert session.status_code == 401
        assert session.json()["error"] == "unauthorized"


async def test_sign_out_seen_by_another_console_process(stack: Stack):
    """Two console processes (replicas): a sign-out through one is refused by the other once
    its confirmation is older than the cache time (0 here: asked on every request)."""
    first, second = stack.console_app(), stack.console_app(check_cache_s=0)
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        browser(first) as user,
        browser(second) as other,
    ):
        token = await sign_in(user)
        other.cookies.set(SESSION_COOKIE, user.cookies[SESSION_COOKIE])
        assert (await other.get("/")).headers["location"] == "/overview"
        await user.post("/logout", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert (await other.get("/")).headers["location"] == SIGNED_OUT


async def test_routing_session_routes(stack: Stack):
    http = stack.routing
    principal = Principal("dept-transport", Role.DEPARTMENT, department_id="transport")
    token = issue_token(stack.auth, principal)
    other = issue_token(stack.auth, principal)  # a second sign-in of the same account
    bearer, other_bearer = (
        {"authorization": f"Bearer {token}"},
        {"authorization": f"Bearer {other}"},
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    expires = datetime.fromtimestamp(claims["exp"], UTC)

    for path, method in (("/api/v1/auth/session", "GET"), ("/api/v1/auth/logout", "POST")):
        for headers in ({}, {"authorization": "Bearer not.a.token"}, {"authorization": token}):
            answer = await http.request(method, path, headers=headers)
            assert answer.status_code == 401, (path, headers)
            assert answer.json()["error"] == "unauthorized"
            assert answer.json()["message"]
    assert await stack.revoked_rows() == 0

    answer = await http.get("/api/v1/auth/session", headers=bearer)
    assert answer.status_code == 200
    body = answer.json()
    assert {k: body[k] for k in ("subject", "role", "department_id", "station_id")} == {
        "subject": "dept-transport",
        "role": "department",
        "department_id": "transport",
        "station_id": None,
    }
    assert datetime.fromisoformat(body["expires_at"]) == expires

    assert (await http.post("/api/v1/auth/logout", headers=bearer)).status_code == 204
    assert (await http.get("/api/v1/auth/session", headers=bearer)).status_code == 401
    assert (await http.post("/api/v1/auth/logout", headers=bearer)).status_code == 204  # again
    assert await stack.revoked_rows() == 1
    # Only that token: the account's other sign-in still holds.
    assert (await http.get("/api/v1/auth/session", headers=other_bearer)).status_code == 200

    # Rows of tokens that have expired since are deleted by the next sign-out.
    past = datetime.now(UTC) - timedelta(minutes=1)
    await stack.runtime.pool.execute(
        "INSERT INTO revoked_tokens (jti, subject, expires_at) VALUES ('old', 'x', $1)", past
    )
    assert await stack.revoked_rows() == 2
    assert (await http.post("/api/v1/auth/logout", headers=other_bearer)).status_code == 204
    jtis = {r["jti"] for r in await stack.runtime.pool.fetch("SELECT jti FROM revoked_tokens")}
    assert "old" not in jtis
    assert len(jtis) == 2


# ---- c. Secure cookies over TLS --------------------------------------------------------------


async def login_cookies(app: FastAPI, base_url: str, origin: str) -> list[str]:
    async with browser(app, base_url) as client:
        page = await client.get("/login")
        cookies = set_cookies(page)
        # A browser talks https to a TLS proxy and sends its Secure cookies back; this
        # client may talk plain http to the console: hand the pre-session cookie back as such.
        client.cookies.set(f"{SESSION_COOKIE}_login", page.cookies[f"{SESSION_COOKIE}_login"])
        answer = await client.post(
            "/login",
            data={"username": "operator", "secret": PASSWORD, "csrf_token": form_token(page.text)},
            headers={"origin": origin, "sec-fetch-site": "same-origin"},
        )
        assert answer.status_code == 303, answer.text
        return cookies + set_cookies(answer)


def is_secure(set_cookie: str) -> bool:
    return "secure" in [part.strip().lower() for part in set_cookie.split(";")]


async def test_cookies_are_secure_over_tls(stack: Stack, console: FastAPI):
    over_tls = await login_cookies(console, "https://console", "https://console")
    assert len(over_tls) == 3  # pre-session set, pre-session deleted, session set
    assert all(is_secure(c) for c in over_tls), over_tls
    assert all("httponly" in c.lower() and "samesite=strict" in c.lower() for c in over_tls)

    plain = await login_cookies(console, CONSOLE, CONSOLE)  # dev: plain http, no Secure
    assert not any(is_secure(c) for c in plain), plain

    forced = stack.console_app(secure_cookie=True)  # behind a TLS proxy that says nothing
    async with forced.router.lifespan_context(forced):
        behind_proxy = await login_cookies(forced, CONSOLE, CONSOLE)
    assert all(is_secure(c) for c in behind_proxy), behind_proxy


# ---- d. control characters in queries --------------------------------------------------------


async def test_control_characters_in_a_query_are_refused(console: FastAPI):
    async with browser(console) as user:
        await sign_in(user)
        for query in ("\x00", "ABCDE\x00", "abc\x1fdef", "\x7f"):
            answer = await user.get("/cases", params={"q": query})
            assert answer.status_code == 400, (query, answer.text[:200])
            assert "控制字符" in answer.text
        assert (await user.get("/departments/%00")).status_code == 400
        api = await user.get("/api/pipeline", params={"x": "\x00"})
        assert api.status_code == 400
        assert api.json()["error"] == "bad_request"
        # Characters that mean something in a URL are escaped, not interpreted.
        for query in ("A/B", "../worklist", "X?y=1", "%2F", "#frag"):
            answer = await user.get("/cases", params={"q": query})
            assert answer.status_code == 404, (query, answer.text[:200])
            assert "没有找到" in answer.text
        # A department that does not exist: 404, without asking routing about it.
        assert (await user.get("/departments/no-such-department")).status_code == 404


async def test_sign_in_and_pages_still_work_with_the_checks(console: FastAPI):
    """The ordinary path: sign in, a page, sign out, then the pages ask for a sign-in."""
    async with browser(console) as user:
        token = await sign_in(user, "operator")
        assert (await user.get("/")).headers["location"] == "/overview"
        out = await user.post("/logout", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert out.headers["location"] == SIGNED_OUT
        assert (await user.get("/cases")).headers["location"] == "/login"  # no cookie left
