from datetime import UTC, datetime
from uuid import uuid4

from services.routing import domain
from services.routing.domain import (
    CHINA,
    CaseKind,
    Classification,
    DeadlineSettings,
    Period,
    RoutingRule,
    default_calendar,
    lifecycle,
)
from shared.events import CaseAssignedV1, Channel, OpinionSubmittedV1

RULES = [
    RoutingRule("traffic", None, "transport", 100),
    RoutingRule("traffic", "zeguo", "zeguo-traffic", 100),
    RoutingRule("urban", None, "housing", 50),
    RoutingRule("urban", None, "enforcement", 10),
]


def test_town_specific_rule_beats_general_one():
    assert (
        domain.choose_department(RULES, category_id="traffic", town_id="zeguo", fallback="fb")
        == "zeguo-traffic"
    )
    assert (
        domain.choose_department(RULES, category_id="traffic", town_id="daxi", fallback="fb")
        == "transport"
    )


def test_lower_priority_number_wins_and_fallback_without_rule():
    assert (
        domain.choose_department(RULES, category_id="urban", town_id="daxi", fallback="fb")
        == "enforcement"
    )
    assert domain.choose_department(RULES, category_id=None, town_id="daxi", fallback="fb") == "fb"


def test_working_days_follow_chinas_calendar_with_adjusted_working_days():
    # Spring Festival 2025: 28 Jan–4 Feb off; Sunday 26 Jan is an adjusted working day (调休).
    friday = datetime(2025, 1, 24, 10, 0, tzinfo=CHINA)
    assert domain.add_working_days(friday, 1) == datetime(2025, 1, 26, 10, 0, tzinfo=CHINA)
    monday = datetime(2025, 1, 27, 16, 30, tzinfo=CHINA)
    assert domain.add_working_days(monday, 1) == datetime(2025, 2, 5, 16, 30, tzinfo=CHINA)


def test_years_the_calendar_does_not_know_fall_back_to_weekdays():
    friday = datetime(2031, 1, 3, 9, 0, tzinfo=CHINA)
    assert domain.add_working_days(friday, 1) == datetime(2031, 1, 6, 9, 0, tzinfo=CHINA)


def test_working_days_keep_the_callers_time_zone():
    start = datetime(2025, 1, 24, 2, 0, tzinfo=UTC)  # 10:00 in China
    due = domain.add_working_days(start, 1)
    assert due.tzinfo == UTC
    assert due == datetime(2025, 1, 26, 2, 0, tzinfo=UTC)


def test_assign_sets_deadlines_by_kind():
    opinion = OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.ONLINE,
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="utilities",
        content="停水三天了",
        submitted_at=datetime(2025, 3, 3, 9, tzinfo=CHINA),
        voter_reachable=False,
    )
    now = datetime(2025, 3, 3, 9, 0, tzinfo=CHINA)  # a Monday
    outcome = lifecycle.open_case(
        opinion,
        correlation_id=opinion.opinion_id,
        department_id="utilities",
        category_id="utilities",
        kind=CaseKind.UTILITIES,
        classification=Classification.INDIVIDUAL,
        deadlines=DeadlineSettings(),
        calendar=default_calendar(),
        now=now,
    )
    case = outcome.case
    assert case.acknowledge_due_at == datetime(2025, 3, 3, 13, 0, tzinfo=CHINA)
    assert case.complete_due_at == datetime(2025, 3, 4, 9, 0, tzinfo=CHINA)
    general = DeadlineSettings().general
    assert general.complete == Period(working_days=7)
    event = outcome.events[0]
    assert isinstance(event, CaseAssignedV1)
    assert event.aggregate_id() == str(case.id)
    assert event.department_id == "utilities"
