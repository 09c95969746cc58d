"""The console's wiring and pages (FastAPI + Jinja2, server-rendered).

(No `from __future__ import annotations`: FastAPI must resolve the `Context` dependency alias
defined inside `build_app` at run time.)
"""

import asyncio
import re
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from console import csrf, labels
from console.access import (
    WIDE_ROLES,
    Section,
    mask_text,
    may_view_department,
    may_view_station,
    sees_work_contacts,
    visible_sections,
)
from console.charts import bar_chart_svg
from console.metrics import parse_metrics
from console.session import Session, decode_session, encode_session
from console.session_checks import SessionChecks
from console.settings import ConsoleSettings
from console.upstream import CORRELATION_HEADER, Reply, SignInAgain, Upstream, segment
from console.views import (
    case_timeline,
    kpi_rates,
    opinion_stats,
    parse_datetime,
    percent,
    queue_counts,
    sorted_queue,
)
from shared.auth import AuthSettings, sign_client_address
from shared.http_limits import install_body_limit
from shared.ratelimit import TrustedProxies
from shared.reference import wenling
from shared.security_headers import PAGE_POLICY, SecurityHeaders

CHINA = ZoneInfo("Asia/Shanghai")
RECEIPT_CODE = re.compile(r"[0-9A-Z]{1,16}(?:-[0-9A-Z]{1,16})?")  # e.g. GFBP0-H68TX
HERE = Path(__file__).parent
SERVICES = ("intake", "routing", "notification", "evaluation")
# Every state a department may see its cases in (routing's DEPARTMENT_VISIBLE).
ALL_DEPARTMENT_STATES = (
    "assigned",
    "returned",
    "acknowledged",
    "extension_requested",
    "completed",
    "evaluated",
    "reopened",
    "closed",
)


SIGNED_OUT = "signed_out"


class LoginRequired(Exception):
    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "login required")
        self.reason = reason


class CrossSiteRequest(Exception):
    """A POST without this console's CSRF token, or from another site."""


class PageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Ctx:
    """One console request: who, and its correlation id (sent to every service)."""

    session: Session
    correlation_id: str

    @property
    def sections(self) -> frozenset[Section]:
        return visible_sections(self.session.role)


