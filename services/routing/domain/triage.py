"""Triage (分析研判): a category for uncategorised text, and individual / common / major."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Classification(StrEnum):
    INDIVIDUAL = "individual"  # → the responsible department
    COMMON = "common"  # the same problem across an area → one aggregated suggestion
    MAJOR = "major"  # a major regional problem → an invitation (约请), committee review


@dataclass(frozen=True)
class KeywordRule:
    """`keyword` in the text suggests `category_id`, or (with `major`) a major problem."""

    keyword: str
    category_id: str | None = None
    major: bool = False
    priority: int = 100


class TriageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    common_threshold: int = Field(
        default=3, ge=2, description="Opinions of one category in one town that make it common."
    )
    common_window_hours: int = Field(default=72, ge=1, description="…within this many hours.")


DEFAULT_KEYWORD_RULES: tuple[KeywordRule, ...] = (
    *(
        KeywordRule(k, "utilities")
        for k in ("停水", "停电", "水压", "自来水", "燃气", "煤气", "断电", "供水", "供电")
    ),
    *(
        KeywordRule(k, "traffic")
        for k in ("红绿灯", "公交", "道路", "路口", "停车", "交通", "马路", "斑马线")
    ),
    *(
        KeywordRule(k, "environment")
        for k in ("垃圾", "污染", "噪音", "异味", "排污", "污水", "河道", "臭")
    ),
    *(KeywordRule(k, "education") for k in ("学校", "幼儿园", "入学", "学生", "老师")),
    *(KeywordRule(k, "health") for k in ("医院", "看病", "医保", "卫生院", "疫苗")),
    *(KeywordRule(k, "social-security") for k in ("养老金", "社保", "低保", "失业")),
    *(KeywordRule(k, "agriculture") for k in ("农田", "灌溉", "渔业", "养殖", "种植")),
    *(KeywordRule(k, "safety") for k in ("火灾", "塌方", "漏电", "倒塌", "危房", "爆炸")),
    *(KeywordRule(k, "urban") for k in ("路灯", "小区", "物业", "违建", "拆迁", "绿化")),
    *(KeywordRule(k, "planning") for k in ("规划", "重大项目", "征地")),
    *(KeywordRule(k, major=True) for k in ("重大", "群体", "全镇", "全街道", "多个村", "集体")),
)


def categorise(content: str, category_id: str | None, rules: Iterable[KeywordRule]) -> str | None:
    """The given category if any; else the category whose keywords the text hits most
    (ties: the lower priority number, then the category id); None when nothing matches."""
    if category_id is not None:
        return category_id
    score: dict[str, tuple[int, int]] = {}
    for rule in rules:
        if rule.category_id is None or rule.keyword not in content:
            continue
        hits, best = score.get(rule.category_id, (0, rule.priority))
        score[rule.category_id] = (hits + 1, min(best, rule.priority))
    if not score:
        return None
    return min(score, key=lambda c: (-score[c][0], score[c][1], c))


def is_major(content: str, rules: Iterable[KeywordRule]) -> bool:
    return any(rule.major and rule.keyword in content for rule in rules)


def is_common(similar_open: int, settings: TriageSettings) -> bool:
    """`similar_open`: opinions of this category and town within the window, this one
    included, not yet part of an aggregated suggestion."""
    return similar_open >= settings.common_threshold
