"""The monthly report as an XLSX workbook (openpyxl): KPIs, breakdown, station activity."""

from __future__ import annotations

import io

from openpyxl import Workbook
from openpyxl.styles import Font

from services.evaluation.reports import MonthlyReport, kpi_cells, kpi_header, label

_BOLD = Font(bold=True)


def render_xlsx(report: MonthlyReport) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "KPIs"
    sheet.append([report.title])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append(["月份", report.month])
    sheet.append([])
    sheet.append(kpi_header())
    for cell in sheet[sheet.max_row]:
        cell.font = _BOLD
    sheet.append(kpi_cells(report.total, "合计"))
    sheet.append([])
    sheet.append([report.breakdown_title])
    for kpi in report.breakdown:
        sheet.append(kpi_cells(kpi, label(kpi.key)))
    if report.departments:
        sheet.append([])
        sheet.append(["各职能部门"])
        for kpi in report.departments:
            sheet.append(kpi_cells(kpi, label(kpi.key)))
    for row in sheet.iter_rows(min_row=5):
        for cell in row[13:]:
            if isinstance(cell.value, float):
                cell.number_format = "0.0%"
    sheet.column_dimensions["A"].width = 24

    activity = book.create_sheet("联络站活动")
    activity.append(["联络站", "镇（街道）", "活动次数", "接待批次", "接待人次", "受理问题"])
    for cell in activity[1]:
        cell.font = _BOLD
    for s in report.activity.stations:
        activity.append(
            [
                label(s.station_id),
                label(s.town_id),
                s.activities,
                s.reception_batches,
                s.visitors,
                s.issues,
            ]
        )
    a = report.activity
    activity.append(["合计", "", a.activities, a.reception_batches, a.visitors, a.issues])
    activity.column_dimensions["A"].width = 28
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
