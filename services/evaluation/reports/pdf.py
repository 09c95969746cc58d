"""The monthly report as a PDF (reportlab; CID font STSong-Light, so no font files needed)."""

from __future__ import annotations

import io

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from services.evaluation.domain import Kpi
from services.evaluation.reports import MonthlyReport, format_rate, label

FONT = "STSong-Light"


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def _kpi_rows(kpis: list[tuple[str, Kpi]]) -> list[list[str]]:
    head = ["名称", "交办", "按时响应", "办结", "按时办结", "评价", "满意+基本满意", "退回"]
    head += ["重办", "超期", "响应率", "办结率", "按时办结率", "满意率"]
    rows = [head]
    for name, k in kpis:
        c = k.counts
        rows.append(
            [
                name,
                *(
                    str(v)
                    for v in (
                        c["assigned"],
                        c["acknowledged_on_time"],
                        c["completed"],
                        c["completed_on_time"],
                        c["rated"],
                        c["satisfied"] + c["basically_satisfied"],
                        c["returned"],
                        c["reopened"],
                        c["overdue"],
                    )
                ),
                format_rate(k.response_rate),
                format_rate(k.completion_rate),
                format_rate(k.on_time_completion_rate),
                format_rate(k.satisfaction_rate),
            ]
        )
    return rows


def _table(rows: list[list[str]], font: str) -> Table:
    table = Table(rows, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 8),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf5")),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
            ]
        )
    )
    return table


def _chart(report: MonthlyReport, font: str) -> Drawing:
    kpis = report.breakdown or [report.total]
    drawing = Drawing(250 * mm, 70 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 15 * mm, 15 * mm, 200 * mm, 45 * mm
    chart.data = [
        [k.counts["assigned"] for k in kpis],
        [k.counts["completed"] for k in kpis],
        [k.counts["satisfied"] + k.counts["basically_satisfied"] for k in kpis],
    ]
    chart.categoryAxis.categoryNames = [label(k.key)[:8] for k in kpis]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labels.fontSize = 7
    palette = [colors.HexColor("#4c72b0"), colors.HexColor("#55a868"), colors.HexColor("#dd8452")]
    for i, color in enumerate(palette):
        chart.bars[i].fillColor = color
    legend = Legend()
    legend.x, legend.y = 220 * mm, 60 * mm
    legend.fontName = font
    legend.fontSize = 7
    legend.colorNamePairs = list(zip(palette, ["交办", "办结", "满意+基本满意"], strict=True))
    drawing.add(chart)
    drawing.add(legend)
    drawing.add(String(15 * mm, 65 * mm, report.breakdown_title, fontName=font, fontSize=9))
    return drawing


def render_pdf(report: MonthlyReport) -> bytes:
    font = _font()
    title = ParagraphStyle("title", fontName=font, fontSize=16, leading=20)
    body = ParagraphStyle("body", fontName=font, fontSize=10, leading=14)
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out, pagesize=landscape(A4), title=report.title, leftMargin=12 * mm, rightMargin=12 * mm
    )
    t = report.total
    a = report.activity
    story = [
        Paragraph(report.title, title),
        Spacer(1, 4 * mm),
        Paragraph(
            f"交办 {t.counts['assigned']} 件，办结 {t.counts['completed']} 件；"
            f"响应率 {format_rate(t.response_rate)}，办结率 {format_rate(t.completion_rate)}，"
            f"按时办结率 {format_rate(t.on_time_completion_rate)}，"
            f"满意率 {format_rate(t.satisfaction_rate)}。",
            body,
        ),
        Paragraph(
            f"联络站活动 {a.activities} 次，接待选民 {a.reception_batches} 批 {a.visitors} 人次，"
            f"受理问题 {a.issues} 件；本月未接待选民的联络站 "
            f"{len(a.under_one_batch_a_month())} 个。",
            body,
        ),
        Spacer(1, 4 * mm),
        _table(_kpi_rows([("合计", t)] + [(label(k.key), k) for k in report.breakdown]), font),
        Spacer(1, 4 * mm),
        _chart(report, font),
    ]
    if report.departments:
        story += [
            Paragraph("各职能部门", body),
            _table(_kpi_rows([(label(k.key), k) for k in report.departments]), font),
        ]
    doc.build(story)
    return out.getvalue()
