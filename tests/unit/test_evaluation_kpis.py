"""KPIs from per-case facts: any order and any duplicate give the same facts and counters.

`generate_story` is also used by the integration replay test.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

from services.evaluation import domain
from services.evaluation.domain import CITY_KEY, CaseFacts, Kpi, fold
from services.evaluation.handlers import _case_event
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseClosedV1,
    CaseCompletedV1,
    CaseExtensionDecidedV1,
    CaseOverdueV1,
    CaseReopenedV1,
    CaseReturnedV1,
    Event,
    EventEnvelope,
    NotificationSentV1,
    SatisfactionRatedV1,
)

DEPARTMENTS = ["transport", "utilities", "housing", "health", "education"]
STATIONS = [("zeguo-1", "zeguo"), ("taiping-1", "taiping"), ("songmen-1", "songmen")]
CATEGORIES = ["traffic", "utilities", "housing", None]
LEVELS = ["satisfied", "basically_satisfied", "unsatisfied"]


def _case_story(rng: random.Random, case_id: UUID) -> list[EventEnvelope]:
    """One case's events (in their natural order), with random outcomes."""
    correlation, opinion_id = uuid4(), uuid4()
    dept = rng.choice(DEPARTMENTS)
    station, town = rng.choice(STATIONS)
    category = rng.choice(CATEGORIES)
    # Assigned in Jan–Mar 2025, some near a month's edge in China's time.
    at = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(0, 89 * 24 * 60))
    ack_due, done_due = at + timedelta(days=1), at + timedelta(days=9)
    out: list[EventEnvelope] = []

    def add(event: object, when: datetime) -> None:
        assert isinstance(event, Event)
        out.append(
            EventEnvelope.wrap(event, producer="test", correlation_id=correlation, occurred_at=when)
        )

    dims = {"department_id": dept, "station_id": station, "town_id": town, "category_id": category}
    add(
        CaseAssignedV1(
            case_id=case_id,
            opinion_id=opinion_id,
            receipt_code="ABCDE-FGHJK",
            kind="general",
            assigned_at=at,
            acknowledge_due_at=ack_due,
            complete_due_at=done_due,
            **dims,
        ),
        at,
    )
    for n in range(rng.randrange(0, 3)):
        add(
            NotificationSentV1(
                delivery_id=uuid4(),
                case_id=case_id,
                source_event_id=out[0].event_id,
                recipient_kind="department",
                recipient_ref=f"{dept}-{n}",
                channel="sms",
                template="case_assigned_department",
                provider="console",
                provider_message_id=None,
                sent_at=at + timedelta(minutes=n + 1),
            ),
            at,
        )
    if rng.random() < 0.1:
        t = at + timedelta(hours=3)
        add(CaseReturnedV1(case_id=case_id, reason="not ours", returned_at=t, **dims), t)
        dept = rng.choice(DEPARTMENTS)
        dims["department_id"] = dept
        t2 = t + timedelta(hours=1)
        add(
            CaseAssignedV1(
                case_id=case_id,
                opinion_id=opinion_id,
                receipt_code="ABCDE-FGHJK",
                kind="general",
                assigned_at=t2,
                acknowledge_due_at=t2 + timedelta(days=1),
                complete_due_at=t2 + timedelta(days=9),
                **dims,
            ),
            t2,
        )
    if rng.random() < 0.85:
        late = rng.random() < 0.2
        t = at + timedelta(hours=30 if late else 5)
        if late:
            add(
                CaseOverdueV1(
                    case_id=case_id,
                    deadline="acknowledge",
                    due_at=ack_due,
                    fired_at=ack_due,
                    **dims,
                ),
                ack_due,
            )
        add(
            CaseAcknowledgedV1(
                case_id=case_id,
                responsible_person="张科长",
                planned_completion_date=date(2025, 4, 30),
                acknowledged_at=t,
                acknowledge_due_at=ack_due,
                on_time=not late,
                **dims,
            ),
            t,
        )
        if rng.random() < 0.1:
            t = t + timedelta(days=2)
            granted = rng.random() < 0.7
            add(
                CaseExtensionDecidedV1(
                    case_id=case_id,
                    department_id=dept,
                    granted=granted,
                    decided_by="committee",
                    original_complete_due_at=done_due,
                    complete_due_at=done_due + timedelta(days=7 if granted else 0),
                    decided_at=t,
                ),
                t,
            )
        if rng.random() < 0.8:
            on_time = rng.random() < 0.75
            t = at + timedelta(days=5 if on_time else 12)
            if not on_time:
                add(
                    CaseOverdueV1(
                        case_id=case_id,
                        deadline="complete",
                        due_at=done_due,
                        fired_at=done_due,
                        **dims,
                    ),
                    done_due,
                )
            completed = dict(
                case_id=case_id,
                opinion_id=opinion_id,
                complete_due_at=done_due,
                result_summary="已处理",
                **dims,
            )
            add(CaseCompletedV1(completed_at=t, on_time=on_time, **completed), t)
            if rng.random() < 0.7:
                level = rng.choice(LEVELS)
                t = t + timedelta(days=1)
                add(
                    SatisfactionRatedV1(
                        case_id=case_id,
                        opinion_id=opinion_id,
                        department_id=dept,
                        level=level,
                        score=None,
                        rated_at=t,
                        reopen_requested=level == "unsatisfied",
                    ),
                    t,
                )
                if level == "unsatisfied" and rng.random() < 0.8:
                    t = t + timedelta(hours=2)
                    add(
                        CaseReopenedV1(
                            case_id=case_id,
                            department_id=dept,
                            reason="voter unsatisfied",
                            reopened_at=t,
                            complete_due_at=t + timedelta(days=7),
                        ),
                        t,
                    )
                    if rng.random() < 0.6:
                        t = t + timedelta(days=rng.choice((3, 9)))
                        add(
                            CaseCompletedV1(
                                completed_at=t, on_time=rng.random() < 0.5, **completed
                            ),
                            t,
                        )
            if rng.random() < 0.5:
                t = t + timedelta(days=3)
                add(CaseClosedV1(case_id=case_id, department_id=dept, closed_at=t), t)
    return out


