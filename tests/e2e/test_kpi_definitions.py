"""Issue 14 through the public and staff HTTP APIs only, all four services as processes:
a return is charged to the department that made it (KPIs and the XLSX report agree), a
re-routed case runs on its latest assignment's clock in evaluation as in routing, and a
grouping into a common-problem suggestion never moves a voter's receipt backwards."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from openpyxl import load_workbook

from services.routing.settings import DEV_PASSWORD
from shared.reference import wenling
from tests.e2e import test_thin_path
from tests.e2e.test_thin_path import Stack
from tests.helpers import eventually

pytestmark = pytest.mark.e2e
stack = test_thin_path.stack  # the four services as processes (the thin path's fixture)

PASSWORD = DEV_PASSWORD
CHINA = ZoneInfo("Asia/Shanghai")
# The stages a voter may see, in the only order they may appear (hand-written, not the code's).
STAGE_ORDER = [
    "submitted",
    "assigned",
    "acknowledged",
    "extension_requested",
    "extension_granted",
    "completed",
    "rated",
    "closed",
]
COUNTS = (
    "assigned",
    "acknowledged",
    "acknowledged_on_time",
    "completed",
    "completed_on_time",
    "returned",
    "overdue",
)


class Api:
    """The staff and public HTTP APIs of the running stack."""

    def __init__(self, http: httpx.AsyncClient, stack: Stack) -> None:
        self.http, self.stack = http, stack
        self.tokens: dict[str, dict[str, str]] = {}

    async def as_(self, client_id: str) -> dict[str, str]:
        if client_id not in self.tokens:
            r = await self.http.post(
                f"{self.stack.url('routing')}/api/v1/auth/token",
                json={"client_id": client_id, "client_secret": PASSWORD},
            )
            assert r.status_code == 200, r.text
            self.tokens[client_id] = {"authorization": f"Bearer {r.json()['access_token']}"}
        return self.tokens[client_id]

    async def call(
        self, method: str, service: str, path: str, who: str | None, **kw: Any
    ) -> httpx.Response:
        headers = await self.as_(who) if who else {}
        return await self.http.request(
            method, f"{self.stack.url(service)}{path}", headers=headers, **kw
        )

    async def ok(self, method: str, service: str, path: str, who: str | None, **kw: Any) -> Any:
        r = await self.call(method, service, path, who, **kw)
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    async def submit(self, station_id: str, category_id: str, content: str) -> dict[str, Any]:
        body = {
            "channel": "online",
            "station_id": station_id,
            "category_id": category_id,
            "content": content,
        }
        return dict(await self.ok("POST", "intake", "/api/v1/opinions", None, json=body))

    async def case_of(self, opinion_id: str) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            r = await self.call(
                "GET", "routing", "/api/v1/cases", "operator", params={"opinion_id": opinion_id}
            )
            return dict(r.json()) if r.status_code == 200 else None

        return await eventually(found, what=f"routing's case of opinion {opinion_id}")

    async def act(self, case_id: str, action: str, who: str, body: dict[str, Any]) -> Any:
        return await self.ok("POST", "routing", f"/api/v1/cases/{case_id}/{action}", who, json=body)

    async def acknowledge(self, case_id: str, dept: str) -> Any:
        body = {
            "responsible_person": "王科长",
            "contact": "0576-86000000",
            "planned_completion_date": (date.today() + timedelta(days=5)).isoformat(),
        }
        return await self.act(case_id, "acknowledge", f"dept-{dept}", body)

    async def complete(self, case_id: str, dept: str) -> Any:
        body = {
            "handling_situation": "已现场核查并处理",
            "handling_result": "问题已解决",
            "responsible_person": "王科长",
            "contact": "0576-86000000",
            "completion_date": date.today().isoformat(),
        }
        return await self.act(case_id, "complete", f"dept-{dept}", body)

    async def receipt(self, code: str) -> dict[str, Any]:
        return dict(await self.ok("GET", "intake", f"/api/v1/receipts/{code}", None))

    async def facts(self, case_id: str, ready: Any) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            r = await self.call("GET", "evaluation", f"/api/v1/cases/{case_id}", "operator")
            body = r.json() if r.status_code == 200 else None
            return body if body and ready(body) else None

        return await eventually(found, what=f"evaluation's read model of {case_id}")

    async def department_totals(self, dept: str) -> dict[str, int]:
        """A department's counters summed over every month (so a month's edge can't matter)."""
        rows = await self.ok(
            "GET",
            "evaluation",
            "/api/v1/kpis",
            "committee",
            params={"dimension": "department", "key": dept},
        )
        return {m: sum(int(r[m]) for r in rows) for m in COUNTS}


