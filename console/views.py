"""What the pages show, computed from the services' answers. Pure functions (unit-tested)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from console.access import mask_text
from console.labels import CASE_STATES, DELIVERY_STATUS, RATING_LEVELS, STAGES, label

# ---- opinions by channel (intake's stats) ---------------------------------------------------


@dataclass
class OpinionStats:
    today: dict[str, int]
    month: dict[str, int]
    daily: list[tuple[date, int]]  # the last 30 days, oldest first

    @property
    def today_total(self) -> int:
        return sum(self.today.values())

    @property
    def month_total(self) -> int:
        return sum(self.month.values())


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, int] = {}
    for key, count in value.items():
        if isinstance(count, int | float):
            out[str(key)] = int(count)
    return out


def opinion_stats(body: Any, today: date) -> OpinionStats | None:
    """intake's `GET /api/v1/stats/opinions` answer → today / this month by channel and the
    last 30 days. Accepts `{"days": [{"date", "by_channel", "total"}], ...}` (or a bare list of
    days); anything else is None ('暂无数据')."""
    days = body.get("days") if isinstance(body, Mapping) else body
    if not isinstance(days, list):
        return None
    by_day: dict[date, dict[str, int]] = {}
    for item in days:
        if not isinstance(item, Mapping):
            continue
        day = _as_date(item.get("date") or item.get("day"))
        if day is None:
            continue
        if "by_channel" in item:
            counts = {k: v for k, v in _counts(item.get("by_channel")).items() if v}
        elif isinstance(item.get("total"), int) and item["total"]:
            counts = {"all": int(item["total"])}
        else:
            counts = {}
        by_day[day] = counts
    if not by_day:
        return None
    month: dict[str, int] = {}
    for day, counts in by_day.items():
        if day.year == today.year and day.month == today.month and day <= today:
            for channel, n in counts.items():
                month[channel] = month.get(channel, 0) + n
    daily = [
        (d, sum(by_day.get(d, {}).values()))
        for d in (today - timedelta(days=offset) for offset in range(29, -1, -1))
    ]
    return OpinionStats(today=dict(by_day.get(today, {})), month=month, daily=daily)


# ---- department queues (routing) ------------------------------------------------------------


@dataclass
class QueueCounts:
    open: int = 0
    due_soon: int = 0
    overdue: int = 0


def parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def queue_counts(items: Iterable[Mapping[str, Any]], now: datetime, soon: timedelta) -> QueueCounts:
    """Open cases of a queue; of them, overdue (next deadline passed) and due soon (within
    `soon`)."""
    counts = QueueCounts()
    for item in items:
        counts.open += 1
        due = parse_datetime(item.get("next_due_at"))
        if due is None:
            continue
        if due < now:
            counts.overdue += 1
        elif due <= now + soon:
            counts.due_soon += 1
    return counts


def sorted_queue(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The queue by next deadline, earliest first; cases without one last."""
    far = datetime.max.replace(tzinfo=datetime.now().astimezone().tzinfo)

    def key(item: Mapping[str, Any]) -> datetime:
        return parse_datetime(item.get("next_due_at")) or far

    return [dict(i) for i in sorted(items, key=key)]


# ---- KPIs (evaluation) ----------------------------------------------------------------------

RATE_FIELDS = ("response_rate", "completion_rate", "on_time_completion_rate", "satisfaction_rate")


def kpi_rates(items: Any) -> dict[str, float | None] | None:
    """evaluation's `GET /api/v1/kpis?dimension=city&month=…` → the four rates. One row: its
    rates as given; several: recomputed from the summed counters; none: None."""
    rows = [r for r in items if isinstance(r, Mapping)] if isinstance(items, list) else []
    if not rows:
        return None
    if len(rows) == 1:
        return {f: _rate(rows[0].get(f)) for f in RATE_FIELDS}

    def total(name: str) -> int:
        return sum(int(r.get(name) or 0) for r in rows)

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "response_rate": ratio(total("acknowledged_on_time"), total("assigned")),
        "completion_rate": ratio(total("completed"), total("assigned")),
        "on_time_completion_rate": ratio(total("completed_on_time"), total("completed")),
        "satisfaction_rate": ratio(
            total("satisfied") + total("basically_satisfied"), total("rated")
        ),
    }


def _rate(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


# ---- the case timeline ----------------------------------------------------------------------


@dataclass(order=True)
class TimelineEntry:
    at: datetime
    service: str = field(compare=False)
    title: str = field(compare=False)
    detail: str = field(compare=False, default="")


def case_timeline(
    *,
    receipt: Mapping[str, Any] | None,
    case: Mapping[str, Any] | None,
    deliveries: Sequence[Mapping[str, Any]] | None,
    facts: Mapping[str, Any] | None,
) -> list[TimelineEntry]:
    """One time-ordered story across the four services. Free text is phone-masked."""
    entries: list[TimelineEntry] = []

    def add(at: Any, service: str, title: str, detail: str = "") -> None:
        when = parse_datetime(at)
        if when is not None:
            entries.append(TimelineEntry(when, service, title, mask_text(detail)))

    for stage in (receipt or {}).get("history") or []:
        if isinstance(stage, Mapping):
            add(stage.get("at"), "intake", f"受理进度：{label(STAGES, stage.get('stage'))}")
    for t in (case or {}).get("transitions") or []:
        if isinstance(t, Mapping):
            before = label(CASE_STATES, t.get("from_state"))
            move = f"{before} → {label(CASE_STATES, t.get('to_state'))}"
            who = f"操作人 {t.get('actor')}" + (
                f"（{t['actor_role']}）" if t.get("actor_role") else ""
            )
            reason = f"；原因：{t['reason']}" if t.get("reason") else ""
            add(t.get("at"), "routing", f"案件状态：{move}", who + reason)
    for d in deliveries or []:
        status = label(DELIVERY_STATUS, d.get("status"))
        target = " · ".join(
            (
                str(d.get("recipient_kind", "?")),
                str(d.get("channel", "?")),
                f"模板 {d.get('template')}",
            )
        )
        add(d.get("created_at"), "notification", "通知已生成", target)
        if d.get("sent_at"):
            add(d.get("sent_at"), "notification", f"通知{status}", target)
    if facts:
        add(facts.get("first_notified_at"), "evaluation", "首次通知到部门（评价记录）")
        add(
            facts.get("acknowledged_at"),
            "evaluation",
            "签收" + ("（按时）" if facts.get("acknowledged_on_time") else "（超时）"),
        )
        add(
            facts.get("first_completed_at"),
            "evaluation",
            "办结" + ("（按时）" if facts.get("last_completed_on_time") else ""),
        )
        add(facts.get("closed_at"), "evaluation", "结案")
        if facts.get("rated_at"):
            add(
                facts.get("rated_at"),
                "evaluation",
                f"群众评价：{label(RATING_LEVELS, facts.get('rating_level'))}",
            )
    return sorted(entries)