def generate_story(n_events: int, *, seed: int = 6) -> list[EventEnvelope]:
    """Exactly `n_events` events of many cases, each case's events in their natural order."""
    rng = random.Random(seed)
    events: list[EventEnvelope] = []
    while len(events) < n_events:
        events.extend(_case_story(rng, UUID(int=rng.getrandbits(128))))
    return events[:n_events]


def replay(
    events: list[EventEnvelope],
) -> tuple[dict[UUID, CaseFacts], dict[tuple[str, str, str], dict[str, int]]]:
    """Fold events with an in-memory inbox and incremental counters, as the store does."""
    seen: set[UUID] = set()
    facts: dict[UUID, CaseFacts] = {}
    counters: dict[tuple[str, str, str], dict[str, int]] = {}
    for envelope in events:
        if envelope.event_id in seen:
            continue
        seen.add(envelope.event_id)
        found = _case_event(envelope)
        assert found is not None
        case_id, event = found
        before = facts.get(case_id, CaseFacts(case_id))
        after = fold(before, event)
        facts[case_id] = after
        for key, change in domain.delta(before, after).items():
            row = counters.setdefault(key, domain.zero())
            for m, v in change.items():
                row[m] += v
    return facts, {k: v for k, v in counters.items() if any(v.values())}


def test_5000_events_in_order_shuffled_and_twice_give_the_same_kpis() -> None:
    events = generate_story(5000)
    assert len(events) == 5000
    in_order = replay(events)
    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    twice = [e for e in events for _ in range(2)]
    random.Random(2).shuffle(twice)
    assert replay(shuffled) == in_order
    assert replay(twice) == in_order
    facts, counters = in_order
    assert counters == domain.recount(facts.values())
    city = {k: v for k, v in counters.items() if k[0] == "city"}
    assert {k[2] for k in city} <= {"2025-01", "2025-02", "2025-03", "2025-04"}
    total = {m: sum(v[m] for v in city.values()) for m in domain.METRICS}
    assert total["assigned"] == len(facts) - sum(1 for f in facts.values() if f.assigned_at is None)
    assert 0 < total["completed"] < total["assigned"]
    assert total["reopened"] > 0
    assert total["returned"] > 0
    assert total["overdue"] > 0
    assert (
        total["satisfied"] + total["basically_satisfied"] + total["unsatisfied"] == total["rated"]
    )


