"""A fake Aliyun SMS (dysmsapi 2017-05-25) endpoint that the official SDK can talk to.

What the SDK (alibabacloud-dysmsapi20170525 4.x on alibabacloud-tea-openapi 0.4, default V3
signature) sends for ``send_sms_async``::

    POST / ?OutId=..&PhoneNumbers=13800138000&SignName=..&TemplateCode=SMS_1&TemplateParam={..}
    host: 127.0.0.1:PORT
    x-acs-action: SendSms
    x-acs-version: 2017-05-25
    x-acs-date: 2025-01-01T00:00:00Z
    x-acs-signature-nonce: <32 hex>
    x-acs-content-sha256: <sha256 hex of the (empty) body>
    accept: application/json
    user-agent: AlibabaCloud (...) TeaDSL/2
    Authorization: ACS3-HMAC-SHA256 Credential=<AK id>,SignedHeaders=accept;host;...,Signature=<hex>

``QuerySendDetails`` (same signature; ``x-acs-action: QuerySendDetails``, query
``PhoneNumber``, ``SendDate`` yyyyMMdd, ``PageSize`` ≤ 50, ``CurrentPage``, optional ``BizId``)
answers from the accepted messages, in Aliyun's shape: ``{"Code": "OK", "Message": "OK",
"RequestId", "TotalCount", "SmsSendDetailDTOs": {"SmsSendDetailDTO": [{"PhoneNum",
"SendStatus": 3, "ErrCode": "DELIVERED", "TemplateCode", "Content", "SendDate", "ReceiveDate",
"OutId"}]}}`` (dates in Beijing time, "yyyy-MM-dd HH:mm:ss"; no BizId, as in Aliyun's).

Answers the way Aliyun does: HTTP 200 ``{"Code":"OK","Message":"OK","BizId":..,"RequestId":..}``
on success, HTTP 200 with ``Code`` set to the business error (``isv.*``) otherwise, and
HTTP 4xx ``{"RequestId","HostId","Code","Message","Recommend"}`` for gateway errors
(``IncompleteSignature``, ``SignatureDoesNotMatch``, ``MissingPhoneNumbers``, ...).

Control endpoints:
    GET  /_fake/health     -> {"ok": true}
    GET  /_fake/requests   -> accepted (delivered) SendSms calls
    GET  /_fake/attempts   -> every SendSms call that passed auth/parameter checks, with its code
    POST /_fake/reset      -> clears recordings and the script
    POST /_fake/script     {"codes": ["isv.BUSINESS_LIMIT_CONTROL", ...]}
                           -> the next N SendSms calls answer with these codes instead of OK.
                              "OK" in the list means "deliver normally"; "HTTP_500"/"HTTP_503"
                              answer with that HTTP status; "Throttling*" codes answer HTTP 400.
    GET  /_fake/queries    -> every QuerySendDetails call, with its code
    POST /_fake/query_script {"codes": [...]} -> the same, for the next QuerySendDetails calls
    POST /_fake/query_lag  {"seconds": s} -> a message shows in queries s seconds after its send
    POST /_fake/send_delay {"seconds": s} -> accepted sends are answered s seconds late
Every recorded call (attempts, requests, queries) carries ``seq``, the fake's call order.

Run: ``python -m tests.fakes.aliyun_sms --port 18080 [--access-key-id ID --access-key-secret S]``.
When a key pair is given the V3 signature is verified, otherwise only its presence and shape.
From pytest use :class:`FakeAliyunServer`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import re
import threading
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.runner import FakeProcess, add_control_routes

ACTION = "SendSms"
QUERY_ACTION = "QuerySendDetails"
BEIJING = ZoneInfo("Asia/Shanghai")
VERSION = "2017-05-25"
HOST_ID = "dysmsapi.aliyuncs.com"
SIGN_ALGORITHM = "ACS3-HMAC-SHA256"
REQUIRED_SIGNED_HEADERS = (
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)
_AUTH_RE = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<ak>[^,]+),"
    r"SignedHeaders=(?P<sh>[^,]+),Signature=(?P<sig>[0-9a-f]{64})$"
)
_INCOMPLETE = "The request signature does not conform to Aliyun standards."
_MAINLAND_RE = re.compile(r"(?:\+86|0086|86)?1[3-9]\d{9}")
_INTERNATIONAL_RE = re.compile(r"\+?[1-9]\d{7,14}")
_TEMPLATE_CODE_RE = re.compile(r"SMS_\d+")

BUSINESS_MESSAGES = {
    "OK": "OK",
    "isv.BUSINESS_LIMIT_CONTROL": "触发分钟级流控Permits:1",
    "isv.DAY_LIMIT_CONTROL": "触发日发送限额",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.MOBILE_COUNT_OVER_LIMIT": "手机号码数量超过限制",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板缺少变量",
    "isv.SMS_TEMPLATE_ILLEGAL": "该账号下找不到对应模板",
    "isv.SMS_SIGNATURE_ILLEGAL": "该账号下找不到对应签名",
    "isv.INVALID_JSON_PARAM": "JSON参数不合法,只接受字符串值",
    "isv.OUT_OF_SERVICE": "业务停机",
    "isp.SYSTEM_ERROR": "isp.SYSTEM_ERROR",
}


class FakeState:
    def __init__(self, credentials: dict[str, str] | None) -> None:
        self.credentials = credentials
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.script: deque[str] = deque()
        self.nonces: set[str] = set()
        self.queries: list[dict[str, Any]] = []
        self.query_script: deque[str] = deque()
        self.query_lag_s = 0.0
        self.send_delay_s = 0.0
        self.seq = 0

    def next_seq(self) -> int:
        """Call order across sends and queries (under the lock)."""
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


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _gateway_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "RequestId": _request_id(),
            "HostId": HOST_ID,
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi",
        },
    )


def _business(code: str, message: str | None = None, **extra: str) -> JSONResponse:
    body = {"Code": code, "Message": message or BUSINESS_MESSAGES.get(code, code)}
    body.update(extra)
    body["RequestId"] = _request_id()
    return JSONResponse(status_code=200, content=body)


def _canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))


def _check_signature(
    state: FakeState, request: Request, body: bytes, query: dict[str, str]
) -> JSONResponse | None:
    auth = request.headers.get("authorization", "")
    if not auth:
        return _gateway_error(400, "IncompleteSignature", _INCOMPLETE)
    match = _AUTH_RE.match(auth)
    if match is None:
        return _gateway_error(400, "IncompleteSignature", _INCOMPLETE)
    signed = match["sh"].split(";")
    missing = [h for h in REQUIRED_SIGNED_HEADERS if h not in signed or h not in request.headers]
    if missing:
        return _gateway_error(
            400,
            "IncompleteSignature",
            f"Header(s) {', '.join(missing)} must be present and signed.",
        )
    payload_hash = request.headers["x-acs-content-sha256"]
    if payload_hash != hashlib.sha256(body).hexdigest():
        return _gateway_error(
            400, "SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body."
        )
    nonce = request.headers["x-acs-signature-nonce"]
    with state.lock:
        if nonce in state.nonces:
            return _gateway_error(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )
        state.nonces.add(nonce)
    if state.credentials is None:
        return None
    secret = state.credentials.get(match["ak"])
    if secret is None:
        return _gateway_error(
            404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
        )
    headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in request.headers.getlist(name)))}\n"
        for name in sorted(signed)
    )
    canonical_request = "\n".join(
        [
            request.method,
            request.url.path or "/",
            _canonical_query(query),
            headers,
            ";".join(sorted(signed)),
            payload_hash,
        ]
    )
    string_to_sign = (
        f"{SIGN_ALGORITHM}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    )
    expected = hmac.new(
        secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        return _gateway_error(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        )
    return None


def _phone_ok(phone: str) -> bool:
    return bool(_MAINLAND_RE.fullmatch(phone) or _INTERNATIONAL_RE.fullmatch(phone))


class QueryableState(Protocol):
    lock: threading.Lock
    queries: list[dict[str, Any]]
    query_script: deque[str]
    query_lag_s: float


def add_query_controls(app: FastAPI, state: QueryableState) -> None:
    """`/_fake/queries`, `/_fake/query_script`, `/_fake/query_lag`: the look-up side of a fake
    SMS provider (Aliyun QuerySendDetails, Tencent PullSmsSendStatusByPhoneNumber)."""

    @app.get("/_fake/queries")
    async def queries() -> list[dict[str, Any]]:
        with state.lock:
            return list(state.queries)

    @app.post("/_fake/query_script")
    async def query_script(request: Request) -> JSONResponse:
        data = await request.json()
        codes = data.get("codes") if isinstance(data, dict) else None
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            return JSONResponse(status_code=422, content={"error": "expected {'codes': [str]}"})
        with state.lock:
            state.query_script.extend(codes)
            pending = len(state.query_script)
        return JSONResponse(content={"ok": True, "pending": pending})

    @app.post("/_fake/query_lag")
    async def query_lag(request: Request) -> JSONResponse:
        data = await request.json()
        seconds = data.get("seconds") if isinstance(data, dict) else None
        if not isinstance(seconds, int | float) or seconds < 0:
            return JSONResponse(status_code=422, content={"error": "expected {'seconds': n}"})
        with state.lock:
            state.query_lag_s = float(seconds)
        return JSONResponse(content={"ok": True})


def _beijing(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(BEIJING)


def _query_send_details(state: FakeState, params: dict[str, str]) -> JSONResponse:
    """QuerySendDetails: what was accepted for one number on one (Beijing) day, paged."""
    for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
        if not params.get(name):
            return _gateway_error(400, f"Missing{name}", f"{name} is mandatory for this action.")
    day, size, page = params["SendDate"], params["PageSize"], params["CurrentPage"]
    if not re.fullmatch(r"\d{8}", day) or not size.isdigit() or not page.isdigit():
        return _gateway_error(400, "InvalidParameter", "The specified parameter is not valid.")
    if not 1 <= int(size) <= 50 or int(page) < 1:
        return _gateway_error(400, "InvalidParameter", "PageSize must be 1-50.")
    now = datetime.now(UTC)
    with state.lock:
        scripted = state.query_script.popleft() if state.query_script else None
        state.queries.append(
            {
                "phone_number": params["PhoneNumber"],
                "send_date": day,
                "page": int(page),
                "biz_id": params.get("BizId"),
                "code": scripted or "OK",
                "received_at": now.isoformat(),
                "seq": state.next_seq(),
            }
        )
        visible_before = now - timedelta(seconds=state.query_lag_s)
        sent = [
            r
            for r in state.requests
            if params["PhoneNumber"] in r["phone_numbers"].split(",")
            and _beijing(r["received_at"]).strftime("%Y%m%d") == day
            and datetime.fromisoformat(r["received_at"]) <= visible_before
            and params.get("BizId") in (None, "", r["biz_id"])
        ]
    if scripted is not None and scripted != "OK":
        if scripted.startswith("HTTP_"):
            status = int(scripted.removeprefix("HTTP_"))
            code = "ServiceUnavailable" if status == 503 else "InternalError"
            return _gateway_error(status, code, "The request processing has failed.")
        if scripted.startswith("Throttling"):
            return _gateway_error(400, scripted, "Request was denied due to flow control.")
        return _business(scripted)
    first = (int(page) - 1) * int(size)
    rows = [
        {
            "PhoneNum": params["PhoneNumber"],
            "SendStatus": 3,
            "ErrCode": "DELIVERED",
            "TemplateCode": r["template_code"],
            "Content": f"【{r['sign_name']}】"
            + "，".join((r.get("template_param") or {}).values()),
            "SendDate": _beijing(r["received_at"]).strftime("%Y-%m-%d %H:%M:%S"),
            "ReceiveDate": (_beijing(r["received_at"]) + timedelta(seconds=2)).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "OutId": r.get("out_id") or "",
        }
        for r in sent[first : first + int(size)]
    ]
    body = {
        "Code": "OK",
        "Message": "OK",
        "RequestId": _request_id(),
        "TotalCount": len(sent),
        "SmsSendDetailDTOs": {"SmsSendDetailDTO": rows},
    }
    return JSONResponse(status_code=200, content=body)


def create_app(credentials: dict[str, str] | None = None) -> FastAPI:
    """Build the fake. ``credentials`` maps AccessKeyId -> secret; None = don't verify."""
    state = FakeState(credentials)
    app = FastAPI(title="fake-aliyun-sms", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.fake = state

    add_control_routes(app, state)
    add_query_controls(app, state)

    @app.post("/_fake/send_delay")
    async def send_delay(request: Request) -> JSONResponse:
        data = await request.json()
        seconds = data.get("seconds") if isinstance(data, dict) else None
        if not isinstance(seconds, int | float) or seconds < 0:
            return JSONResponse(status_code=422, content={"error": "expected {'seconds': s}"})
        with state.lock:
            state.send_delay_s = float(seconds)
        return JSONResponse(content={"ok": True})

    @app.api_route("/", methods=["GET", "POST"])
    async def api(request: Request) -> JSONResponse:
        body = await request.body()
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        params = dict(query)
        content_type = request.headers.get("content-type", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))

        denied = _check_signature(state, request, body, query)
        if denied is not None:
            return denied

        action = request.headers.get("x-acs-action") or params.get("Action")
        version = request.headers.get("x-acs-version") or params.get("Version")
        if not action:
            return _gateway_error(400, "MissingAction", "Action is mandatory for this action.")
        if action not in (ACTION, QUERY_ACTION):
            return _gateway_error(
                404, "InvalidAction.NotFound", f"Specified api is not found: {action}"
            )
        if version != VERSION:
            return _gateway_error(400, "InvalidVersion", f"Specified version is invalid: {version}")
        if action == QUERY_ACTION:
            return _query_send_details(state, params)
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not params.get(name):
                return _gateway_error(
                    400, f"Missing{name}", f"{name} is mandatory for this action."
                )

        phones = params["PhoneNumbers"].split(",")
        raw_template_param = params.get("TemplateParam")
        template_param: dict[str, Any] | None = None
        now = datetime.now(UTC).isoformat()
        attempt: dict[str, Any] = {
            "phone_numbers": params["PhoneNumbers"],
            "out_id": params.get("OutId"),
            "received_at": now,
        }

        with state.lock:
            scripted = state.script.popleft() if state.script else None
        if scripted is not None and scripted != "OK":
            attempt["code"] = scripted
            with state.lock:
                attempt["seq"] = state.next_seq()
                state.attempts.append(attempt)
            if scripted.startswith("HTTP_"):
                status = int(scripted.removeprefix("HTTP_"))
                code = "ServiceUnavailable" if status == 503 else "InternalError"
                return _gateway_error(status, code, "The request processing has failed.")
            if scripted.startswith("Throttling"):
                return _gateway_error(400, scripted, "Request was denied due to flow control.")
            return _business(scripted)

        code = "OK"
        if len(phones) > 1000:
            code = "isv.MOBILE_COUNT_OVER_LIMIT"
        elif not all(_phone_ok(p) for p in phones):
            code = "isv.MOBILE_NUMBER_ILLEGAL"
        elif not _TEMPLATE_CODE_RE.fullmatch(params["TemplateCode"]):
            code = "isv.SMS_TEMPLATE_ILLEGAL"
        elif raw_template_param is not None:
            try:
                parsed = json.loads(raw_template_param)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and all(isinstance(v, str) for v in parsed.values()):
                template_param = parsed
            else:
                code = "isv.INVALID_JSON_PARAM"
        attempt["code"] = code
        if code != "OK":
            with state.lock:
                attempt["seq"] = state.next_seq()
                state.attempts.append(attempt)
            return _business(code)

        biz_id = f"{random.randint(10**17, 10**18 - 1)}^0"
        entry: dict[str, Any] = {
            "phone_numbers": params["PhoneNumbers"],
            "sign_name": params["SignName"],
            "template_code": params["TemplateCode"],
            "template_param": template_param,
            "out_id": params.get("OutId"),
            "sms_up_extend_code": params.get("SmsUpExtendCode"),
            "access_key_id": _access_key_id(request),
            "biz_id": biz_id,
            "received_at": now,
        }
        with state.lock:
            attempt["seq"] = entry["seq"] = state.next_seq()
            state.attempts.append(attempt)
            state.requests.append(entry)
            delay = state.send_delay_s
        if delay:
            # Accepted and recorded, but the answer comes late: the caller may time out
            # without knowing the message went (an uncertain outcome).
            await asyncio.sleep(delay)
        return _business("OK", "OK", BizId=biz_id)

    return app


