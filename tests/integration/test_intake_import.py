"""`python -m services.intake import-file`: offline records from CSV / XLSX, as a process."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import Workbook

from services.intake.app import MIGRATIONS, SCHEMA, seed
from services.intake.settings import IntakeSettings
from shared.settings import DatabaseSettings
from tests.helpers import migrate, open_pool
from tests.processes import ROOT, service_env

pytestmark = pytest.mark.integration


def import_file(env: dict[str, str], path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.intake", "import-file", str(path), *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
async def env(infra, database_url, topic_prefix) -> dict[str, str]:
    await migrate(database_url, SCHEMA, MIGRATIONS)
    await seed(IntakeSettings(database=DatabaseSettings(url=database_url)))
    return service_env("intake", database_url=database_url, topic_prefix=topic_prefix)


async def count(database_url: str, sql: str) -> int:
    pool = await open_pool(database_url, SCHEMA)
    try:
        value: int = await pool.fetchval(sql)
        return value
    finally:
        await pool.close()


async def test_a_10000_row_csv_imported_twice_gives_10000_opinions(env, database_url, tmp_path):
    path = tmp_path / "reception-2026.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["station_id", "channel", "category_id", "content", "voter_phone"])
        for i in range(10_000):
            writer.writerow(
                [
                    "zeguo-1",
                    "station_reception" if i % 2 else "mailbox",
                    "traffic",
                    f"第{i}条：文化路口红绿灯时间太短",
                    f"139{i:08d}" if i % 10 == 0 else "",
                ]
            )
    first = import_file(env, path)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "importing reception-2026.csv" in first.stdout  # the progress bar
    assert "10000/10000" in first.stdout
    assert "10000 imported, 0 already imported, 0 rejected" in first.stdout

    second = import_file(env, path)
    assert second.returncode == 0, second.stderr + second.stdout
    assert "0 imported, 10000 already imported" in second.stdout
    assert await count(database_url, "SELECT count(*) FROM opinions") == 10_000
    outbox = "SELECT count(*) FROM outbox WHERE event_type = "
    assert await count(database_url, outbox + "'opinion.submitted'") == 10_000
    assert await count(database_url, outbox + "'voter_contact.recorded'") == 1_000


async def test_rejected_rows_are_reported_with_reasons_and_the_rest_imported(
    env, database_url, tmp_path
):
    path = tmp_path / "visits.xlsx"
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["external_id", "channel", "content", "voter_phone", "occurred_at"])
    sheet.append(
        ["V-1", "deputy_visit", "村口小桥栏杆松动，存在安全隐患", "13800138000", "2026-03-02"]
    )
    sheet.append(["V-2", "deputy_visit", "短", None, None])
    sheet.append(["V-3", "deputy_visit", "村里垃圾清运不及时，夏天气味很大", "12345", None])
    sheet.append(["V-4", "carrier_pigeon", "希望增加公交班次，方便老人进城", None, None])
    sheet.append(["V-5", "deputy_visit", "希望增加公交班次，方便老人进城", None, "2999-01-01"])
    sheet.append(["V-1", "deputy_visit", "村口小桥栏杆松动，存在安全隐患", None, None])
    book.save(path)

    first = import_file(env, path, "--station", "daxi-1")
    assert first.returncode == 1  # some rows were rejected
    out = first.stdout
    assert "1 imported, 0 already imported, 5 rejected" in out
    assert "content" in out
    assert "voter_phone" in out
    assert "channel" in out
    assert "future" in out
    assert "duplicate of row 2" in out
    assert await count(database_url, "SELECT count(*) FROM opinions") == 1
    assert (
        await count(
            database_url,
            "SELECT count(*) FROM opinions WHERE import_key = 'ext:V-1' AND station_id = 'daxi-1'"
            " AND channel = 'deputy_visit' AND voter_phone = '+8613800138000'",
        )
        == 1
    )
    again = import_file(env, path, "--station", "daxi-1")
    assert "0 imported, 1 already imported, 5 rejected" in again.stdout
    assert await count(database_url, "SELECT count(*) FROM opinions") == 1

    no_station = import_file(env, path)
    assert "station_id: missing" in no_station.stdout
