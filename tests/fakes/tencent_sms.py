"""A fake Tencent Cloud SMS (sms 2021-01-11) endpoint that the official SDK can talk to.

What the SDK (tencentcloud-sdk-python-sms, async client, TC3 signature) sends for ``SendSms``::

    POST /
    Host: 127.0.0.1:PORT
    Content-Type: application/json
    X-TC-Action: SendSms
    X-TC-Version: 2021-01-11
    X-TC-Timestamp: 1735689600
    X-TC-Region: ap-guangzhou
    Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/tc3_request,
                   SignedHeaders=content-type;host, Signature=<hex>
    {"PhoneNumberSet": ["+8613800138000"], "SmsSdkAppId": "1400000000", "SignName": "..",
     "TemplateId": "2000001", "TemplateParamSet": ["..", ".."], "SessionContext": ".."}

Answers as Tencent does: HTTP 200 ``{"Response": {"SendStatusSet": [{"SerialNo", "PhoneNumber",
"Fee", "SessionContext", "Code": "Ok", "Message": "send success", "IsoCode": "CN"}],
"RequestId"}}``; per-number failures in ``SendStatusSet[].Code`` (``LimitExceeded.
PhoneNumberDailyLimit``, ``InvalidParameterValue.IncorrectPhoneNumber``, ..); errors of the
whole request in ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``
(``AuthFailure.SignatureFailure``, ``AuthFailure.SecretIdNotFound``, ``MissingParameter``).

``PullSmsSendStatusByPhoneNumber`` (``X-TC-Action``; JSON ``BeginTime``, ``EndTime``, ``Offset``
(must be 0), ``Limit`` ≤ 100, ``PhoneNumber``, ``SmsSdkAppId``) answers from the accepted
messages as status reports: ``{"Response": {"PullSmsSendStatusSet": [{"UserReceiveTime",
"CountryCode", "SubscriberNumber", "PhoneNumber", "SerialNo", "ReportStatus": "SUCCESS",
"Description": "DELIVRD", "SessionContext"}], "RequestId"}}``.

Control endpoints (as the Aliyun fake): ``GET /_fake/health``, ``GET /_fake/requests``,
``GET /_fake/attempts``, ``POST /_fake/reset``, ``POST /_fake/script {"codes": [..]}`` where a
code is a SendStatusSet code, ``"Ok"``, ``"HTTP_503"`` / ``"HTTP_500"``, or ``"Error:<Code>"``
for a whole-request error; ``GET /_fake/queries``, ``POST /_fake/query_script`` (the same codes
for the next pulls) and ``POST /_fake/query_lag {"seconds": s}`` (a report shows s seconds after
its send). Every recorded call carries ``seq``, the fake's call order.

Run: ``python -m tests.fakes.tencent_sms --port 18081 [--secret-id ID --secret-key KEY]``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.aliyun_sms import add_query_controls
from tests.fakes.runner import FakeProcess, add_control_routes

ACTION = "SendSms"
PULL_ACTION = "PullSmsSendStatusByPhoneNumber"
VERSION = "2021-01-11"
SERVICE = "sms"
_AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<svc>[^/]+)"
    r"/tc3_request, SignedHeaders=(?P<sh>[^,]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
_PHONE_RE = re.compile(r"\+861[3-9]\d{9}|\+[1-9]\d{7,14}")
MESSAGES = {
    "Ok": "send success",
    "LimitExceeded.PhoneNumberDailyLimit": "the number of SMS messages sent from a single "
    "mobile number every day exceeds the upper limit",
    "LimitExceeded.PhoneNumberThirtySecondLimit": "the number of SMS messages sent from a "
    "single mobile number within 30 seconds exceeds the upper limit",
    "InvalidParameterValue.IncorrectPhoneNumber": "incorrect number format",
    "FailedOperation.TemplateIncorrectOrUnapproved": "template unapproved or not exist",
    "InternalError.Timeout": "request timeout",
}


class FakeState:
    def __init__(self, credentials: dict[str, str] | None) -> None:
        self.credentials = credentials
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.script: deque[str] = deque()
        self.queries: list[dict[str, Any]] = []
        self.query_script: deque[str] = deque()
        self.query_lag_s = 0.0
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.attempts.clear()
            self.script.clear()
            self.queries.clear()
            self.query_script.clear()
            self.query_lag_s = 0.0


def _error(code: str, message: str, status: int = 200) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "Response": {
                "Error": {"Code": code, "Message": message},
                "RequestId": str(uuid.uuid4()),
            }
        },
    )


def _sign(secret: str, date: str, service: str, string_to_sign: str) -> str:
    def _h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k = _h(_h(_h(("TC3" + secret).encode("utf-8"), date), service), "tc3_request")
    return hmac.new(k, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _check_signature(state: FakeState, request: Request, body: bytes) -> JSONResponse | None:
    match = _AUTH_RE.match(request.headers.get("authorization", ""))
    if match is None:
        return _error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be "
            "validated. Please check your signature is correct.",
        )
    timestamp = request.headers.get("x-tc-timestamp", "")
    if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > 300:
        return _error("AuthFailure.SignatureExpire", "Signature expired.")
    if state.credentials is None:
        return None
    secret = state.credentials.get(match["id"])
    if secret is None:
        return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    signed = match["sh"].split(";")
    headers = "".join(f"{h}:{request.headers.get(h, '').strip()}\n" for h in signed)
    canonical = "\n".join(
        [
            request.method,
            request.url.path or "/",
            request.url.query if request.method == "GET" else "",
            headers,
            match["sh"],
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{match['date']}/{match['svc']}/tc3_request"
    to_sign = (
        f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n"
        f"{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    )
    if not hmac.compare_digest(_sign(secret, match["date"], match["svc"], to_sign), match["sig"]):
        return _error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be "
            "validated. Please check your signature is correct.",
        )
    return None


def _pull_status(state: FakeState, params: dict[str, Any]) -> JSONResponse:
    """PullSmsSendStatusByPhoneNumber: the number's status reports in [BeginTime, EndTime]."""
    for name in ("BeginTime", "Limit", "PhoneNumber", "SmsSdkAppId"):
        if params.get(name) in (None, ""):
            return _error(
                "MissingParameter", f"The request is missing a required parameter `{name}`."
            )
    begin, end, limit = params["BeginTime"], params.get("EndTime"), params["Limit"]
    if not isinstance(begin, int) or not isinstance(limit, int) or not 1 <= limit <= 100:
        return _error("InvalidParameterValue", "BeginTime and Limit (1-100) must be integers.")
    if params.get("Offset", 0) != 0:
        return _error("InvalidParameterValue", "Offset must be 0.")
    now = time.time()
    if begin < now - 7 * 86400:
        return _error("InvalidParameterValue.BeginTimeTooEarly", "at most 7 days back")
    with state.lock:
        scripted = state.query_script.popleft() if state.query_script else None
        state.queries.append(
            {
                "phone_number": params["PhoneNumber"],
                "begin_time": begin,
                "end_time": end,
                "code": scripted or "Ok",
                "received_at": datetime.now(UTC).isoformat(),
                "seq": state.next_seq(),
            }
        )
        reports = [
            r
            for r in state.requests
            if r["phone_number"] == params["PhoneNumber"]
            and r["sms_sdk_app_id"] == params["SmsSdkAppId"]
            and begin <= datetime.fromisoformat(r["received_at"]).timestamp()
            and (end is None or datetime.fromisoformat(r["received_at"]).timestamp() <= end)
            and datetime.fromisoformat(r["received_at"]).timestamp() + state.query_lag_s <= now
        ]
    if scripted is not None and scripted != "Ok":
        if scripted.startswith("HTTP_"):
            return JSONResponse(status_code=int(scripted[5:]), content={"error": "unavailable"})
        code = scripted.removeprefix("Error:")
        return _error(code, MESSAGES.get(code, code))
    phone = params["PhoneNumber"]
    statuses = [
        {
            "UserReceiveTime": int(datetime.fromisoformat(r["received_at"]).timestamp()) + 2,
            "CountryCode": "86" if phone.startswith("+86") else "",
            "SubscriberNumber": phone.removeprefix("+86"),
            "PhoneNumber": phone,
            "SerialNo": r["serial_no"],
            "ReportStatus": "SUCCESS",
            "Description": "DELIVRD",
            "SessionContext": r.get("session_context") or "",
        }
        for r in reports[:limit]
    ]
    return JSONResponse(
        content={"Response": {"PullSmsSendStatusSet": statuses, "RequestId": str(uuid.uuid4())}}
    )