def china_month(at: str) -> str:
    return datetime.fromisoformat(at).astimezone(CHINA).strftime("%Y-%m")


def stages(receipt: dict[str, Any]) -> list[str]:
    return [s["stage"] for s in receipt["history"]]


def assert_forward_only(receipt: dict[str, Any]) -> None:
    seen = stages(receipt)
    assert all(s in STAGE_ORDER for s in seen), seen
    ranks = [STAGE_ORDER.index(s) for s in seen]
    assert ranks == sorted(set(ranks)), f"the receipt moved backwards: {seen}"
    assert receipt["stage"] == seen[-1]


async def test_returns_reroutes_and_groupings_follow_the_kpi_definitions(stack: Stack):
    async with httpx.AsyncClient(timeout=20) as http:
        api = Api(http, stack)
        await return_and_reroute(api)
        await grouping_keeps_receipts_forward(api)


async def return_and_reroute(api: Api) -> None:
    """agri accepts, then disputes jurisdiction; the operator re-routes to enforcement, which
    accepts, gets an extension and completes."""
    receipt = await api.submit("taiping-1", "agriculture", "太平街道农田灌溉渠道堵塞，影响春耕")
    case = await api.case_of(receipt["opinion_id"])
    case_id = case["id"]
    assert case["department_id"] == "agri"
    await api.acknowledge(case_id, "agri")
    await api.act(case_id, "return", "dept-agri", {"reason": "渠道属城管执法局管辖"})
    await api.act(
        case_id, "route", "operator", {"department_id": "enforcement", "reason": "管辖调整"}
    )
    await api.acknowledge(case_id, "enforcement")
    routed = await api.ok("GET", "routing", f"/api/v1/cases/{case_id}", "operator")
    later = datetime.fromisoformat(routed["complete_due_at"]) + timedelta(days=10)
    await api.act(
        case_id,
        "extension-request",
        "dept-enforcement",
        {"reason": "需协调多个村", "requested_complete_due_at": later.isoformat()},
    )
    await api.act(case_id, "extension-decision", "committee", {"granted": True})
    await api.complete(case_id, "enforcement")
    routed = await api.ok("GET", "routing", f"/api/v1/cases/{case_id}", "operator")
    assert routed["state"] == "completed"
    assert datetime.fromisoformat(routed["complete_due_at"]) == later

    # Routing's own count of returns.
    returns = await api.ok("GET", "routing", "/api/v1/returns", "operator")
    assert returns == {"agri": 1}

    # Evaluation runs the case on routing's clock: the re-route's deadlines, then the
    # extension's; on time is judged against them.
    facts = await api.facts(case_id, lambda f: f["last_completed_at"] is not None)
    for due in ("acknowledge_due_at", "complete_due_at"):
        assert datetime.fromisoformat(facts[due]) == datetime.fromisoformat(routed[due]), due
    acknowledged_at = datetime.fromisoformat(routed["acknowledged_at"])
    completed_at = datetime.fromisoformat(routed["completed_at"])
    assert facts["acknowledged_on_time"] == (
        acknowledged_at <= datetime.fromisoformat(routed["acknowledge_due_at"])
    )
    assert facts["last_completed_on_time"] == (completed_at <= later)
    assert datetime.fromisoformat(facts["acknowledged_at"]) == acknowledged_at  # not agri's

    # The KPIs: agri returned it, enforcement received it and did the work.
    expected = {
        "agri": dict.fromkeys(COUNTS, 0)
        | {"assigned": 1, "acknowledged": 1, "acknowledged_on_time": 1, "returned": 1},
        "enforcement": dict.fromkeys(COUNTS, 0)
        | {
            "assigned": 1,
            "acknowledged": 1,
            "acknowledged_on_time": 1,
            "completed": 1,
            "completed_on_time": 1,
        },
    }

    async def charged() -> dict[str, dict[str, int]] | None:
        got = {d: await api.department_totals(d) for d in expected}
        return got if got == expected else None

    try:
        await eventually(charged, what="the department KPIs")
    except AssertionError:
        got = {d: await api.department_totals(d) for d in expected}
        raise AssertionError(f"department KPIs {got} ≠ {expected}") from None

    # The monthly report (XLSX) agrees: 退回 in the month of the return.
    returned_at = next(t["at"] for t in routed["transitions"] if t["to_state"] == "returned")
    month = china_month(returned_at)
    r = await api.call(
        "GET",
        "evaluation",
        "/api/v1/reports/monthly",
        "committee",
        params={"month": month, "format": "xlsx"},
    )
    assert r.status_code == 200, r.text
    sheet = load_workbook(io.BytesIO(r.content))["KPIs"]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    header = rows[3]
    start = next(i for i, row in enumerate(rows) if row[0] == "各职能部门")
    names = {d.id: d.name for d in wenling().departments}
    by_name = {row[0]: dict(zip(header, row, strict=False)) for row in rows[start + 1 :]}
    assert by_name[names["agri"]]["退回"] == 1
    if names["enforcement"] in by_name:  # assigned in the same month (unless at its edge)
        assert by_name[names["enforcement"]]["退回"] == 0