def _access_key_id(request: Request) -> str | None:
    match = _AUTH_RE.match(request.headers.get("authorization", ""))
    return match["ak"] if match else None


# --------------------------------------------------------------------------- runner


class FakeAliyunServer(FakeProcess):
    """Runs the fake in a subprocess (``python -m tests.fakes.aliyun_sms``) on a free port;
    with a key pair it checks the SDK's signatures too."""

    module = "tests.fakes.aliyun_sms"

    def __init__(
        self,
        port: int | None = None,
        *,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        args = (
            ["--access-key-id", access_key_id, "--access-key-secret", access_key_secret]
            if access_key_id and access_key_secret
            else []
        )
        super().__init__(*args, port=port, startup_timeout=startup_timeout)
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret

    def queries(self) -> list[dict[str, Any]]:
        """Every look-up call (QuerySendDetails here), with the code it was answered."""
        result: list[dict[str, Any]] = httpx.get(f"{self.base_url}/_fake/queries").json()
        return result

    def script_queries(self, codes: list[str]) -> None:
        """The next look-ups answer with these codes ("HTTP_503", "Throttling.User", "OK")."""
        httpx.post(f"{self.base_url}/_fake/query_script", json={"codes": codes}).raise_for_status()

    def send_delay(self, seconds: float) -> None:
        """Accepted messages are answered only after this long (a lost/late response)."""
        httpx.post(
            f"{self.base_url}/_fake/send_delay", json={"seconds": seconds}
        ).raise_for_status()

    def query_lag(self, seconds: float) -> None:
        """Accepted messages show in look-ups only this long after they were sent."""
        httpx.post(f"{self.base_url}/_fake/query_lag", json={"seconds": seconds}).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Fake Aliyun SMS (dysmsapi) server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--access-key-id", default=None, help="verify signatures for this key")
    parser.add_argument("--access-key-secret", default=None)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    credentials = (
        {args.access_key_id: args.access_key_secret}
        if args.access_key_id and args.access_key_secret
        else None
    )
    uvicorn.run(create_app(credentials), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
