"""Who may call what: every HTTP endpoint of every service × every kind of caller.

The four services run as processes (a fresh database, seeded). One opinion from the online form
at station `zeguo-1` about traffic becomes case A of department `transport`; another (case B)
goes through the invitation path; a third (case R) is completed so that its voter holds a rating
link. "Another" department is `housing`, another station `taiping-1`.

`MATRIX` is the table: one row per (service, method, path) with the roles allowed. The expected
class of answer for each caller follows from it:

* allowed → OK: neither 401, 403 nor 404, and no 5xx (a 409 — the case is in another state
  — counts as allowed: the caller got past authorisation, the lifecycle said no);
* public endpoint → OK for everyone (the voter's secret in the path is the key);
* anonymous (no token) → 401;
* a role that may not → 403;
* another department's / station's object → 404 (indistinguishable from a missing one).

Rows are called in order and, in each row, refused callers before allowed ones, so that the
state changes an allowed call makes (acknowledge, complete, …) happen after the refusals.
`test_matrix_covers_every_endpoint` fails when a service grows an endpoint without a row.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
import pytest

from shared import topics
from tests.helpers import read_topic
from tests.security.conftest import (
    SERVICES,
    WECHAT_TOKEN,
    Stack,
    case_of,
    running_stack,
    submit_opinion,
    wechat_signature,
)

pytestmark = pytest.mark.e2e

OWN_STATION, OTHER_STATION = "zeguo-1", "taiping-1"
OWN_DEPARTMENT, OTHER_DEPARTMENT = "transport", "housing"


class Caller(StrEnum):
    ANONYMOUS = "anonymous"
    VOTER = "voter"  # no account: holds the receipt code / the rating link
    STATION_OWN = "station-own"
    STATION_OTHER = "station-other"
    DEPT_OWN = "dept-own"
    DEPT_OTHER = "dept-other"
    COMMITTEE = "committee"
    OPERATOR = "operator"
    ADMIN = "admin"


ACCOUNTS: dict[Caller, str | None] = {
    Caller.ANONYMOUS: None,
    Caller.VOTER: None,
    Caller.STATION_OWN: f"station-{OWN_STATION}",
    Caller.STATION_OTHER: f"station-{OTHER_STATION}",
    Caller.DEPT_OWN: f"dept-{OWN_DEPARTMENT}",
    Caller.DEPT_OTHER: f"dept-{OTHER_DEPARTMENT}",
    Caller.COMMITTEE: "committee",
    Caller.OPERATOR: "operator",
    Caller.ADMIN: "admin",
}


class Expect(StrEnum):
    OK = "ok"  # past authorisation: 2xx, or 409/422 about the body or the state
    UNAUTHENTICATED = "401"
    FORBIDDEN = "403"
    HIDDEN = "404"


C = Caller
STATION = frozenset({C.STATION_OWN, C.STATION_OTHER})
DEPARTMENT = frozenset({C.DEPT_OWN, C.DEPT_OTHER})
WIDE = frozenset({C.COMMITTEE, C.OPERATOR, C.ADMIN})
STAFF = STATION | DEPARTMENT | WIDE
# Whose object the row's case/department/station is not: 404 rather than 403 for them.
OTHERS_HIDDEN = {C.STATION_OTHER: Expect.HIDDEN, C.DEPT_OTHER: Expect.HIDDEN}


@dataclass(frozen=True)
class Row:
    service: str
    method: str
    path: str  # the OpenAPI path; {placeholders} filled from the fixture's ids
    allowed: frozenset[Caller] = frozenset()
    public: bool = False
    voter: bool = False  # the voter (receipt code / rating link) is a caller of interest
    overrides: dict[Caller, Expect] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # placeholder values of this row
    anonymous_values: dict[str, str] = field(default_factory=dict)  # … for the anonymous cell
    body: Any = None
    content: bytes | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    note: str = ""

    def callers(self) -> list[Caller]:
        return [c for c in Caller if c is not Caller.VOTER or self.voter]

    def expect(self, caller: Caller) -> Expect:
        if caller in self.overrides:
            return self.overrides[caller]
        if self.public or caller in self.allowed:
            return Expect.OK
        if caller in (C.ANONYMOUS, C.VOTER):
            return Expect.UNAUTHENTICATED
        return Expect.FORBIDDEN

    def ordered_callers(self) -> list[Caller]:
        """Refused first, then allowed (an allowed call may move the case on)."""
        callers = self.callers()
        return sorted(callers, key=lambda c: self.expect(c) is Expect.OK)


TODAY = date.today()
SOON = (datetime.now(UTC) + timedelta(days=60)).isoformat()
ACTIVITY = {"kind": "reception", "activity_date": TODAY.isoformat(), "visitor_count": 3}
STAFF_OPINION = {"channel": "station_reception", "content": "泽国镇菜市场周边占道经营严重"}
ONLINE_OPINION = {
    "channel": "online",
    "station_id": OWN_STATION,
    "category_id": "traffic",
    "content": "泽国镇文化路口红绿灯时间太短，老人过马路来不及",
}
WECHAT_QUERY = {"timestamp": "1700000000", "nonce": "sec-nonce"}
REPORT_TOKENS = {
    "aliyun": "authz-aliyun-report-token-0123",
    "tencent": "authz-tencent-report-token-01",
}


def _wechat_text(msg_id: str) -> bytes:
    return (
        "<xml><ToUserName>gh_minyi</ToUserName><FromUserName>oSecurityTest01</FromUserName>"
        f"<CreateTime>1700000000</CreateTime><MsgType>text</MsgType>"
        f"<Content>泽国镇文化路口红绿灯时间太短</Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


MATRIX: list[Row] = [
    # ---- intake ---------------------------------------------------------------------------
    Row("intake", "POST", "/api/v1/opinions", public=True, body=ONLINE_OPINION),
    Row("intake", "GET", "/api/v1/receipts/{receipt_code}", public=True, voter=True),
    Row(
        "intake",
        "POST",
        "/api/v1/stations/{station_id}/opinions",
        allowed=frozenset({C.STATION_OWN, C.OPERATOR, C.ADMIN}),
        body=STAFF_OPINION,
        note="intake answers 403 (not 404) to another station: stations are public data",
    ),
    Row(
        "intake",
        "POST",
        "/api/v1/stations/{station_id}/opinions/batch",
        allowed=frozenset({C.STATION_OWN, C.OPERATOR, C.ADMIN}),
        body={"items": [STAFF_OPINION]},
    ),
    Row(
        "intake",
        "POST",
        "/api/v1/stations/{station_id}/activities",
        allowed=frozenset({C.STATION_OWN, C.OPERATOR, C.ADMIN}),
        body=ACTIVITY,
    ),
    Row(
        "intake",
        "GET",
        "/api/v1/stations/{station_id}/activities",
        allowed=frozenset({C.STATION_OWN, C.COMMITTEE, C.OPERATOR, C.ADMIN}),
    ),
    Row(
        "intake",
        "PUT",
        "/api/v1/stations/{station_id}/reception-day",
        allowed=frozenset({C.STATION_OWN, C.OPERATOR, C.ADMIN}),
        body={"new_date": (TODAY + timedelta(days=20)).isoformat(), "reason": "安全测试改期"},
        note="allowed callers may get 422 (the date is not in this month) — still past authz",
    ),
    Row("intake", "GET", "/api/v1/stations/{station_id}/reception-day", public=True),
    Row(
        "intake",
        "GET",
        "/api/v1/stats/opinions",
        allowed=frozenset({C.STATION_OWN, C.COMMITTEE, C.OPERATOR, C.ADMIN}),
        params={"from": TODAY.isoformat(), "to": TODAY.isoformat(), "station_id": OWN_STATION},
    ),
    Row(
        "intake",
        "PUT",
        "/api/v1/reference/{kind}/{record_id}",
        allowed=frozenset({C.OPERATOR, C.ADMIN}),
        values={"kind": "town", "record_id": "sec-town"},
        body={"data": {"name": "安全测试镇"}},
    ),
    Row(
        "intake",
        "DELETE",
        "/api/v1/reference/{kind}/{record_id}",
        allowed=frozenset({C.OPERATOR, C.ADMIN}),
        values={"kind": "town", "record_id": "sec-town"},
    ),
    Row(
        "intake",
        "GET",
        "/api/v1/wechat/callback",
        public=True,
        params={**WECHAT_QUERY, "echostr": "sec-echo"},
        note="with a valid signature; a wrong one is 403 (test_wechat_signature_is_required)",
    ),
    Row(
        "intake",
        "POST",
        "/api/v1/wechat/callback",
        public=True,
        params=WECHAT_QUERY,
        content=_wechat_text("900000001"),
    ),
    # ---- routing --------------------------------------------------------------------------
    Row(
        "routing",
        "POST",
        "/api/v1/auth/token",
        public=True,
        body={"client_id": "committee", "client_secret": "minyi-dev-password"},
    ),
    Row("routing", "GET", "/api/v1/calendar/{year}", public=True, values={"year": "2026"}),
    Row(
        "routing",
        "PUT",
        "/api/v1/calendar/days/{day}",
        allowed=frozenset({C.ADMIN}),
        values={"day": "2099-01-03"},
        body={"is_working": True, "note": "安全测试"},
    ),
    Row(
        "routing",
        "GET",
        "/api/v1/cases",
        allowed=frozenset({C.STATION_OWN, C.DEPT_OWN}) | WIDE,
        overrides=OTHERS_HIDDEN,
        params={"opinion_id": "{opinion_id}"},
    ),
    Row(
        "routing",
        "GET",
        "/api/v1/cases/{case_id}",
        allowed=frozenset({C.STATION_OWN, C.DEPT_OWN}) | WIDE,
        overrides=OTHERS_HIDDEN,
    ),
    Row(
        "routing",
        "GET",
        "/api/v1/departments/{department_id}/queue",
        allowed=frozenset({C.DEPT_OWN}) | WIDE,
        overrides={C.DEPT_OTHER: Expect.HIDDEN},
    ),
    Row(
        "routing",
        "GET",
        "/api/v1/departments/{department_id}/stream",
        allowed=frozenset({C.DEPT_OWN}) | WIDE,
        overrides={C.DEPT_OTHER: Expect.HIDDEN},
        stream=True,
    ),
    Row("routing", "GET", "/api/v1/worklist", allowed=WIDE),
    Row("routing", "GET", "/api/v1/returns", allowed=WIDE),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/route",
        allowed=frozenset({C.OPERATOR, C.ADMIN}),
        overrides=OTHERS_HIDDEN,
        body={"department_id": OWN_DEPARTMENT, "reason": "安全测试：原部门"},
        note="allowed → 409: re-routing to the department it is with is refused",
    ),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/acknowledge",
        allowed=frozenset({C.DEPT_OWN}),
        overrides=OTHERS_HIDDEN,
        body={
            "responsible_person": "张科长",
            "contact": "0576-86000000",
            "planned_completion_date": (TODAY + timedelta(days=10)).isoformat(),
        },
    ),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/extension-request",
        allowed=frozenset({C.DEPT_OWN}),
        overrides=OTHERS_HIDDEN,
        body={"reason": "需协调多个部门", "requested_complete_due_at": SOON},
    ),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/extension-decision",
        allowed=frozenset({C.COMMITTEE, C.ADMIN}),
        overrides=OTHERS_HIDDEN,
        body={"granted": True, "reason": "同意"},
    ),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/complete",
        allowed=frozenset({C.DEPT_OWN}),
        overrides=OTHERS_HIDDEN,
        body={
            "handling_situation": "已调整信号灯配时",
            "handling_result": "已解决",
            "responsible_person": "张科长",
            "contact": "0576-86000000",
            "completion_date": TODAY.isoformat(),
        },
    ),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/return",
        allowed=frozenset({C.DEPT_OWN}),
        overrides=OTHERS_HIDDEN,
        body={"reason": "不属于本部门职责"},
        note="case A is completed by now: the department gets 409",
    ),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/invitation",
        allowed=frozenset({C.STATION_OWN, C.COMMITTEE, C.OPERATOR, C.ADMIN}),
        overrides=OTHERS_HIDDEN,
        values={"case_id": "{invitation_case_id}"},
        body={"reason": "需约请部门当面答复"},
        note="case B: the first allowed caller moves it to pending_review, the rest get 409",
    ),
    Row(
        "routing",
        "POST",
        "/api/v1/cases/{case_id}/invitation-decision",
        allowed=frozenset({C.COMMITTEE, C.ADMIN}),
        # Pending review: not yet the department's case, so it cannot see it at all.
        overrides={**OTHERS_HIDDEN, C.DEPT_OWN: Expect.HIDDEN},
        values={"case_id": "{invitation_case_id}"},
        body={"approved": True, "reason": "同意约请", "department_id": OWN_DEPARTMENT},
    ),
    # ---- notification ---------------------------------------------------------------------
    Row(
        "notification",
        "GET",
        "/api/v1/cases/{case_id}/deliveries",
        allowed=frozenset({C.DEPT_OWN}) | WIDE,
        # A station sees what was sent about a case only if its staff were told; by default
        # only departments are (station_staff is not among the audiences): 404.
        overrides={**OTHERS_HIDDEN, C.STATION_OWN: Expect.HIDDEN},
    ),
    Row(
        "notification",
        "POST",
        "/api/v1/reports/aliyun",
        public=True,
        body=[],
        params={"token": REPORT_TOKENS["aliyun"]},
        note="provider callback: the secret in its URL is the key (test_report_callbacks_…)",
    ),
    Row(
        "notification",
        "POST",
        "/api/v1/reports/tencent",
        public=True,
        body=[],
        params={"token": REPORT_TOKENS["tencent"]},
        note="provider callback: the secret in its URL is the key (test_report_callbacks_…)",
    ),
    # ---- evaluation -----------------------------------------------------------------------
    Row(
        "evaluation",
        "GET",
        "/api/v1/cases/{case_id}",
        allowed=frozenset({C.STATION_OWN, C.DEPT_OWN}) | WIDE,
        overrides=OTHERS_HIDDEN,
    ),
    Row(
        "evaluation",
        "GET",
        "/api/v1/cases/{case_id}/evaluations",
        allowed=frozenset({C.STATION_OWN, C.DEPT_OWN}) | WIDE,
        overrides=OTHERS_HIDDEN,
    ),
    Row(
        "evaluation",
        "POST",
        "/api/v1/cases/{case_id}/evaluations",
        allowed=frozenset({C.STATION_OWN, C.COMMITTEE}),
        overrides={C.STATION_OTHER: Expect.HIDDEN},
        body={"score": 90, "comment": "安全测试"},
        note="case A is no invitation: allowed callers get 409 not_an_invitation",
    ),
    Row(
        "evaluation",
        "GET",
        "/api/v1/departments/{department_id}/summary",
        allowed=STATION | frozenset({C.DEPT_OWN}) | WIDE,
        overrides={C.DEPT_OTHER: Expect.HIDDEN},
        note="stations read it as they read /kpis (every department's)",
    ),
    Row("evaluation", "GET", "/api/v1/kpis", allowed=STAFF),
    Row(
        "evaluation",
        "GET",
        "/api/v1/ratings/{token}",
        public=True,
        voter=True,
        anonymous_values={"token": "{forged_rating_token}"},
        overrides={C.ANONYMOUS: Expect.UNAUTHENTICATED},
        note="anonymous = a forged link (401); anyone holding the real link may read it",
    ),
    Row(
        "evaluation",
        "POST",
        "/api/v1/ratings/{token}",
        public=True,
        voter=True,
        anonymous_values={"token": "{forged_rating_token}"},
        overrides={C.ANONYMOUS: Expect.UNAUTHENTICATED},
        body={"level": "satisfied"},
        note="the first rating wins (201), later ones get it back (200)",
    ),
    # Issue 14, slice "holes": a station runs report-back sessions of its own station only
    # (dep-002 is a deputy of zeguo-1, the own station; the fixture's session is dep-002's).
    Row(
        "evaluation",
        "POST",
        "/api/v1/report-back-sessions",
        allowed=frozenset({C.STATION_OWN}) | WIDE,
        body={
            "deputy_id": "dep-002",
            "station_id": OWN_STATION,
            "held_on": TODAY.isoformat(),
            "title": "安全测试述职",
        },
        note="another station's deputy or an unknown one: 422 naming deputy_id (test_evaluation_"
        "reviews)",
    ),
    Row(
        "evaluation",
        "POST",
        "/api/v1/report-back-sessions/{session_id}/scores",
        allowed=frozenset({C.STATION_OWN}) | WIDE,
        body={"voter_ref": "ballot-1", "score": 80},
    ),
    Row(
        "evaluation",
        "GET",
        "/api/v1/report-back-sessions/{session_id}",
        allowed=STAFF - {C.STATION_OTHER},
    ),
    Row(
        "evaluation",
        "GET",
        "/api/v1/reports/monthly",
        allowed=STAFF,
        params={"month": TODAY.strftime("%Y-%m")},
    ),
    Row(
        "evaluation",
        "GET",
        "/api/v1/stations/activity",
        allowed=STAFF,
        params={"from": TODAY.strftime("%Y-%m"), "to": TODAY.strftime("%Y-%m")},
    ),
    Row("evaluation", "GET", "/api/v1/stations/advanced", allowed=STAFF, params={"year": 2025}),
    # ---- slice "console" (issue 14): routing's session routes ------------------------------
    Row("routing", "GET", "/api/v1/auth/session", allowed=STAFF),
    Row(
        "routing",
        "POST",
        "/api/v1/auth/logout",
        allowed=STAFF,
        note="last row: it revokes each caller's cached token (only /auth/session checks that)",
    ),
]

EXCLUDED_PREFIXES = ("/health/", "/metrics", "/docs", "/openapi.json", "/redoc")


# ---- the stack --------------------------------------------------------------------------------


@dataclass
class World:
    stack: Stack
    ids: dict[str, str]


def _complete(stack: Stack, case_id: str) -> None:
    department = stack.bearer(f"dept-{OWN_DEPARTMENT}")
    routing = stack.url("routing")
    for action, body in (
        ("acknowledge", MATRIX_BODY["acknowledge"]),
        ("complete", MATRIX_BODY["complete"]),
    ):
        r = httpx.post(
            f"{routing}/api/v1/cases/{case_id}/{action}", json=body, headers=department, timeout=30
        )
        assert r.status_code == 200, r.text


MATRIX_BODY = {
    row.path.rsplit("/", 1)[-1]: row.body
    for row in MATRIX
    if row.service == "routing" and row.method == "POST"
}


def _rating_link(stack: Stack, case_id: str) -> str:
    import asyncio
    import json

    records = asyncio.run(read_topic(stack.topic_prefix + topics.EVALUATION, at_least=1))
    for record in records:
        envelope = json.loads(record.value)
        if envelope["event_type"] == "rating.invited" and envelope["payload"]["case_id"] == case_id:
            url: str = envelope["payload"]["rating_url"]
            return url.rsplit("/", 1)[-1]
    raise AssertionError(f"no rating.invited for case {case_id}")


@pytest.fixture(scope="module")
def world(infra, tmp_path_factory) -> Iterator[World]:
    env = {
        "intake": {"MINYI_INTAKE__WECHAT__TOKEN": WECHAT_TOKEN},
        "notification": {
            f"MINYI_NOTIFICATION__CALLBACKS__{p.upper()}_TOKEN": t for p, t in REPORT_TOKENS.items()
        },
    }
    with running_stack(infra, tmp_path_factory.mktemp("authz"), extra_env=env) as stack:
        receipt_a = submit_opinion(stack)
        receipt_b = submit_opinion(stack)
        receipt_r = submit_opinion(stack)
        case_a = case_of(stack, receipt_a["opinion_id"])
        case_b = case_of(stack, receipt_b["opinion_id"])
        case_r = case_of(stack, receipt_r["opinion_id"])
        assert (case_a["department_id"], case_a["station_id"]) == (OWN_DEPARTMENT, OWN_STATION)
        _complete(stack, str(case_r["id"]))
        token = _rating_link(stack, str(case_r["id"]))
        session = httpx.post(
            f"{stack.url('evaluation')}/api/v1/report-back-sessions",
            json={"deputy_id": "dep-002", "held_on": TODAY.isoformat(), "title": "述职"},
            headers=stack.bearer("committee"),
            timeout=30,
        )
        assert session.status_code == 201, session.text

        def delivered() -> bool:
            r = httpx.get(
                f"{stack.url('notification')}/api/v1/cases/{case_a['id']}/deliveries",
                headers=stack.bearer("operator"),
                timeout=30,
            )
            return r.status_code == 200

        from tests.security.conftest import eventually

        eventually(delivered, what="the department's SMS about case A")
        for account in ACCOUNTS.values():
            if account:
                stack.sign_in(account)
        yield World(
            stack,
            {
                "receipt_code": receipt_a["receipt_code"],
                "opinion_id": receipt_a["opinion_id"],
                "case_id": str(case_a["id"]),
                "invitation_case_id": str(case_b["id"]),
                "station_id": OWN_STATION,
                "department_id": OWN_DEPARTMENT,
                "token": token,
                "forged_rating_token": token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"),
                "session_id": str(session.json()["session_id"]),
            },
        )


def _fill(template: str, values: dict[str, str]) -> str:
    for _ in range(2):  # a row's value may itself name a fixture id ("{invitation_case_id}")
        template = template.format(**values) if "{" in template else template
    return template


def _call(world: World, row: Row, caller: Caller) -> httpx.Response:
    stack = world.stack
    values = {**world.ids, **row.values}
    if caller is Caller.ANONYMOUS:
        values.update(row.anonymous_values)
    values = {k: _fill(v, world.ids) for k, v in values.items()}
    url = stack.url(row.service) + _fill(row.path, values)
    params = {k: _fill(v, values) if isinstance(v, str) else v for k, v in row.params.items()}
    if row.service == "intake" and row.path.startswith("/api/v1/wechat/"):
        # A signed URL is good once, within 300 s of its timestamp: a fresh one per call.
        params.update(timestamp=str(int(time.time())), nonce=f"{caller.value}-{time.time_ns()}")
        params["signature"] = wechat_signature(WECHAT_TOKEN, params["timestamp"], params["nonce"])
    account = ACCOUNTS[caller]
    headers = stack.bearer(account) if account else {}
    content = row.content
    if content is not None:  # one WeChat message per call (MsgId is the idempotency key)
        digest = hashlib.sha1(caller.value.encode()).hexdigest()
        content = content.replace(b"900000001", str(int(digest[:8], 16)).encode())
        headers = {**headers, "content-type": "application/xml"}
    with httpx.Client(timeout=30) as http:
        if row.stream:
            with http.stream(row.method, url, params=params, headers=headers) as answer:
                return answer  # the status is enough; leaving closes the stream
        return http.request(
            row.method, url, params=params, headers=headers, json=row.body, content=content
        )


def _matches(expect: Expect, status: int) -> bool:
    if status >= 500:
        return False
    if expect is Expect.OK:
        return status not in (401, 403, 404)
    return status == int(expect.value)


def test_authorisation_matrix(world: World):
    mismatches: list[str] = []
    cells = 0
    started = time.monotonic()
    for row in MATRIX:
        for caller in row.ordered_callers():
            expect = row.expect(caller)
            answer = _call(world, row, caller)
            cells += 1
            if not _matches(expect, answer.status_code):
                body = "" if row.stream else answer.text[:200]
                mismatches.append(
                    f"{row.service} {row.method} {row.path} as {caller.value}: expected "
                    f"{expect.value}, got {answer.status_code} {body}"
                )
    print(
        f"\nauthorisation matrix: {len(MATRIX)} endpoints, {cells} cells, "
        f"{time.monotonic() - started:.1f}s"
    )
    assert not mismatches, "\n".join(mismatches)


def test_wechat_signature_is_required(world: World):
    url = f"{world.stack.url('intake')}/api/v1/wechat/callback"
    forged = {**WECHAT_QUERY, "signature": "0" * 40}
    assert httpx.get(url, params={**forged, "echostr": "x"}).status_code == 403
    posted = httpx.post(url, params=forged, content=_wechat_text("900000099"))
    assert posted.status_code == 403


def test_report_callbacks_need_their_token(world: World):
    """Whoever calls (a staff token is no key here): no callback token or a wrong one → 401."""
    for provider, token in REPORT_TOKENS.items():
        url = f"{world.stack.url('notification')}/api/v1/reports/{provider}"
        for params in ({}, {"token": token[:-1]}):
            for headers in ({}, world.stack.bearer("admin")):
                answer = httpx.post(url, params=params, json=[], headers=headers, timeout=30)
                assert answer.status_code == 401, answer.text


def test_matrix_covers_every_endpoint(world: World):
    """Every (method, path) of every live OpenAPI has a row, and every row an endpoint."""
    live: set[tuple[str, str, str]] = set()
    for service in SERVICES:
        spec = httpx.get(f"{world.stack.url(service)}/openapi.json", timeout=30).json()
        for path, operations in spec["paths"].items():
            if path.startswith(EXCLUDED_PREFIXES):
                continue
            for method in operations:
                if method in ("get", "post", "put", "patch", "delete"):
                    live.add((service, method.upper(), path))
    table = {(r.service, r.method, r.path) for r in MATRIX}
    assert len(table) == len(MATRIX), "a row appears twice"
    assert sorted(live - table) == [], "endpoints without a row in MATRIX"
    assert sorted(table - live) == [], "rows for endpoints that no longer exist"