async def grouping_keeps_receipts_forward(api: Api) -> None:
    """The first of three similar opinions is completed before the other two arrive; their
    grouping into a suggestion is a note on each receipt, and the first stays completed."""
    content = "泽国镇文化路口红绿灯时间太短，老人过马路来不及"
    first = await api.submit("zeguo-1", "traffic", content)
    first_case = await api.case_of(first["opinion_id"])
    await api.acknowledge(first_case["id"], "transport")
    await api.complete(first_case["id"], "transport")

    async def completed_receipt() -> dict[str, Any] | None:
        body = await api.receipt(first["receipt_code"])
        return body if body["stage"] == "completed" else None

    await eventually(completed_receipt, what="the first receipt at completed")
    others = [await api.submit("zeguo-1", "traffic", f"{content}（{n}）") for n in (2, 3)]
    members = [first, *others]
    cases = [first_case, *[await api.case_of(o["opinion_id"]) for o in others]]

    async def suggestion() -> dict[str, Any] | None:
        items = await api.ok("GET", "routing", "/api/v1/worklist", "operator")
        common = [i for i in items if i["classification"] == "common"]
        return common[0] if common else None

    found = await eventually(suggestion, what="the common-problem suggestion")
    # The suggestion is handled as a case of its own (assigned, accepted): its stages belong
    # to no member's receipt. A member's own case moves on meanwhile.
    await api.act(
        found["id"], "route", "operator", {"department_id": "transport", "reason": "统一研究"}
    )
    await api.acknowledge(found["id"], "transport")
    await api.acknowledge(cases[1]["id"], "transport")

    async def grouped() -> list[dict[str, Any]] | None:
        receipts = [await api.receipt(m["receipt_code"]) for m in members]
        if all(r["notes"] for r in receipts) and receipts[1]["stage"] == "acknowledged":
            return receipts
        return None

    receipts = await eventually(grouped, what="the grouping note on every member's receipt")
    await api.facts(found["id"], lambda f: f["acknowledged_at"] is not None)
    receipts = [await api.receipt(m["receipt_code"]) for m in members]
    for receipt in receipts:
        assert_forward_only(receipt)
        [note] = receipt["notes"]
        assert note["kind"] == "grouped"
        assert "汇总" in note["text"]
    assert stages(receipts[0]) == ["submitted", "assigned", "acknowledged", "completed"]
    assert receipts[0]["stage"] == "completed"
    assert stages(receipts[1]) == ["submitted", "assigned", "acknowledged"]
    assert stages(receipts[2]) == ["submitted", "assigned"]

    # No two cases share a receipt code; the suggestion's is its own.
    suggestion_case = await api.ok("GET", "routing", f"/api/v1/cases/{found['id']}", "operator")
    codes = [c["receipt_code"] for c in cases] + [suggestion_case["receipt_code"]]
    assert len(set(codes)) == len(codes)
    assert suggestion_case["receipt_code"] not in {m["receipt_code"] for m in members}
    queue = await api.ok(
        "GET",
        "routing",
        "/api/v1/departments/transport/queue",
        "operator",
        params={"state": ["assigned", "acknowledged", "completed"]},
    )
    queue_codes = [item["receipt_code"] for item in queue]
    assert len(set(queue_codes)) == len(queue_codes) == 4
    # A suggestion's code is not a voter's receipt.
    r = await api.call("GET", "intake", f"/api/v1/receipts/{suggestion_case['receipt_code']}", None)
    assert r.status_code == 404
