"""Client addresses and request bodies on the services as processes (uvicorn as in production):

* X-Forwarded-For from 127.0.0.1 does not pick the client's address unless the service's
  `http.trusted_proxies` names the proxy (uvicorn's own default trusts localhost): rotating it
  does not escape a per-address limit (intake's receipts, routing's sign-in);
* a 12 MB body gets 413 from every service before anything parses it.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from tests.security.conftest import SERVICES, Stack, running_stack

pytestmark = pytest.mark.e2e

PER_ADDRESS = 5
SIGNIN_LIMIT = 10  # routing's default limits.signin_max_failures
TWELVE_MB = 12 * 1024 * 1024
PROBE_ACCOUNT = "big-body-probe"


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory) -> Iterator[Stack]:
    env = {"intake": {"MINYI_INTAKE__RATE_LIMIT__PER_ADDRESS": f"{PER_ADDRESS}/minute"}}
    with running_stack(
        infra, tmp_path_factory.mktemp("proxy-bodies"), services=SERVICES, extra_env=env
    ) as started:
        yield started


def _rotating(n: int) -> dict[str, str]:
    return {"x-forwarded-for": f"203.0.113.{n}"}


def test_rotating_forwarded_for_from_localhost_is_still_one_address(stack: Stack):
    receipts = f"{stack.url('intake')}/api/v1/receipts/NOPE0-NOPE0"
    answers = [httpx.get(receipts, headers=_rotating(n)) for n in range(PER_ADDRESS + 1)]
    assert [a.status_code for a in answers] == [404] * PER_ADDRESS + [429]

    # Sign-in: a wrong secret for a different account each time, from "different" addresses.
    token = f"{stack.url('routing')}/api/v1/auth/token"
    statuses = [
        httpx.post(
            token,
            json={"client_id": f"probe-{n}", "client_secret": "wrong-secret"},
            headers=_rotating(n),
            timeout=30,
        ).status_code
        for n in range(SIGNIN_LIMIT + 1)
    ]
    assert statuses == [401] * SIGNIN_LIMIT + [429]


# ---- 12 MB bodies: raw HTTP, so that the answer is read however early the server gives it ----


def _post_raw(url: str, path: str, *, total: int, chunked: bool) -> tuple[int, dict[str, str]]:
    """POST `total` bytes (declared by Content-Length, or chunked without it), sending only
    while the server has not answered; the status and JSON body of its answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        length = "transfer-encoding: chunked" if chunked else f"content-length: {total}"
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"{length}\r\n\r\n"
        )
        sock.sendall(head.encode())
        piece = b'{"client_id": "' + PROBE_ACCOUNT.encode() + b'", "client_secret": "'
        piece += b"x" * (64 * 1024 - len(piece))
        sent = 0
        try:
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server has answered
                chunk = piece if sent == 0 else b"x" * 64 * 1024
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed: read what it said
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, f"no answer after {sent} bytes"
            answer += data
        head_part, _, body = answer.partition(b"\r\n\r\n")
        headers = dict(
            line.split(": ", 1) for line in head_part.decode("latin1").lower().split("\r\n")[1:]
        )
        while len(body) < int(headers.get("content-length", "0")):
            data = sock.recv(65536)
            if not data:
                break
            body += data
        status = int(head_part.split(b" ", 2)[1])
        return status, json.loads(body) if body else {}


ENDPOINTS = {
    "intake": "/api/v1/opinions",
    "routing": "/api/v1/auth/token",
    "notification": "/api/v1/reports/aliyun",
    "evaluation": "/api/v1/ratings/some-link",
}


async def _probe_attempts(stack: Stack) -> int:
    """Sign-in attempts routing counted for the probe's account (it counts every attempt)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM routing.signin_failures WHERE key = $1", PROBE_ACCOUNT
        )
        return count
    finally:
        await conn.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_every_service_refuses_a_12_mb_body_before_parsing_it(stack: Stack, chunked: bool):
    for service, path in ENDPOINTS.items():
        status, body = _post_raw(stack.url(service), path, total=TWELVE_MB, chunked=chunked)
        assert status == 413, (service, status, body)
        assert body["error"] == "payload_too_large", (service, body)
    # Routing never saw the sign-in: no attempt was counted for the account it names.
    assert asyncio.run(_probe_attempts(stack)) == 0


def test_a_named_proxy_may_name_the_client(stack: Stack):
    """With http.trusted_proxies naming 127.0.0.1, uvicorn and the limiter take the client
    from X-Forwarded-For: rotating it spreads the requests, repeating it does not."""
    intake = stack.services["intake"]
    intake.stop()
    intake.start(extra_env={"MINYI_INTAKE__HTTP__TRUSTED_PROXIES": '["127.0.0.1"]'})
    receipts = f"{stack.url('intake')}/api/v1/receipts/NOPE0-NOPE0"
    spread = [httpx.get(receipts, headers=_rotating(n)) for n in range(2 * PER_ADDRESS)]
    assert [a.status_code for a in spread] == [404] * (2 * PER_ADDRESS)
    same = [httpx.get(receipts, headers=_rotating(250)) for _ in range(PER_ADDRESS + 1)]
    assert [a.status_code for a in same] == [404] * PER_ADDRESS + [429]
