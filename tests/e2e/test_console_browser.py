"""The operator console in a real browser (Playwright + Debian's chromium) against the four
services and the console, all as processes on real Kafka and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from console.views import percent
from tests.fakes.runner import free_port
from tests.helpers import eventually
from tests.processes import ROOT, ServiceProcess, run_command, service_env

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def chromium_is_installed() -> None:
    """Never a skip: without Debian's Chromium this test fails, naming what to install."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: `make browser` installs Debian's chromium")


SERVICES = ("intake", "routing", "notification", "evaluation")
PASSWORD = "minyi-dev-password"
VOTER_PHONE = "13912345678"
CHINA = ZoneInfo("Asia/Shanghai")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class ConsoleProcess:
    def __init__(self, urls: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / "console.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MINYI_")}
        self.env.update({f"MINYI_CONSOLE__SERVICES__{k.upper()}": v for k, v in urls.items()})
        self.env.update(
            {
                "MINYI_CONSOLE__HTTP__PORT": str(self.port),
                "MINYI_CONSOLE__SESSION__SECRET": "console-test-secret-0123456789abcdef",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "console", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"console not up:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@dataclass
class Stack:
    services: dict[str, ServiceProcess]
    console: ConsoleProcess

    def url(self, name: str) -> str:
        return self.services[name].url


@pytest.fixture
def stack(infra, database_url, topic_prefix, tmp_path) -> Iterator[Stack]:
    fast = {
        "MINYI_ROUTING__ACCOUNTS__ARGON2_TIME_COST": "1",
        "MINYI_ROUTING__ACCOUNTS__ARGON2_MEMORY_KIB": "8192",
    }
    processes: dict[str, ServiceProcess] = {}
    console: ConsoleProcess | None = None
    try:
        for name in SERVICES:
            extra = {f"MINYI_{name.upper()}__KAFKA__LAG_INTERVAL_S": "1"}
            if name == "routing":
                extra.update(fast)
            env = service_env(
                name, database_url=database_url, topic_prefix=topic_prefix, extra=extra
            )
            run_command(name, "migrate", env)
            run_command(name, "seed", env)
            processes[name] = ServiceProcess(name, env, tmp_path)
        for process in processes.values():
            process.start(wait_ready=False)
        for process in processes.values():
            process.wait_ready()
        console = ConsoleProcess({n: p.url for n, p in processes.items()}, tmp_path)
        console.start()
        yield Stack(processes, console)
    finally:
        if console is not None:
            console.stop()
        for process in processes.values():
            if process.proc is not None and process.proc.poll() is None:
                process.proc.send_signal(signal.SIGCONT)
            process.stop()


async def token(http: httpx.AsyncClient, stack: Stack, client_id: str) -> str:
    r = await http.post(
        f"{stack.url('routing')}/api/v1/auth/token",
        json={"client_id": client_id, "client_secret": PASSWORD},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def test_console_in_a_browser(stack: Stack, tmp_path: Path) -> None:
    from playwright.async_api import Page, async_playwright, expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nconsole screenshots: {shots}")
    console = stack.console.url

    async with httpx.AsyncClient(timeout=10) as http:
        operator = await token(http, stack, "operator")
        auth = {"authorization": f"Bearer {operator}"}
        posted = await http.post(
            f"{stack.url('intake')}/api/v1/opinions",
            json={
                "channel": "online",
                "station_id": "zeguo-1",
                "category_id": "traffic",
                "content": "泽国镇文化路口红绿灯时间太短，老人过马路来不及",
                "voter_phone": VOTER_PHONE,
            },
        )
        assert posted.status_code == 201, posted.text
        receipt = posted.json()

        async def routed() -> dict[str, Any] | None:
            r = await http.get(
                f"{stack.url('routing')}/api/v1/cases",
                params={"opinion_id": receipt["opinion_id"]},
                headers=auth,
            )
            return r.json() if r.status_code == 200 else None

        case = await eventually(routed, what="routing's case")
        assert case["department_id"] == "transport"

        async def told() -> bool:
            r = await http.get(f"{stack.url('evaluation')}/api/v1/cases/{case['id']}", headers=auth)
            d = await http.get(
                f"{stack.url('notification')}/api/v1/cases/{case['id']}/deliveries", headers=auth
            )
            return (
                r.status_code == 200
                and bool(r.json()["first_notified_at"])
                and any(x["status"] == "sent" for x in d.json())
            )

        await eventually(told, what="the notification and evaluation's read model")
        month = datetime.now(CHINA).strftime("%Y-%m")
        kpis = (
            await http.get(
                f"{stack.url('evaluation')}/api/v1/kpis",
                params={"dimension": "city", "month": month},
                headers=auth,
            )
        ).json()
        queue = (
            await http.get(
                f"{stack.url('routing')}/api/v1/departments/transport/queue",
                params={"limit": 500},
                headers=auth,
            )
        ).json()
        today = datetime.now(CHINA).date().isoformat()
        stats = await http.get(
            f"{stack.url('intake')}/api/v1/stats/opinions",
            params={"from": today, "to": today},
            headers=auth,
        )

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        # Anything the pages' Content-Security-Policy blocks shows up in the browser console.
        blocked: list[str] = []

        def watch(page: Page) -> Page:
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            return page

        try:

            async def sign_in(page: Page, user: str) -> None:
                await page.goto(f"{console}/login")
                await page.fill("#username", user)
                await page.fill("#secret", PASSWORD)
                await page.click("#login-submit")
                await page.wait_for_load_state()

            # ---- the operator: overview, case timeline, pipeline --------------------------
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = watch(await context.new_page())
            await page.goto(f"{console}/overview")
            assert page.url.endswith("/login")  # not signed in yet
            await page.fill("#username", "operator")
            await page.fill("#secret", "wrong-password")
            await page.click("#login-submit")
            await expect(page.locator("#login-error")).to_contain_text("不正确")
            await sign_in(page, "operator")
            assert page.url.endswith("/overview"), page.url
            (cookie,) = [c for c in await context.cookies() if c["name"] == "minyi_console"]
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"

            # KPIs as evaluation gives them
            assert len(kpis) == 1, kpis
            for key in (
                "response_rate",
                "completion_rate",
                "on_time_completion_rate",
                "satisfaction_rate",
            ):
                shown = await page.locator(f'[data-kpi="{key}"]').inner_text()
                assert shown == percent(kpis[0][key]), (key, shown, kpis[0])
            # the transport bureau's open cases as routing's queue gives them
            row = page.locator('#department-counts tr[data-department="transport"]')
            assert await row.locator(".open").inner_text() == str(len(queue))
            assert len(queue) == 1
            # opinions by channel: intake's stats if it has the endpoint, else 暂无数据
            if stats.status_code == 200:
                assert await page.locator("#opinions-today").inner_text() == "1"
                assert await page.locator("#chart-30d svg rect.bar").count() == 30
            else:
                await expect(page.locator("#opinions-empty")).to_have_text("暂无数据")
            await page.screenshot(path=str(shots / "1-overview-operator.png"), full_page=True)

            # the case by its receipt code: the timeline across the four services
            await page.goto(f"{console}/cases")
            await page.fill("#case-query", receipt["receipt_code"].lower())
            await page.click("#case-search")
            await page.wait_for_load_state()
            assert page.url.endswith(f"/cases/{case['id']}"), page.url
            await expect(page.locator("#case-receipt")).to_have_text(receipt["receipt_code"])
            await expect(page.locator("#case-department")).to_have_text("温岭市交通运输局")
            timeline = page.locator("#timeline li")
            services = set(await timeline.evaluate_all("els => els.map(e => e.dataset.service)"))
            assert services == set(SERVICES), services
            await expect(page.locator("#facts-notified")).to_have_text("1")
            assert VOTER_PHONE not in await page.content()
            await page.screenshot(path=str(shots / "2-case-timeline.png"), full_page=True)

            # the pipeline panel follows a stopped consumer without a reload
            await page.goto(f"{console}/pipeline")
            routing_status = page.locator(
                '#pipeline tr[data-service="routing"] [data-field="status"]'
            )
            await expect(routing_status).to_have_text("正常")
            await expect(
                page.locator('#pipeline tr[data-service="routing"] [data-field="lag"]')
            ).not_to_have_text("—", timeout=15_000)
            await page.screenshot(path=str(shots / "3-pipeline-ok.png"), full_page=True)
            routing = stack.services["routing"].proc
            assert routing is not None
            routing.send_signal(signal.SIGSTOP)
            try:
                await expect(routing_status).to_have_text("无响应", timeout=15_000)
                await expect(
                    page.locator('#pipeline tr[data-service="intake"] [data-field="status"]')
                ).to_have_text("正常")
                await page.screenshot(path=str(shots / "4-pipeline-routing-stopped.png"))
            finally:
                routing.send_signal(signal.SIGCONT)
            await expect(routing_status).to_have_text("正常", timeout=20_000)
            (copied,) = [c for c in await context.cookies() if c["name"] == "minyi_console"]
            await page.click("#logout")  # a form with its CSRF token, as the page renders it
            await page.wait_for_load_state()
            assert page.url.endswith("/login?reason=signed_out"), page.url
            await expect(page.locator("#signed-out")).to_contain_text("已退出登录")
            await context.close()

            # ---- a copy of the cookie taken before sign-out is worthless after it -----------
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.add_cookies(
                [{"name": copied["name"], "value": copied["value"], "url": console}]
            )
            page = watch(await context.new_page())
            await page.goto(f"{console}/overview")
            assert page.url.endswith("/login?reason=signed_out"), page.url
            await context.close()

            # ---- the transport bureau: its queue and its case --------------------------------
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = watch(await context.new_page())
            await sign_in(page, "dept-transport")
            assert page.url.endswith("/departments/transport"), page.url
            await expect(page.locator(f'#queue tr[data-case="{case["id"]}"]')).to_have_count(1)
            await page.screenshot(path=str(shots / "5-department-queue.png"), full_page=True)
            response = await page.goto(f"{console}/overview")
            assert response is not None
            assert response.status == 403
            response = await page.goto(f"{console}/cases/{case['id']}")
            assert response is not None
            assert response.status == 200
            response = await page.goto(f"{console}/departments/housing")
            assert response is not None
            assert response.status == 404
            await context.close()

            # ---- another department may not open it -------------------------------------------
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = watch(await context.new_page())
            await sign_in(page, "dept-housing")
            response = await page.goto(f"{console}/cases/{case['id']}")
            assert response is not None
            assert response.status in (403, 404)
            await expect(page.locator("#error-code")).to_have_text(str(response.status))
            assert receipt["receipt_code"] not in await page.content()
            await page.screenshot(path=str(shots / "6-other-department-404.png"))
            await page.goto(f"{console}/cases?q={receipt['receipt_code']}")
            await expect(page.locator("#case-message")).to_contain_text("没有找到")
            await context.close()

            # ---- the committee and an admin see the whole picture; station staff their own --
            for user in ("committee", "admin"):
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = watch(await context.new_page())
                await sign_in(page, user)
                response = await page.goto(f"{console}/overview")
                assert response is not None
                assert response.status == 200, user
                response = await page.goto(f"{console}/cases/{case['id']}")
                assert response is not None
                assert response.status == 200, user
                await page.screenshot(path=str(shots / f"7-overview-{user}.png"), full_page=True)
                await context.close()
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = watch(await context.new_page())
            await sign_in(page, "station-zeguo-1")
            for path, expected in (
                ("/stations/zeguo-1", 200),
                ("/stations/taiping-1", 404),
                ("/overview", 403),
            ):
                response = await page.goto(f"{console}{path}")
                assert response is not None
                assert response.status == expected, (path, response.status)
            await page.goto(f"{console}/stations/zeguo-1")
            await page.screenshot(path=str(shots / "8-station-zeguo-1.png"), full_page=True)
            await context.close()
            assert blocked == [], blocked
        finally:
            await browser.close()