def create_app(credentials: dict[str, str] | None = None) -> FastAPI:
    state = FakeState(credentials)
    app = FastAPI(title="fake-tencent-sms", openapi_url=None, docs_url=None, redoc_url=None)

    add_control_routes(app, state)
    add_query_controls(app, state)

    @app.post("/")
    async def api(request: Request) -> JSONResponse:
        body = await request.body()
        denied = _check_signature(state, request, body)
        if denied is not None:
            return denied
        action = request.headers.get("x-tc-action")
        if action not in (ACTION, PULL_ACTION):
            return _error("InvalidAction", "The action does not exist.")
        if request.headers.get("x-tc-version") != VERSION:
            return _error("NoSuchVersion", "The API version does not exist.")
        try:
            params: dict[str, Any] = json.loads(body or b"{}")
        except ValueError:
            return _error("InvalidParameter", "The request body is not valid JSON.")
        if action == PULL_ACTION:
            return _pull_status(state, params)
        for name in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
            if not params.get(name):
                return _error(
                    "MissingParameter", f"The request is missing a required parameter `{name}`."
                )
        phones: list[str] = list(params["PhoneNumberSet"])
        now = datetime.now(UTC).isoformat()
        with state.lock:
            scripted = state.script.popleft() if state.script else None
        attempt: dict[str, Any] = {
            "phone_numbers": phones,
            "session_context": params.get("SessionContext"),
            "received_at": now,
        }
        if scripted is not None and scripted != "Ok":
            attempt["code"] = scripted
            with state.lock:
                attempt["seq"] = state.next_seq()
                state.attempts.append(attempt)
            if scripted.startswith("HTTP_"):
                return JSONResponse(status_code=int(scripted[5:]), content={"error": "unavailable"})
            if scripted.startswith("Error:"):
                code = scripted.removeprefix("Error:")
                return _error(code, MESSAGES.get(code, code))
        statuses = []
        delivered = []
        for phone in phones:
            code = scripted if scripted not in (None, "Ok") else "Ok"
            if code == "Ok" and not _PHONE_RE.fullmatch(phone):
                code = "InvalidParameterValue.IncorrectPhoneNumber"
            serial = (
                f"{random.randint(10**9, 10**10 - 1)}:{uuid.uuid4().hex[:24]}"
                if code == "Ok"
                else ""
            )
            statuses.append(
                {
                    "SerialNo": serial,
                    "PhoneNumber": phone,
                    "Fee": 1 if code == "Ok" else 0,
                    "SessionContext": params.get("SessionContext", ""),
                    "Code": code,
                    "Message": MESSAGES.get(code, code),
                    "IsoCode": "CN" if phone.startswith("+86") else "",
                }
            )
            if code == "Ok":
                delivered.append(
                    {
                        "phone_number": phone,
                        "sms_sdk_app_id": params["SmsSdkAppId"],
                        "sign_name": params.get("SignName"),
                        "template_id": params["TemplateId"],
                        "template_params": params.get("TemplateParamSet") or [],
                        "session_context": params.get("SessionContext"),
                        "secret_id": _secret_id(request),
                        "region": request.headers.get("x-tc-region"),
                        "serial_no": serial,
                        "received_at": now,
                    }
                )
        attempt["code"] = statuses[0]["Code"] if statuses else "Ok"
        with state.lock:
            attempt["seq"] = state.next_seq()
            for entry in delivered:
                entry["seq"] = attempt["seq"]
            state.attempts.append(attempt)
            state.requests.extend(delivered)
        return JSONResponse(
            content={"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}}
        )

    return app


def _secret_id(request: Request) -> str | None:
    match = _AUTH_RE.match(request.headers.get("authorization", ""))
    return match["id"] if match else None


class FakeTencentServer(FakeProcess):
    module = "tests.fakes.tencent_sms"

    def __init__(
        self,
        *,
        secret_id: str | None = None,
        secret_key: str | None = None,
        port: int | None = None,
    ) -> None:
        args = (
            ["--secret-id", secret_id, "--secret-key", secret_key]
            if secret_id and secret_key
            else []
        )
        super().__init__(*args, port=port)

    def queries(self) -> list[dict[str, Any]]:
        """Every PullSmsSendStatusByPhoneNumber call, with the code it was answered."""
        result: list[dict[str, Any]] = httpx.get(f"{self.base_url}/_fake/queries").json()
        return result

    def script_queries(self, codes: list[str]) -> None:
        """The next pulls answer with these ("HTTP_503", "Error:RequestLimitExceeded", "Ok")."""
        httpx.post(f"{self.base_url}/_fake/query_script", json={"codes": codes}).raise_for_status()

    def query_lag(self, seconds: float) -> None:
        httpx.post(f"{self.base_url}/_fake/query_lag", json={"seconds": seconds}).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Fake Tencent Cloud SMS server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--secret-id", default=None)
    parser.add_argument("--secret-key", default=None)
    args = parser.parse_args(argv)
    credentials = {args.secret_id: args.secret_key} if args.secret_id and args.secret_key else None
    uvicorn.run(create_app(credentials), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
