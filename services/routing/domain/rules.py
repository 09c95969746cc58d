"""Which department answers an opinion."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class RoutingRule:
    category_id: str
    town_id: str | None
    department_id: str
    priority: int


def choose_department(
    rules: Iterable[RoutingRule], *, category_id: str | None, town_id: str, fallback: str
) -> str:
    """A rule for this category in this town beats one for the category anywhere;
    then the lower priority number wins; with no rule, the fallback department."""
    matching = [
        r
        for r in rules
        if r.category_id == category_id and (r.town_id is None or r.town_id == town_id)
    ]
    if not matching:
        return fallback
    best = min(matching, key=lambda r: (r.town_id is None, r.priority, r.department_id))
    return best.department_id
