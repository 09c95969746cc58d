"""The KPI definitions of ARCHITECTURE.md ("KPI definitions"), each against a hand-computed
table: a return is charged to the department that made it, in the month it was made; a
re-routed case runs on the clock of its latest assignment; the previous department's
acknowledgement is not credited to the next; an extension moves the complete-by date. Every
story is folded in every order of its events, and each order must give the same table."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

from services.evaluation import domain
from services.evaluation.domain import CITY_KEY, CaseFacts, fold
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseCompletedV1,
    CaseExtensionDecidedV1,
    CaseOverdueV1,
    CaseReturnedV1,
    Event,
    SatisfactionRatedV1,
)

PLACE = {"station_id": "zeguo-1", "town_id": "zeguo", "category_id": "agriculture"}
OPINION = uuid4()
Table = dict[tuple[str, str, str], dict[str, int]]


def assigned(case_id: UUID, dept: str, at: datetime, ack: timedelta, done: timedelta) -> Event:
    return CaseAssignedV1(
        case_id=case_id,
        opinion_id=OPINION,
        receipt_code="ABCDE-FGHJK",
        department_id=dept,
        kind="general",
        assigned_at=at,
        acknowledge_due_at=at + ack,
        complete_due_at=at + done,
        **PLACE,
    )


def acknowledged(case_id: UUID, dept: str, at: datetime, due: datetime) -> Event:
    return CaseAcknowledgedV1(
        case_id=case_id,
        department_id=dept,
        responsible_person="李科长",
        planned_completion_date=date(2025, 4, 30),
        acknowledged_at=at,
        acknowledge_due_at=due,
        on_time=at <= due,
        **PLACE,
    )


def returned(case_id: UUID, dept: str, at: datetime) -> Event:
    return CaseReturnedV1(
        case_id=case_id, department_id=dept, reason="不属本单位职责", returned_at=at, **PLACE
    )


def completed(case_id: UUID, dept: str, at: datetime, due: datetime) -> Event:
    return CaseCompletedV1(
        case_id=case_id,
        opinion_id=OPINION,
        department_id=dept,
        completed_at=at,
        complete_due_at=due,
        on_time=at <= due,
        result_summary="已处理",
        **PLACE,
    )


def folded_in_every_order(case_id: UUID, events: list[Event]) -> tuple[CaseFacts, Table]:
    """Fold every permutation incrementally (counters by deltas, as the store does); all
    must agree on the facts and the counters, and the counters must equal a recount."""
    results: set[tuple[CaseFacts, tuple[tuple[tuple[str, str, str], tuple[int, ...]], ...]]]
    results = set()
    for order in itertools.permutations(events):
        facts = CaseFacts(case_id)
        counters: Table = {}
        for event in order:
            after = fold(facts, event)
            for key, change in domain.delta(facts, after).items():
                row = counters.setdefault(key, domain.zero())
                for m, v in change.items():
                    row[m] += v
            facts = after
        counters = {k: v for k, v in counters.items() if any(v.values())}
        assert counters == domain.recount([facts])
        frozen = tuple(
            sorted((k, tuple(v[m] for m in domain.METRICS)) for k, v in counters.items())
        )
        results.add((facts, frozen))
    assert len(results) == 1, "the order of the events changed the figures"
    facts, frozen = results.pop()
    return facts, {k: dict(zip(domain.METRICS, v, strict=True)) for k, v in frozen}


def table(rows: dict[tuple[str, str, str], dict[str, int]]) -> Table:
    """Rows of a hand-written table: unnamed metrics are 0; the city's row stands for its
    station, town and category too (one case: the same figures)."""
    out: Table = {}
    for (dimension, key, month), counts in rows.items():
        filled = domain.zero() | counts
        if dimension == "city":
            for place in (
                ("station", "zeguo-1"),
                ("town", "zeguo"),
                ("category", "agriculture"),
            ):
                out[(*place, month)] = filled
        out[(dimension, key, month)] = filled
    return out


def china(y: int, m: int, d: int, h: int, minute: int = 0) -> datetime:
    """A Wenling wall-clock time, in UTC."""
    return datetime(y, m, d, h, minute, tzinfo=UTC) - timedelta(hours=8)


def test_a_return_is_charged_to_the_department_that_returned_it_in_the_month_of_the_return():
    # agri gets the case on 31 March, accepts it on time, then disputes jurisdiction on
    # 1 April; the operator re-routes it to enforcement, which accepts late and completes on
    # time.
    case_id = uuid4()
    t0 = china(2025, 3, 31, 10)
    t_ret, t_route = china(2025, 4, 1, 9), china(2025, 4, 1, 10)
    enf_ack_due = t_route + timedelta(days=1)
    events = [
        assigned(case_id, "agri", t0, timedelta(days=1), timedelta(days=7)),
        acknowledged(case_id, "agri", t0 + timedelta(hours=2), t0 + timedelta(days=1)),
        returned(case_id, "agri", t_ret),
        assigned(case_id, "enforcement", t_route, timedelta(days=1), timedelta(days=7)),
        acknowledged(case_id, "enforcement", t_route + timedelta(days=2), enf_ack_due),
        completed(case_id, "enforcement", t_route + timedelta(days=5), t_route + timedelta(7)),
    ]
    facts, counters = folded_in_every_order(case_id, events)
    ack_done = {"assigned": 1, "acknowledged": 1}
    assert counters == table(
        {
            # agri: the assignment it held (March), its return (April).
            ("department", "agri", "2025-03"): ack_done | {"acknowledged_on_time": 1},
            ("department", "agri", "2025-04"): {"returned": 1},
            # enforcement: its own assignment, on its own clock; it returned nothing.
            ("department", "enforcement", "2025-04"): ack_done
            | {"completed": 1, "completed_on_time": 1},
            # the case itself: month of its first assignment, latest assignment's clock.
            ("city", CITY_KEY, "2025-03"): ack_done | {"completed": 1, "completed_on_time": 1},
            ("city", CITY_KEY, "2025-04"): {"returned": 1},
        }
    )
    assert facts.returns == 1
    assert facts.department_id == "enforcement"


def test_a_rerouted_case_runs_on_the_clock_of_its_latest_assignment():
    # An emergency: agri has 1 hour to accept and lets it pass (overdue fires); the operator
    # re-routes at +3 h, enforcement gets a fresh hour and accepts within it.
    case_id = uuid4()
    t0 = china(2025, 5, 6, 9)
    t_route = t0 + timedelta(hours=3)
    hour, day = timedelta(hours=1), timedelta(days=1)
    events = [
        assigned(case_id, "agri", t0, hour, day),
        CaseOverdueV1(
            case_id=case_id,
            department_id="agri",
            deadline="acknowledge",
            due_at=t0 + hour,
            fired_at=t0 + hour,
            **PLACE,
        ),
        returned(case_id, "agri", t0 + 2 * hour),
        assigned(case_id, "enforcement", t_route, hour, day),
        acknowledged(case_id, "enforcement", t_route + timedelta(minutes=40), t_route + hour),
    ]
    facts, counters = folded_in_every_order(case_id, events)
    assert facts.acknowledge_due_at == t_route + hour  # the re-route's, as routing has it
    assert facts.complete_due_at == t_route + day
    assert facts.acknowledged_on_time
    assert not facts.overdue_acknowledge
    on_time = {"assigned": 1, "acknowledged": 1, "acknowledged_on_time": 1}
    assert counters == table(
        {
            ("department", "agri", "2025-05"): {"assigned": 1, "overdue": 1, "returned": 1},
            ("department", "enforcement", "2025-05"): on_time,
            ("city", CITY_KEY, "2025-05"): on_time | {"returned": 1},
        }
    )


def test_the_previous_departments_acknowledgement_is_not_credited_to_the_next():
    case_id = uuid4()
    t0 = china(2025, 6, 2, 9)
    day = timedelta(days=1)
    events = [
        assigned(case_id, "agri", t0, day, 7 * day),
        acknowledged(case_id, "agri", t0 + timedelta(hours=1), t0 + day),
        returned(case_id, "agri", t0 + 2 * day),
        assigned(case_id, "enforcement", t0 + 3 * day, day, 7 * day),
    ]
    facts, counters = folded_in_every_order(case_id, events)
    assert facts.acknowledged_at is None
    assert counters == table(
        {
            ("department", "agri", "2025-06"): {
                "assigned": 1,
                "acknowledged": 1,
                "acknowledged_on_time": 1,
                "returned": 1,
            },
            ("department", "enforcement", "2025-06"): {"assigned": 1},
            ("city", CITY_KEY, "2025-06"): {"assigned": 1, "returned": 1},
        }
    )


def test_an_extension_moves_the_complete_by_date_and_the_rating_goes_to_who_completed():
    case_id = uuid4()
    t0 = china(2025, 7, 1, 9)
    day = timedelta(days=1)
    extended_due = t0 + 20 * day
    events = [
        assigned(case_id, "housing", t0, day, 7 * day),
        acknowledged(case_id, "housing", t0 + timedelta(hours=3), t0 + day),
        CaseExtensionDecidedV1(
            case_id=case_id,
            department_id="housing",
            granted=True,
            decided_by="committee",
            original_complete_due_at=t0 + 7 * day,
            complete_due_at=extended_due,
            decided_at=t0 + 5 * day,
        ),
        completed(case_id, "housing", t0 + 15 * day, extended_due),
        SatisfactionRatedV1(
            case_id=case_id,
            opinion_id=OPINION,
            department_id="housing",
            level="basically_satisfied",
            score=None,
            rated_at=t0 + 16 * day,
            reopen_requested=False,
        ),
    ]
    facts, counters = folded_in_every_order(case_id, events)
    assert facts.complete_due_at == extended_due
    row = {
        "assigned": 1,
        "acknowledged": 1,
        "acknowledged_on_time": 1,
        "completed": 1,
        "completed_on_time": 1,
        "rated": 1,
        "basically_satisfied": 1,
    }
    assert counters == table(
        {("department", "housing", "2025-07"): row, ("city", CITY_KEY, "2025-07"): row}
    )
    kpi = domain.Kpi(
        "department", "housing", "2025-07", counters[("department", "housing", "2025-07")]
    )
    assert (kpi.response_rate, kpi.on_time_completion_rate, kpi.satisfaction_rate) == (1, 1, 1)
    assert kpi.return_rate == 0


def test_the_return_rate_is_returns_made_over_cases_received():
    counts = domain.zero() | {"assigned": 8, "returned": 2}
    assert domain.Kpi("department", "agri", "2025-03", counts).return_rate == 0.25
    assert domain.Kpi("department", "agri", "2025-04", domain.zero()).return_rate is None


def test_marks_survive_the_database_row():
    case_id = uuid4()
    t0 = china(2025, 3, 31, 10)
    facts = fold(
        fold(CaseFacts(case_id), assigned(case_id, "agri", t0, timedelta(1), timedelta(7))),
        returned(case_id, "agri", t0 + timedelta(hours=5)),
    )
    row = facts.as_row()
    assert CaseFacts.from_row(row) == facts
    # As a connection without the jsonb codec returns it (bench/chaos.py).
    assert CaseFacts.from_row(row | {"marks": json.dumps(row["marks"])}) == facts
