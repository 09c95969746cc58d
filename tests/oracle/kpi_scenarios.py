"""≥ 30 KPI scenarios with their figures written BY HAND from ARCHITECTURE.md's "KPI
definitions" (never from services/evaluation/domain.py).

Each scenario runs in a year of its own (so the city row of a month is the scenario's alone)
with departments, a station, town and category of its own. Expected figures are keyed
``"<dept>@<MM>"`` (a department row) or ``"place@<MM>"`` (the case's rows: city, station, town
and category, which always agree here since a scenario has one of each). A row not listed is
expected to be absent or all zero. Months are calendar months in China's time.

Shorthand of the figures: a=assigned, ack=acknowledged, ackt=acknowledged_on_time,
c=completed, ct=completed_on_time, r=rated, s=satisfied, bs=basically_satisfied,
us=unsatisfied, ret=returned, ro=reopened, od=overdue.

Standard clock (``h.assign``): acknowledge-by = assignment + 1 day, complete-by = + 10 days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tests.oracle.events import Step, local

SHORT = {
    "a": "assigned",
    "ack": "acknowledged",
    "ackt": "acknowledged_on_time",
    "c": "completed",
    "ct": "completed_on_time",
    "r": "rated",
    "s": "satisfied",
    "bs": "basically_satisfied",
    "us": "unsatisfied",
    "ret": "returned",
    "ro": "reopened",
    "od": "overdue",
}
METRIC_NAMES = tuple(SHORT.values())


def k(**short: int) -> dict[str, int]:
    """Every metric, the named ones as given and the others 0."""
    figures = dict.fromkeys(METRIC_NAMES, 0)
    for name, value in short.items():
        figures[SHORT[name]] = value
    return figures


class H:
    """Step builder for one scenario's year."""

    def __init__(self, year: int) -> None:
        self.year = year

    def t(self, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
        return local(self.year, month, day, hour, minute)

    def assign(
        self,
        dept: str,
        month: int,
        day: int,
        hour: int = 10,
        minute: int = 0,
        *,
        ack_days: float = 1,
        complete_days: float = 10,
    ) -> Step:
        at = self.t(month, day, hour, minute)
        return Step(
            "assign",
            at,
            dept=dept,
            ack_due=at + timedelta(days=ack_days),
            due=at + timedelta(days=complete_days),
        )

    def ack(self, month: int, day: int, hour: int = 10, minute: int = 0) -> Step:
        return Step("ack", self.t(month, day, hour, minute))

    def complete(self, month: int, day: int, hour: int = 10, minute: int = 0) -> Step:
        return Step("complete", self.t(month, day, hour, minute))

    def ret(self, month: int, day: int, hour: int = 10, minute: int = 0) -> Step:
        return Step("return", self.t(month, day, hour, minute))

    def rate(self, level: str, month: int, day: int, hour: int = 12) -> Step:
        return Step("rate", self.t(month, day, hour), level=level)

    def extend(self, at: tuple[int, int], to: tuple[int, int], *, granted: bool = True) -> Step:
        return Step("extend", self.t(*at), due=self.t(*to), granted=granted)

    def reopen(self, at: tuple[int, int], due: tuple[int, int]) -> Step:
        return Step("reopen", self.t(*at), due=self.t(*due))

    def overdue(self, deadline: str, month: int, day: int, hour: int = 11) -> Step:
        return Step("overdue", self.t(month, day, hour), deadline=deadline)

    def evaluate(self, month: int, day: int) -> Step:
        return Step("evaluate", self.t(month, day))


@dataclass(frozen=True)
class Scenario:
    name: str
    why: str
    cases: Callable[[H], list[list[Step]]]
    expected: dict[str, dict[str, int]]


DONE_ON_TIME = {"a": 1, "ack": 1, "ackt": 1, "c": 1, "ct": 1}


def _on_time(h: H, dept: str = "A") -> list[Step]:
    """Assigned 3/3, acknowledged the same day, completed 3/10 (due 3/13)."""
    return [h.assign(dept, 3, 3), h.ack(3, 3, 15), h.complete(3, 10)]


SCENARIOS: list[Scenario] = [
    Scenario(
        "nothing_but_assignment",
        "assigned counts; nothing else happened, every other figure is 0",
        lambda h: [[h.assign("A", 3, 3)]],
        {"A@03": k(a=1), "place@03": k(a=1)},
    ),
    Scenario(
        "acknowledged_on_time",
        "acknowledged 5 h after assignment, before the acknowledge-by date (+1 day)",
        lambda h: [[h.assign("A", 3, 3), h.ack(3, 3, 15)]],
        {"A@03": k(a=1, ack=1, ackt=1), "place@03": k(a=1, ack=1, ackt=1)},
    ),
    Scenario(
        "acknowledged_late",
        "acknowledged 2 days after assignment, past the acknowledge-by date: not on time",
        lambda h: [[h.assign("A", 3, 3), h.ack(3, 5)]],
        {"A@03": k(a=1, ack=1), "place@03": k(a=1, ack=1)},
    ),
    Scenario(
        "acknowledged_exactly_at_the_date",
        "'at or before' the acknowledge-by date: exactly at it is on time",
        lambda h: [[h.assign("A", 3, 3), h.ack(3, 4)]],
        {"A@03": k(a=1, ack=1, ackt=1), "place@03": k(a=1, ack=1, ackt=1)},
    ),
    Scenario(
        "completed_on_time",
        "completed 3/10, complete-by 3/13",
        lambda h: [_on_time(h)],
        {"A@03": k(**DONE_ON_TIME), "place@03": k(**DONE_ON_TIME)},
    ),
    Scenario(
        "completed_late",
        "completed 3/20 after the complete-by date 3/13: completed, not on time",
        lambda h: [[h.assign("A", 3, 3), h.ack(3, 3, 15), h.complete(3, 20)]],
        {"A@03": k(a=1, ack=1, ackt=1, c=1), "place@03": k(a=1, ack=1, ackt=1, c=1)},
    ),
    Scenario(
        "completed_exactly_at_the_date",
        "completed at the complete-by moment itself: 'at or before' is on time",
        lambda h: [[h.assign("A", 3, 3), h.ack(3, 3, 15), h.complete(3, 13)]],
        {"A@03": k(**DONE_ON_TIME), "place@03": k(**DONE_ON_TIME)},
    ),
    Scenario(
        "extension_moves_the_due_date",
        "granted extension 3/13 → 3/20; completed 3/18 is after the original, before the "
        "extended date: on time",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ack(3, 3, 15),
                h.extend((3, 12), (3, 20)),
                h.complete(3, 18),
            ]
        ],
        {"A@03": k(**DONE_ON_TIME), "place@03": k(**DONE_ON_TIME)},
    ),
    Scenario(
        "extension_refused",
        "a refused extension moves nothing: completed 3/18 against 3/13 is late",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ack(3, 3, 15),
                h.extend((3, 12), (3, 20), granted=False),
                h.complete(3, 18),
            ]
        ],
        {"A@03": k(a=1, ack=1, ackt=1, c=1), "place@03": k(a=1, ack=1, ackt=1, c=1)},
    ),
    Scenario(
        "late_even_after_extension",
        "extended to 3/20, completed 3/22: late against the extended date",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ack(3, 3, 15),
                h.extend((3, 12), (3, 20)),
                h.complete(3, 22),
            ]
        ],
        {"A@03": k(a=1, ack=1, ackt=1, c=1), "place@03": k(a=1, ack=1, ackt=1, c=1)},
    ),
    Scenario(
        "rated_satisfied",
        "满意 counts in rated and satisfied",
        lambda h: [[*_on_time(h), h.rate("satisfied", 3, 11)]],
        {"A@03": k(**DONE_ON_TIME, r=1, s=1), "place@03": k(**DONE_ON_TIME, r=1, s=1)},
    ),
    Scenario(
        "rated_basically_satisfied",
        "基本满意 counts in rated and basically_satisfied (part of the satisfaction numerator)",
        lambda h: [[*_on_time(h), h.rate("basically_satisfied", 3, 11)]],
        {"A@03": k(**DONE_ON_TIME, r=1, bs=1), "place@03": k(**DONE_ON_TIME, r=1, bs=1)},
    ),
    Scenario(
        "rated_unsatisfied",
        "不满意 counts in rated and unsatisfied; no reopening followed (yet)",
        lambda h: [[*_on_time(h), h.rate("unsatisfied", 3, 11)]],
        {"A@03": k(**DONE_ON_TIME, r=1, us=1), "place@03": k(**DONE_ON_TIME, r=1, us=1)},
    ),
    Scenario(
        "no_rated_case",
        "two completed cases, neither rated: rated 0 (satisfaction rate undefined)",
        lambda h: [_on_time(h), _on_time(h)],
        {
            "A@03": k(a=2, ack=2, ackt=2, c=2, ct=2),
            "place@03": k(a=2, ack=2, ackt=2, c=2, ct=2),
        },
    ),
    Scenario(
        "mixed_ratings",
        "满意 + 基本满意 + 不满意 + one unrated: rated 3, satisfaction (1+1)/3",
        lambda h: [
            [*_on_time(h), h.rate("satisfied", 3, 11)],
            [*_on_time(h), h.rate("basically_satisfied", 3, 11)],
            [*_on_time(h), h.rate("unsatisfied", 3, 11)],
            _on_time(h),
        ],
        {
            "A@03": k(a=4, ack=4, ackt=4, c=4, ct=4, r=3, s=1, bs=1, us=1),
            "place@03": k(a=4, ack=4, ackt=4, c=4, ct=4, r=3, s=1, bs=1, us=1),
        },
    ),
    Scenario(
        "all_late",
        "three cases, every acknowledgement and completion late: on-time figures 0",
        lambda h: [
            [h.assign("A", 3, 3), h.ack(3, 5), h.complete(3, 20)],
            [h.assign("A", 3, 4), h.ack(3, 6), h.complete(3, 21)],
            [h.assign("A", 3, 5), h.ack(3, 7), h.complete(3, 25)],
        ],
        {"A@03": k(a=3, ack=3, c=3), "place@03": k(a=3, ack=3, c=3)},
    ),
    Scenario(
        "reopened_not_yet_completed_again",
        "不满意 then reopened: reopened 1, completed 0 (not completed since the reopening)",
        lambda h: [
            [*_on_time(h), h.rate("unsatisfied", 3, 11), h.reopen((3, 12), (3, 25))],
        ],
        {
            "A@03": k(a=1, ack=1, ackt=1, r=1, us=1, ro=1),
            "place@03": k(a=1, ack=1, ackt=1, r=1, us=1, ro=1),
        },
    ),
    Scenario(
        "reopened_and_completed_on_time_against_the_reopened_date",
        "reopened with complete-by 3/25, completed again 3/20 (after the original 3/13): on time",
        lambda h: [
            [
                *_on_time(h),
                h.rate("unsatisfied", 3, 11),
                h.reopen((3, 12), (3, 25)),
                h.complete(3, 20),
            ],
        ],
        {
            "A@03": k(**DONE_ON_TIME, r=1, us=1, ro=1),
            "place@03": k(**DONE_ON_TIME, r=1, us=1, ro=1),
        },
    ),
    Scenario(
        "reopened_and_completed_late",
        "reopened with complete-by 3/18, completed again 3/22: the last completion is late",
        lambda h: [
            [
                *_on_time(h),
                h.rate("unsatisfied", 3, 11),
                h.reopen((3, 12), (3, 18)),
                h.complete(3, 22),
            ],
        ],
        {
            "A@03": k(a=1, ack=1, ackt=1, c=1, r=1, us=1, ro=1),
            "place@03": k(a=1, ack=1, ackt=1, c=1, r=1, us=1, ro=1),
        },
    ),
    Scenario(
        "extension_then_reopen",
        "extended to 3/20, completed 3/19, 不满意, reopened with complete-by 3/30, completed "
        "3/31: the last completion is late",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ack(3, 3, 15),
                h.extend((3, 12), (3, 20)),
                h.complete(3, 19),
                h.rate("unsatisfied", 3, 19, 20),
                h.reopen((3, 21), (3, 30)),
                h.complete(3, 31),
            ]
        ],
        {
            "A@03": k(a=1, ack=1, ackt=1, c=1, r=1, us=1, ro=1),
            "place@03": k(a=1, ack=1, ackt=1, c=1, r=1, us=1, ro=1),
        },
    ),
    Scenario(
        "returned_and_rerouted_in_the_month",
        "A acknowledged then returned; B did the work. Each department counts its own "
        "assignment; the return is A's; the case rows carry B's figures and the return",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ack(3, 3, 14),
                h.ret(3, 4),
                h.assign("B", 3, 5),
                h.ack(3, 5, 15),
                h.complete(3, 10),
            ]
        ],
        {
            "A@03": k(a=1, ack=1, ackt=1, ret=1),
            "B@03": k(**DONE_ON_TIME),
            "place@03": k(**DONE_ON_TIME, ret=1),
        },
    ),
    Scenario(
        "returned_next_month_not_rerouted",
        "assigned 3/28, returned 4/2: the return counts in April (month of the return)",
        lambda h: [[h.assign("A", 3, 28), h.ret(4, 2)]],
        {
            "A@03": k(a=1),
            "A@04": k(ret=1),
            "place@03": k(a=1),
            "place@04": k(ret=1),
        },
    ),
    Scenario(
        "return_just_after_midnight_of_the_first_in_china",
        "returned 1 April 01:00 in Shanghai (31 March 17:00 UTC): an April return",
        lambda h: [[h.assign("A", 3, 20), h.ret(4, 1, 1)]],
        {
            "A@03": k(a=1),
            "A@04": k(ret=1),
            "place@03": k(a=1),
            "place@04": k(ret=1),
        },
    ),
    Scenario(
        "assigned_just_after_midnight_of_the_first_in_china",
        "assigned 1 May 07:00 in Shanghai (30 April 23:00 UTC): a May assignment",
        lambda h: [[h.assign("A", 5, 1, 7)]],
        {"A@05": k(a=1), "place@05": k(a=1)},
    ),
    Scenario(
        "reroute_across_the_month_boundary",
        "returned 31 Jan 23:30, re-routed to B 1 Feb 00:30 (Shanghai): A's assignment and "
        "return in January, B's assignment in February, the case in January (first assignment) "
        "with B's figures",
        lambda h: [
            [
                h.assign("A", 1, 20),
                h.ret(1, 31, 23, 30),
                h.assign("B", 2, 1, 0, 30),
                h.ack(2, 1, 9),
                h.complete(2, 5),
            ]
        ],
        {
            "A@01": k(a=1, ret=1),
            "B@02": k(**DONE_ON_TIME),
            "place@01": k(**DONE_ON_TIME, ret=1),
        },
    ),
    Scenario(
        "reroute_late_in_month_rated_next_month",
        "A (3/30) returns 4/2; B (4/2) acknowledges late and completes late, 基本满意: B's row "
        "in April, the case in March with B's figures, the return in April",
        lambda h: [
            [
                h.assign("A", 3, 30),
                h.ret(4, 2, 9),
                h.assign("B", 4, 2),
                h.ack(4, 4),
                h.complete(4, 20),
                h.rate("basically_satisfied", 4, 21),
            ]
        ],
        {
            "A@03": k(a=1),
            "A@04": k(ret=1),
            "B@04": k(a=1, ack=1, c=1, r=1, bs=1),
            "place@03": k(a=1, ack=1, c=1, r=1, bs=1),
            "place@04": k(ret=1),
        },
    ),
    Scenario(
        "rating_goes_to_the_department_that_completed",
        "A returned without acknowledging; B completed and was rated 满意: the rating is B's",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ret(3, 3, 16),
                h.assign("B", 3, 4),
                h.ack(3, 4, 15),
                h.complete(3, 10),
                h.rate("satisfied", 3, 11),
            ]
        ],
        {
            "A@03": k(a=1, ret=1),
            "B@03": k(**DONE_ON_TIME, r=1, s=1),
            "place@03": k(**DONE_ON_TIME, r=1, s=1, ret=1),
        },
    ),
    Scenario(
        "lateness_stays_with_the_late_department",
        "A acknowledged late then returned; B on time throughout: A is charged its lateness, "
        "B is not; the case shows its latest (B's) figures",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ack(3, 5),
                h.ret(3, 6),
                h.assign("B", 3, 6, 12),
                h.ack(3, 6, 15),
                h.complete(3, 12),
            ]
        ],
        {
            "A@03": k(a=1, ack=1, ret=1),
            "B@03": k(**DONE_ON_TIME),
            "place@03": k(**DONE_ON_TIME, ret=1),
        },
    ),
    Scenario(
        "overdue_acknowledgement",
        "the acknowledge deadline passed (overdue mark) and the case was acknowledged late",
        lambda h: [[h.assign("A", 3, 3), h.overdue("acknowledge", 3, 4), h.ack(3, 5)]],
        {"A@03": k(a=1, ack=1, od=1), "place@03": k(a=1, ack=1, od=1)},
    ),
    Scenario(
        "overdue_twice_is_one_assignment",
        "both deadlines overdue on one assignment: overdue counts assignments, so 1",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.overdue("acknowledge", 3, 4),
                h.ack(3, 5),
                h.overdue("complete", 3, 13),
                h.complete(3, 20),
            ]
        ],
        {"A@03": k(a=1, ack=1, c=1, od=1), "place@03": k(a=1, ack=1, c=1, od=1)},
    ),
    Scenario(
        "overdue_stays_with_the_holder",
        "A overdue on acknowledging, returned; B on time: overdue is A's, the case (latest "
        "assignment, B's) is not overdue",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.overdue("acknowledge", 3, 4),
                h.ret(3, 5),
                h.assign("B", 3, 5, 12),
                h.ack(3, 5, 15),
                h.complete(3, 12),
            ]
        ],
        {
            "A@03": k(a=1, od=1, ret=1),
            "B@03": k(**DONE_ON_TIME),
            "place@03": k(**DONE_ON_TIME, ret=1),
        },
    ),
    Scenario(
        "returned_twice",
        "A and B each returned it, C completed: one return each for A and B, two for the case",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ret(3, 3, 15),
                h.assign("B", 3, 4),
                h.ret(3, 4, 15),
                h.assign("C", 3, 5),
                h.ack(3, 5, 15),
                h.complete(3, 12),
            ]
        ],
        {
            "A@03": k(a=1, ret=1),
            "B@03": k(a=1, ret=1),
            "C@03": k(**DONE_ON_TIME),
            "place@03": k(**DONE_ON_TIME, ret=2),
        },
    ),
    Scenario(
        "evaluation_changes_no_kpi",
        "a committee's evaluation (评议) is no KPI input: as 'completed on time'",
        lambda h: [[*_on_time(h), h.evaluate(3, 12)]],
        {"A@03": k(**DONE_ON_TIME), "place@03": k(**DONE_ON_TIME)},
    ),
    Scenario(
        "one_done_one_untouched",
        "two cases of A: one acknowledged and completed on time, one nothing but assignment",
        lambda h: [_on_time(h), [h.assign("A", 3, 4)]],
        {
            "A@03": k(a=2, ack=1, ackt=1, c=1, ct=1),
            "place@03": k(a=2, ack=1, ackt=1, c=1, ct=1),
        },
    ),
    Scenario(
        "two_departments_two_months",
        "A's case in March (on time), B's in April (late ack, no completion): each in its month",
        lambda h: [_on_time(h), [h.assign("B", 4, 10), h.ack(4, 12)]],
        {
            "A@03": k(**DONE_ON_TIME),
            "B@04": k(a=1, ack=1),
            "place@03": k(**DONE_ON_TIME),
            "place@04": k(a=1, ack=1),
        },
    ),
    Scenario(
        "completed_in_the_next_month",
        "assigned 3/28 (complete-by 4/7), completed 4/5: counted in March, the month of the "
        "assignment, on time",
        lambda h: [[h.assign("A", 3, 28), h.ack(3, 28, 15), h.complete(4, 5)]],
        {"A@03": k(**DONE_ON_TIME), "place@03": k(**DONE_ON_TIME)},
    ),
    Scenario(
        "returned_after_acknowledging_late_and_rerouted_back",
        "A (late ack) returns, B returns, A again completes on time: A holds two assignments "
        "(assigned 2, one late and one on-time acknowledgement, one return)",
        lambda h: [
            [
                h.assign("A", 3, 3),
                h.ack(3, 5),
                h.ret(3, 6),
                h.assign("B", 3, 6, 12),
                h.ret(3, 7),
                h.assign("A", 3, 8),
                h.ack(3, 8, 15),
                h.complete(3, 15),
            ]
        ],
        {
            "A@03": k(a=2, ack=2, ackt=1, c=1, ct=1, ret=1),
            "B@03": k(a=1, ret=1),
            "place@03": k(**DONE_ON_TIME, ret=2),
        },
    ),
]
