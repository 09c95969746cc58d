"""The monthly report: the XLSX and PDF (by command and by API) open and hold the month's
numbers (read back with openpyxl and pypdf)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import uuid4

import httpx
import openpyxl
import pytest
from fastapi import FastAPI
from pypdf import PdfReader

from services.evaluation.api import build_router
from services.evaluation.app import MIGRATIONS, SCHEMA
from services.evaluation.domain import CITY_KEY
from services.evaluation.handlers import on_event
from services.evaluation.ratings import RatingLinks, RatingSettings
from services.evaluation.reports import format_rate, label
from services.evaluation.store import EvaluationStore
from shared.auth import AuthSettings, Principal, Role, issue_token
from shared.events import EventEnvelope, StationActivityRecordedV1
from shared.http import install_common
from shared.messaging.inbox import Delivery
from tests.helpers import migrate, open_pool
from tests.unit.test_evaluation_kpis import generate_story

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AUTH = AuthSettings()
LINKS = RatingLinks(AUTH, RatingSettings())
MONTH = "2025-02"


def _pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _xlsx_rows(data: bytes) -> dict[str, list[list[object]]]:
    book = openpyxl.load_workbook(io.BytesIO(data))
    return {
        name: [list(r) for r in book[name].iter_rows(values_only=True)] for name in book.sheetnames
    }


async def test_monthly_reports_hold_the_months_numbers(infra, database_url, tmp_path):
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await open_pool(database_url, SCHEMA)
    try:
        store = EvaluationStore(pool)
        for offset, envelope in enumerate(generate_story(1500, seed=11)):
            delivery = Delivery("evaluation.case", "minyi.case", 0, offset)
            await on_event(store, envelope, delivery, links=LINKS)
        for n, (station, visitors) in enumerate((("zeguo-1", 7), ("zeguo-1", 5), ("taiping-1", 4))):
            activity = StationActivityRecordedV1(
                activity_id=uuid4(),
                station_id=station,
                town_id=station.split("-")[0],
                kind="reception",
                activity_date=date(2025, 2, 10 + n),
                deputy_ids=["deputy-1"],
                visitor_count=visitors,
                opinion_ids=[uuid4()],
                recorded_at=datetime(2025, 2, 20, tzinfo=UTC),
            )
            envelope = EventEnvelope.wrap(activity, producer="intake", correlation_id=uuid4())
            await on_event(
                store, envelope, Delivery("evaluation.station", "minyi.station", 0, n), links=LINKS
            )
        [city] = await store.kpis(dimension="city", key=CITY_KEY, month=MONTH)
        [zeguo] = await store.kpis(dimension="town", key="zeguo", month=MONTH)
        assert city.counts["assigned"] > 100

        # By command: the city's report.
        env = {**os.environ, "DATABASE_URL": database_url}
        env = {k: v for k, v in env.items() if not k.startswith("MINYI_EVALUATION__")}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.evaluation",
            "report",
            "--month",
            MONTH,
            "--out",
            str(tmp_path),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        xlsx = (tmp_path / f"minyi-city-{MONTH}.xlsx").read_bytes()
        pdf = (tmp_path / f"minyi-city-{MONTH}.pdf").read_bytes()

        sheets = _xlsx_rows(xlsx)
        kpis = sheets["KPIs"]
        assert kpis[0][0] == f"温岭市 {MONTH} 民意办理月报"
        header = kpis[3]
        total = dict(zip(header, next(r for r in kpis if r[0] == "合计"), strict=True))
        assert total["交办件数"] == city.counts["assigned"]
        assert total["已办结"] == city.counts["completed"]
        assert total["满意"] == city.counts["satisfied"]
        assert total["满意率"] == city.satisfaction_rate
        assert total["响应率"] == city.response_rate
        town_row = dict(zip(header, next(r for r in kpis if r[0] == "泽国镇"), strict=True))
        assert town_row["交办件数"] == zeguo.counts["assigned"]
        stations = sheets["联络站活动"]
        assert stations[-1][:6] == ["合计", None, 3, 3, 16, 3]

        text = _pdf_text(pdf)
        assert f"温岭市 {MONTH} 民意办理月报" in text
        assert f"交办 {city.counts['assigned']} 件" in text
        assert f"办结 {city.counts['completed']} 件" in text
        assert f"满意率 {format_rate(city.satisfaction_rate)}" in text
        assert "接待选民 3 批 16 人次" in text
        assert "泽国镇" in text
        assert "各职能部门" in text

        # By API: one town's report, staff only.
        app = FastAPI()
        install_common(app, service="evaluation", ready=lambda: asyncio.sleep(0, {}))
        app.include_router(build_router(lambda _r: store, auth=AUTH, links=LINKS))
        token = issue_token(AUTH, Principal(subject="committee-1", role=Role.COMMITTEE))
        headers = {"authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evaluation") as http:
            params = {"month": MONTH, "town": "zeguo", "format": "pdf"}
            assert (await http.get("/api/v1/reports/monthly", params=params)).status_code == 401
            answer = await http.get("/api/v1/reports/monthly", params=params, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/pdf"
            text = _pdf_text(answer.content)
            assert f"泽国镇 {MONTH} 民意办理月报" in text
            assert f"交办 {zeguo.counts['assigned']} 件" in text
            assert "接待选民 2 批 12 人次" in text
            book = await http.get(
                "/api/v1/reports/monthly", params={**params, "format": "xlsx"}, headers=headers
            )
            rows = _xlsx_rows(book.content)["KPIs"]
            total = dict(zip(rows[3], next(r for r in rows if r[0] == "合计"), strict=True))
            assert total["交办件数"] == zeguo.counts["assigned"]
            [station_row] = [r for r in rows if r[0] == label("zeguo-1")]
            [station_kpi] = await store.kpis(dimension="station", key="zeguo-1", month=MONTH)
            assert station_row[1] == station_kpi.counts["assigned"]
            bad = await http.get(
                "/api/v1/reports/monthly", params={"month": "2025-3"}, headers=headers
            )
            assert bad.status_code == 422
    finally:
        await pool.close()
