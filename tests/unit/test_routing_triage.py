"""Triage: a category for uncategorised text, major problems, common problems."""

from __future__ import annotations

from services.routing.domain.triage import (
    DEFAULT_KEYWORD_RULES,
    KeywordRule,
    TriageSettings,
    categorise,
    is_common,
    is_major,
)


def test_a_given_category_is_kept():
    assert categorise("小区停水三天", "urban", DEFAULT_KEYWORD_RULES) == "urban"


def test_uncategorised_text_gets_the_category_its_keywords_hit_most():
    assert categorise("横湖路一带连续三天停水，老人孩子用水困难", None, DEFAULT_KEYWORD_RULES) == (
        "utilities"
    )
    assert categorise("文化路口红绿灯时间太短，马路太宽", None, DEFAULT_KEYWORD_RULES) == "traffic"
    assert categorise("河道有污水排放，夏天很臭", None, DEFAULT_KEYWORD_RULES) == "environment"
    assert categorise("希望多组织文艺演出", None, DEFAULT_KEYWORD_RULES) is None


def test_ties_go_to_the_lower_priority_number_then_the_category_id():
    rules = [KeywordRule("A", "b-cat", priority=10), KeywordRule("B", "a-cat", priority=20)]
    assert categorise("A B", None, rules) == "b-cat"
    rules = [KeywordRule("A", "b-cat"), KeywordRule("B", "a-cat")]
    assert categorise("A B", None, rules) == "a-cat"


def test_major_problems_by_keyword():
    assert is_major("全镇多个村的饮用水源受到污染", DEFAULT_KEYWORD_RULES)
    assert not is_major("泽国镇文化路口红绿灯时间太短，老人过马路来不及", DEFAULT_KEYWORD_RULES)


def test_common_when_enough_similar_opinions_arrive_in_the_window():
    settings = TriageSettings(common_threshold=3)
    assert not is_common(2, settings)
    assert is_common(3, settings)