def has_control_characters(text: str) -> bool:
    """NUL, other C0/C1 controls, DEL: never part of an id, a code or a search."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def build_app(
    settings: ConsoleSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The console. `transport`: how it reaches the services (tests pass an ASGI one)."""
    secret = settings.session.secret.get_secret_value()
    cookie = settings.session.cookie_name
    login_cookie = f"{cookie}_login"  # the sign-in form's pre-session CSRF nonce
    checks = SessionChecks(settings.session.check_cache_s)
    auth = AuthSettings()  # the shared key, when set: signs the person's address for sign-in
    proxies = TrustedProxies(settings.http.trusted_proxies)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(
        labels=labels, percent=percent, mask=mask_text, Section=Section, tz=CHINA
    )
    templates.env.filters["cn"] = china_time
    ref = wenling()
    department_names = {d.id: d.name for d in ref.departments}
    station_names = {s.id: s.name for s in ref.stations}
    town_names = {t.id: t.name for t in ref.towns}
    templates.env.globals.update(
        department_names=department_names, station_names=station_names, town_names=town_names
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(transport=transport) as http:
            app.state.upstream = Upstream(
                settings.services.as_dict(), http, settings.upstream.timeout_s
            )
            yield

    def upstream(request: Request) -> Upstream:
        up: Upstream = request.app.state.upstream
        return up

    def correlation(request: Request) -> str:
        return str(getattr(request.state, "correlation_id", "")) or str(uuid.uuid4())

    def secure(request: Request) -> bool:
        """`Secure` cookies: over TLS always, and everywhere when the setting says so."""
        return settings.session.secure_cookie or request.url.scheme == "https"

    def put_cookie(
        request: Request,
        response: Response,
        name: str,
        value: str | None,
        *,
        path: str,
        max_age: int | None = None,
    ) -> None:
        """Every cookie of the console: HttpOnly, SameSite=Strict, `Secure` over TLS (see
        `secure`). `value` None deletes it."""
        if value is None:
            response.delete_cookie(
                name, path=path, secure=secure(request), httponly=True, samesite="strict"
            )
            return
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )

    async def no_control_characters(request: Request) -> None:
        """NUL and other control characters in the path or the query → 400, before any
        service is asked (they would end up in its URL)."""
        values = [request.url.path, *request.query_params.keys(), *request.query_params.values()]
        if any(has_control_characters(v) for v in values):
            raise PageError(400, "请求中含有控制字符（例如 NUL），无法处理。请检查输入后重试。")

    async def same_site_with_token(request: Request) -> None:
        """Every POST (any unsafe method): from this console, with its CSRF token."""
        if request.method in csrf.SAFE_METHODS:
            return
        if csrf.cross_site_reason(request.headers, request.headers.get("host")):
            raise CrossSiteRequest
        given = (await request.form()).get(csrf.FIELD)
        if request.url.path == "/login":
            nonce = request.cookies.get(login_cookie)
            expected = csrf.presession_token(secret, nonce) if nonce else None
        else:
            session = decode_session(secret, request.cookies.get(cookie))
            if session is None:
                raise LoginRequired
            expected = csrf.session_token(secret, session)
        if not csrf.tokens_match(expected, given):
            raise CrossSiteRequest

    app = FastAPI(
        title="民意 · 运行监控台",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(no_control_characters), Depends(same_site_with_token)],
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(
        SecurityHeaders, policy=PAGE_POLICY, referrer_policy="same-origin", docs_prefixes=()
    )
    install_body_limit(app, settings.http.max_body_bytes)

    async def context(request: Request) -> Ctx:
        session = decode_session(secret, request.cookies.get(cookie))
        if session is None:
            raise LoginRequired
        cid = correlation(request)
        up = upstream(request)
        limit_s = settings.session.check_timeout_s
        if not await checks.holds(session, lambda: up.session_holds(session, cid, limit_s)):
            raise LoginRequired(SIGNED_OUT)
        return Ctx(session, cid)

    Context = Annotated[Ctx, Depends(context)]

    def render(
        request: Request,
        ctx: Ctx | None,
        template: str,
        status: int = 200,
        *,
        csrf_token: str | None = None,
        **data: Any,
    ) -> HTMLResponse:
        """A page; its forms carry `csrf_token` (the session's when signed in)."""
        if csrf_token is None and ctx is not None:
            csrf_token = csrf.session_token(secret, ctx.session)
        return templates.TemplateResponse(
            request,
            template,
            {
                "session": ctx.session if ctx else None,
                "sections": ctx.sections if ctx else frozenset(),
                "correlation_id": correlation(request),
                "csrf_field": csrf.FIELD,
                "csrf_token": csrf_token or "",
                **data,
            },
            status_code=status,
        )

    @app.middleware("http")
    async def correlation_and_headers(request: Request, call_next: Any) -> Response:
        request.state.correlation_id = str(uuid.uuid4())
        response: Response = await call_next(request)
        response.headers[CORRELATION_HEADER] = request.state.correlation_id
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"error": "unauthorized", "message": "请重新登录。"}, status_code=401
            )
        location = f"/login?reason={exc.reason}" if exc.reason else "/login"
        response = RedirectResponse(location, status_code=303)
        put_cookie(request, response, cookie, None, path="/")
        return response

    @app.exception_handler(SignInAgain)
    async def sign_in_again(request: Request, exc: SignInAgain) -> Response:
        return await to_login(request, LoginRequired(SIGNED_OUT))

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"error": "bad_request" if exc.status == 400 else "error", "message": exc.message},
                status_code=exc.status,
            )
        session = decode_session(secret, request.cookies.get(cookie))
        ctx = Ctx(session, correlation(request)) if session else None
        return render(
            request, ctx, "error.html", status=exc.status, code=exc.status, message=exc.message
        )

    @app.exception_handler(CrossSiteRequest)
    async def cross_site(request: Request, exc: CrossSiteRequest) -> Response:
        return await page_error(
            request,
            PageError(
                403,
                "无法确认这个请求来自本监控台的页面（可能是其他网站发起的，或页面已过期）。"
                "请重新打开页面后再试。",
            ),
        )

    def need(ctx: Ctx, section: Section) -> None:
        if section not in ctx.sections:
            raise PageError(403, "您的账号无权查看此页面。")

    # ---- sign-in ----------------------------------------------------------------------------

    def login_form(
        request: Request, status: int = 200, *, error: str | None = None, username: str = ""
    ) -> HTMLResponse:
        """The sign-in form, its token bound to the pre-session cookie (set here if absent)."""
        nonce = request.cookies.get(login_cookie)
        fresh = not nonce
        nonce = nonce or csrf.new_nonce()
        response = render(
            request,
            None,
            "login.html",
            status,
            csrf_token=csrf.presession_token(secret, nonce),
            error=error,
            username=username,
            signed_out=request.query_params.get("reason") == SIGNED_OUT,
        )
        if fresh:
            put_cookie(request, response, login_cookie, nonce, path="/login")
        return response

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> HTMLResponse:
        return login_form(request)

    @app.post("/login", response_model=None)
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=100)] = "",
        secret_value: Annotated[str, Form(alias="secret", max_length=200)] = "",
    ) -> Response:
        username = username.strip()
        if not username or not secret_value:
            return login_form(request, 400, error="请输入账号和密码。", username=username)
        signed_address = sign_client_address(auth, proxies.client_of(request))
        result = await upstream(request).sign_in(
            username, secret_value, correlation(request), signed_address
        )
        if isinstance(result, str):
            return login_form(request, 401, error=result, username=username)
        response = RedirectResponse("/", status_code=303)
        put_cookie(request, response, login_cookie, None, path="/login")
        max_age = max(1, min(settings.session.max_age_s, int(result.expires_at - time.time())))
        put_cookie(
            request, response, cookie, encode_session(secret, result), path="/", max_age=max_age
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        """Revoke the token at routing (so a copy of the cookie is worthless), then drop the
        cookie. When routing cannot confirm, the user is told and keeps the session."""
        session = decode_session(secret, request.cookies.get(cookie))
        if session is not None:
            if not await upstream(request).sign_out(session, correlation(request)):
                raise PageError(
                    503, "交办服务（routing）暂时无法确认退出登录，请稍后再点一次“退出登录”。"
                )
            checks.forget(session)
        return await to_login(request, LoginRequired(SIGNED_OUT))

    @app.get("/")
    async def home(ctx: Context) -> Response:
        s = ctx.session
        if Section.OVERVIEW in ctx.sections:
            return RedirectResponse("/overview", status_code=303)
        if s.role == "department" and s.department_id:
            return RedirectResponse(f"/departments/{s.department_id}", status_code=303)
        if s.role == "station" and s.station_id:
            return RedirectResponse(f"/stations/{s.station_id}", status_code=303)
        raise PageError(403, "您的账号没有可查看的页面。")

    # ---- overview ---------------------------------------------------------------------------

    async def department_counts(request: Request, ctx: Ctx) -> list[dict[str, Any]]:
        up = upstream(request)
        now = datetime.now(CHINA)
        soon = timedelta(hours=settings.upstream.due_soon_hours)

        async def one(dept_id: str) -> dict[str, Any]:
            reply = await up.get(
                "routing",
                f"/api/v1/departments/{dept_id}/queue",
                session=ctx.session,
                correlation_id=ctx.correlation_id,
                params={"limit": 500},
            )
            counts = queue_counts(reply.body, now, soon) if reply.ok else None
            return {"id": dept_id, "name": department_names[dept_id], "counts": counts}

        return list(await asyncio.gather(*(one(d) for d in department_names)))

    @app.get("/overview", response_class=HTMLResponse)
    async def overview(request: Request, ctx: Context) -> HTMLResponse:
        need(ctx, Section.OVERVIEW)
        up = upstream(request)
        today = datetime.now(CHINA).date()
        first = min(today.replace(day=1), today - timedelta(days=29))
        stats_reply, kpi_reply, departments = await asyncio.gather(
            up.get(
                "intake",
                "/api/v1/stats/opinions",
                session=ctx.session,
                correlation_id=ctx.correlation_id,
                params={"from": first.isoformat(), "to": today.isoformat()},
            ),
            up.get(
                "evaluation",
                "/api/v1/kpis",
                session=ctx.session,
                correlation_id=ctx.correlation_id,
                params={"dimension": "city", "month": today.strftime("%Y-%m")},
            ),
            department_counts(request, ctx),
        )
        stats = opinion_stats(stats_reply.body, today) if stats_reply.ok else None
        rates = kpi_rates(kpi_reply.body) if kpi_reply.ok else None
        chart = (
            Markup(bar_chart_svg(stats.daily, title="近 30 天每日收到的意见（条）"))  # noqa: S704 - escaped by bar_chart_svg
            if stats
            else None
        )
        channels = sorted(set(stats.today) | set(stats.month)) if stats else []
        return render(
            request,
            ctx,
            "overview.html",
            today=today,
            stats=stats,
            channels=channels,
            rates=rates,
            kpi_month=today.strftime("%Y-%m"),
            departments=departments,
            chart=chart,
        )

    # ---- departments ------------------------------------------------------------------------

    @app.get("/departments", response_class=HTMLResponse)
    async def departments(request: Request, ctx: Context) -> Response:
        if Section.DEPARTMENTS not in ctx.sections:
            return await home(ctx)
        rows = await department_counts(request, ctx)
        return render(request, ctx, "departments.html", departments=rows)

    @app.get("/departments/{department_id}", response_class=HTMLResponse)
    async def department(department_id: str, request: Request, ctx: Context) -> HTMLResponse:
        s = ctx.session
        if department_id not in department_names or not may_view_department(
            s.role, s.department_id, department_id
        ):
            raise PageError(404, "没有找到这个部门，或您无权查看。")
        up = upstream(request)
        month = datetime.now(CHINA).strftime("%Y-%m")
        queue, kpis = await asyncio.gather(
            up.get(
                "routing",
                f"/api/v1/departments/{segment(department_id)}/queue",
                session=s,
                correlation_id=ctx.correlation_id,
                params={"limit": 500},
            ),
            up.get(
                "evaluation",
                "/api/v1/kpis",
                session=s,
                correlation_id=ctx.correlation_id,
                params={"dimension": "department", "key": department_id, "month": month},
            ),
        )
        if queue.status == 404:
            raise PageError(404, "没有找到这个部门，或您无权查看。")
        now = datetime.now(CHINA)
        items = sorted_queue(queue.body) if queue.ok and isinstance(queue.body, list) else None
        for item in items or []:
            due = item.get("next_due_at")
            when = parse_datetime(due)
            item["overdue"] = when is not None and when < now
        return render(
            request,
            ctx,
            "department.html",
            department_id=department_id,
            dept_name=department_names.get(department_id, department_id),
            items=items,
            queue_error=None if queue.ok else _why(queue),
            rates=kpi_rates(kpis.body) if kpis.ok else None,
            month=month,
        )

    # ---- stations ---------------------------------------------------------------------------

    async def activity(request: Request, ctx: Ctx) -> tuple[Reply, str, str]:
        today = datetime.now(CHINA).date()
        last = today.strftime("%Y-%m")
        year, month = today.year, today.month - 11
        if month <= 0:
            year, month = year - 1, month + 12
        first = f"{year:04d}-{month:02d}"
        reply = await upstream(request).get(
            "evaluation",
            "/api/v1/stations/activity",
            session=ctx.session,
            correlation_id=ctx.correlation_id,
            params={"from": first, "to": last},
        )
        return reply, first, last

    @app.get("/stations", response_class=HTMLResponse)
    async def stations(request: Request, ctx: Context) -> Response:
        if Section.STATIONS not in ctx.sections:
            return await home(ctx)
        reply, first, last = await activity(request, ctx)
        body = reply.body if reply.ok and isinstance(reply.body, dict) else None
        return render(
            request, ctx, "stations.html", report=body, first=first, last=last, error=_why(reply)
        )

    @app.get("/stations/{station_id}", response_class=HTMLResponse)
    async def station(station_id: str, request: Request, ctx: Context) -> HTMLResponse:
        s = ctx.session
        if not may_view_station(s.role, s.station_id, station_id) or (
            station_id not in station_names
        ):
            raise PageError(404, "没有找到这个联络站，或您无权查看。")
        reply, first, last = await activity(request, ctx)
        row = None
        months = None
        if reply.ok and isinstance(reply.body, dict):
            months = reply.body.get("months")
            row = next(
                (x for x in reply.body.get("stations", []) if x.get("station_id") == station_id),
                None,
            )
        return render(
            request,
            ctx,
            "station.html",
            station_id=station_id,
            station_name=station_names[station_id],
            row=row,
            months=months,
            first=first,
            last=last,
            error=None if reply.ok else _why(reply),
        )

    # ---- cases ------------------------------------------------------------------------------

    async def find_by_receipt(request: Request, ctx: Ctx, code: str) -> str | None:
        """routing has no lookup by receipt code: search the queues the user may see."""
        s = ctx.session
        if s.role == "department" and s.department_id:
            wanted = [s.department_id]
        elif s.role in WIDE_ROLES:
            wanted = list(department_names)
        else:
            wanted = []
        up = upstream(request)
        replies = await asyncio.gather(
            *(
                up.get(
                    "routing",
                    f"/api/v1/departments/{d}/queue",
                    session=s,
                    correlation_id=ctx.correlation_id,
                    params={"state": list(ALL_DEPARTMENT_STATES), "limit": 500},
                )
                for d in wanted
            ),
            *(
                [
                    up.get(
                        "routing",
                        "/api/v1/worklist",
                        session=s,
                        correlation_id=ctx.correlation_id,
                        params={"limit": 500},
                    )
                ]
                if s.role in WIDE_ROLES
                else []
            ),
        )
        for reply in replies:
            if reply.ok and isinstance(reply.body, list):
                for item in reply.body:
                    if str(item.get("receipt_code", "")).upper() == code:
                        return str(item["id"])
        return None

    @app.get("/cases", response_class=HTMLResponse)
    async def case_search(request: Request, ctx: Context, q: str = "") -> Response:
        need(ctx, Section.CASES)
        q = q.strip()
        if not q:
            return render(request, ctx, "case_search.html", q="", message=None)
        try:
            return RedirectResponse(f"/cases/{UUID(q)}", status_code=303)
        except ValueError:
            pass
        code = q.upper()
        if not RECEIPT_CODE.fullmatch(code):
            return render(
                request, ctx, "case_search.html", 404, q=q, message="没有找到，或您无权查看。"
            )
        case_id = await find_by_receipt(request, ctx, code)
        if case_id:
            return RedirectResponse(f"/cases/{case_id}", status_code=303)
        if ctx.session.role in WIDE_ROLES:
            receipt = await upstream(request).get(
                "intake",
                f"/api/v1/receipts/{segment(code)}",
                session=ctx.session,
                correlation_id=ctx.correlation_id,
            )
            if receipt.ok:
                return render(
                    request,
                    ctx,
                    "case.html",
                    case=None,
                    receipt=receipt.body,
                    deliveries=None,
                    facts=None,
                    timeline=case_timeline(
                        receipt=receipt.body, case=None, deliveries=None, facts=None
                    ),
                    errors={"routing": "尚未生成案件，或案件不在任何部门的待办中。"},
                    show_contacts=False,
                )
        return render(
            request, ctx, "case_search.html", 404, q=q, message="没有找到，或您无权查看。"
        )

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    async def case_page(case_id: UUID, request: Request, ctx: Context) -> HTMLResponse:
        need(ctx, Section.CASES)
        up = upstream(request)
        s, cid = ctx.session, ctx.correlation_id
        routed = await up.get("routing", f"/api/v1/cases/{case_id}", session=s, correlation_id=cid)
        if routed.status == 404:
            # maybe an opinion id
            by_opinion = await up.get(
                "routing",
                "/api/v1/cases",
                session=s,
                correlation_id=cid,
                params={"opinion_id": str(case_id)},
            )
            if by_opinion.ok and isinstance(by_opinion.body, dict):
                routed = by_opinion
        if routed.status in (403, 404):
            raise PageError(routed.status, "没有找到这个案件，或您无权查看。")
        if not routed.ok or not isinstance(routed.body, dict):
            raise PageError(502, f"交办服务（routing）暂时无法回答：{_why(routed)}")
        case = routed.body
        real_id = case.get("id", str(case_id))
        receipt, deliveries, facts = await asyncio.gather(
            up.get(
                "intake",
                f"/api/v1/receipts/{segment(str(case.get('receipt_code', '')))}",
                session=s,
                correlation_id=cid,
            ),
            up.get(
                "notification",
                f"/api/v1/cases/{real_id}/deliveries",
                session=s,
                correlation_id=cid,
            ),
            up.get("evaluation", f"/api/v1/cases/{real_id}", session=s, correlation_id=cid),
        )
        errors = {
            name: _why(reply)
            for name, reply in (
                ("intake", receipt),
                ("notification", deliveries),
                ("evaluation", facts),
            )
            if not reply.ok
        }
        delivery_list = (
            deliveries.body if deliveries.ok and isinstance(deliveries.body, list) else None
        )
        return render(
            request,
            ctx,
            "case.html",
            case=case,
            receipt=receipt.body if receipt.ok else None,
            deliveries=delivery_list,
            facts=facts.body if facts.ok else None,
            timeline=case_timeline(
                receipt=receipt.body if receipt.ok else None,
                case=case,
                deliveries=delivery_list,
                facts=facts.body if facts.ok else None,
            ),
            errors=errors,
            show_contacts=sees_work_contacts(s.role),
        )

    # ---- pipeline health --------------------------------------------------------------------

    async def pipeline_state(request: Request, ctx: Ctx) -> dict[str, Any]:
        up = upstream(request)
        timeout = settings.upstream.health_timeout_s

        async def one(name: str) -> dict[str, Any]:
            ready, metrics = await asyncio.gather(
                up.get(
                    name,
                    "/health/ready",
                    session=None,
                    correlation_id=ctx.correlation_id,
                    limit_s=timeout,
                ),
                up.get(
                    name,
                    "/metrics",
                    session=None,
                    correlation_id=ctx.correlation_id,
                    limit_s=timeout,
                    raw=True,
                ),
            )
            if ready.status is None:
                status, text = "down", "无响应"
            elif ready.status == 200:
                status, text = "ready", "正常"
            else:
                status, text = "unready", "未就绪"
            checks = ready.body.get("checks") if isinstance(ready.body, dict) else None
            parsed = None
            if metrics.ok and isinstance(metrics.body, str):
                try:
                    parsed = parse_metrics(metrics.body).as_dict()
                except ValueError:
                    parsed = None
            return {
                "service": name,
                "label": labels.SERVICES[name],
                "status": status,
                "status_text": text,
                "checks": checks,
                "metrics": parsed,
            }

        services = await asyncio.gather(*(one(n) for n in SERVICES))
        return {
            "at": datetime.now(CHINA).strftime("%H:%M:%S"),
            "services": list(services),
        }

    @app.get("/pipeline", response_class=HTMLResponse)
    async def pipeline(request: Request, ctx: Context) -> HTMLResponse:
        need(ctx, Section.PIPELINE)
        return render(request, ctx, "pipeline.html", state=await pipeline_state(request, ctx))

    @app.get("/api/pipeline")
    async def pipeline_json(request: Request, ctx: Context) -> JSONResponse:
        if Section.PIPELINE not in ctx.sections:
            return JSONResponse({"error": "forbidden"}, status_code=403)
        return JSONResponse(await pipeline_state(request, ctx))

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    return app


def _why(reply: Reply) -> str:
    if reply.status is None:
        return f"服务无响应（{reply.error}）"
    if reply.status == 404:
        return "接口不存在或无数据（404）"
    if reply.ok:
        return ""
    return f"服务返回 {reply.status}"


def china_time(value: Any) -> str:
    """An ISO timestamp from a service → 'YYYY-MM-DD HH:MM' in China's time ('—' if none)."""
    when = parse_datetime(value)
    if when is None:
        return "—"
    if when.tzinfo is not None:
        when = when.astimezone(CHINA)
    return when.strftime("%Y-%m-%d %H:%M")
