"""A bar chart as inline SVG, drawn on the server (no JavaScript library)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape


def _nice_max(value: int) -> int:
    """The y-axis top: ≥ value, a round number (1, 2, 5 × 10ⁿ), at least 1."""
    if value <= 1:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def bar_chart_svg(
    points: Sequence[tuple[date, int]],
    *,
    title: str,
    width: int = 720,
    height: int = 220,
    label_every: int = 5,
) -> str:
    """One bar per day, value labels in each bar's <title> (hover), a date label every
    `label_every` days, a y-axis with 0, half and the top. Empty input: an empty frame."""
    left, right, top, bottom = 40, 10, 24, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((v for _, v in points), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(title)}">',
        f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h - fraction * plot_h
        label = round(top_value * fraction, 1)
        text = str(int(label)) if float(label).is_integer() else str(label)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    n = len(points)
    if n:
        slot = plot_w / n
        bar_w = max(1.0, slot * 0.7)
        for i, (day, value) in enumerate(points):
            h = plot_h * value / top_value
            x = left + i * slot + (slot - bar_w) / 2
            y = top + plot_h - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" data-date="{day.isoformat()}" data-value="{value}">'
                f"<title>{day.isoformat()}: {value}</title></rect>"
            )
            if i % label_every == 0 or i == n - 1:
                parts.append(
                    f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - 8}" '
                    f'text-anchor="middle">{day.month}/{day.day}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)