def _assigned(case_id: UUID, at: datetime, dept: str = "transport") -> CaseAssignedV1:
    return CaseAssignedV1(
        case_id=case_id,
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        department_id=dept,
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
        kind="general",
        assigned_at=at,
        acknowledge_due_at=at + timedelta(days=1),
        complete_due_at=at + timedelta(days=9),
    )


def test_reopening_undoes_completion_until_completed_again() -> None:
    case_id = uuid4()
    at = datetime(2025, 3, 3, 1, tzinfo=UTC)
    base = fold(CaseFacts(case_id), _assigned(case_id, at))
    completed = CaseCompletedV1(
        case_id=case_id,
        opinion_id=uuid4(),
        department_id="transport",
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
        completed_at=at + timedelta(days=2),
        complete_due_at=at + timedelta(days=9),
        on_time=True,
        result_summary="已修复",
    )
    reopened = CaseReopenedV1(
        case_id=case_id,
        department_id="transport",
        reason="不满意",
        reopened_at=at + timedelta(days=3),
        complete_due_at=at + timedelta(days=10),
    )
    done = fold(base, completed)
    assert domain.case_counts(done)["completed_on_time"] == 1
    again = fold(done, reopened)
    assert domain.case_counts(again)["completed"] == 0
    assert domain.case_counts(again)["reopened"] == 1
    change = domain.delta(done, again)
    assert change[("city", CITY_KEY, "2025-03")]["completed"] == -1
    late = completed.model_copy(update={"completed_at": at + timedelta(days=12), "on_time": False})
    final = fold(again, late)
    assert domain.case_counts(final)["completed"] == 1
    assert domain.case_counts(final)["completed_on_time"] == 0


def test_the_month_is_china_time_and_the_latest_event_names_the_department() -> None:
    case_id = uuid4()
    at = datetime(2025, 2, 28, 17, tzinfo=UTC)  # 2025-03-01 01:00 in Wenling
    facts = fold(CaseFacts(case_id), _assigned(case_id, at + timedelta(hours=2), "housing"))
    facts = fold(facts, _assigned(case_id, at, "transport"))
    assert facts.month == "2025-03"
    assert facts.department_id == "housing"  # the later assignment
    assert facts.assigned_at == at  # the first
    keys = {k[:2] for k in domain.counter_keys(facts)}
    # Each department that held the case has a row (its own assignment's figures).
    assert keys == {
        ("city", CITY_KEY),
        ("department", "housing"),
        ("department", "transport"),
        ("station", "zeguo-1"),
        ("town", "zeguo"),
        ("category", "traffic"),
    }


def test_rates() -> None:
    counts = domain.zero() | {
        "assigned": 10,
        "acknowledged_on_time": 8,
        "completed": 5,
        "completed_on_time": 4,
        "rated": 4,
        "satisfied": 2,
        "basically_satisfied": 1,
        "unsatisfied": 1,
    }
    kpi = Kpi("city", CITY_KEY, "2025-03", counts)
    assert kpi.response_rate == 0.8
    assert kpi.completion_rate == 0.5
    assert kpi.on_time_completion_rate == 0.8
    assert kpi.satisfaction_rate == 0.75
    assert Kpi("city", CITY_KEY, "2025-03", domain.zero()).satisfaction_rate is None
