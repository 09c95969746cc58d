"""A suggestion's triage is a grouping (a note on each member's receipt), not a stage; a major
problem's triage is still a stage of the opinion's own case."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from services.intake.domain import grouped_note, grouping_of, stage_of
from shared.events import CaseTriagedV1, EventEnvelope

AT = datetime(2025, 3, 3, 1, tzinfo=UTC)


def triaged(classification: str, opinions: int) -> EventEnvelope:
    event = CaseTriagedV1(
        case_id=uuid4(),
        opinion_ids=[uuid4() for _ in range(opinions)],
        classification=classification,
        category_id="traffic",
        town_id="zeguo",
        station_id="zeguo-1",
        proposed_department_id="transport",
        triaged_at=AT,
        triaged_by="routing",
    )
    return EventEnvelope.wrap(event, producer="routing", correlation_id=uuid4())


def test_a_common_problem_triage_is_a_grouping_of_its_members_not_a_stage():
    envelope = triaged("common", 3)
    assert stage_of(envelope) is None
    grouping = grouping_of(envelope)
    assert grouping is not None
    assert grouping.suggestion_case_id == envelope.payload_as(CaseTriagedV1).case_id
    assert [str(o) for o in grouping.opinion_ids] == envelope.payload["opinion_ids"]
    assert grouping.at == AT
    note = grouped_note(grouping.at)
    assert note["kind"] == "grouped"
    assert note["at"] == AT
    assert "汇总" in note["text"]


def test_a_major_problem_triage_stays_a_stage_of_its_own_case():
    envelope = triaged("major", 1)
    assert grouping_of(envelope) is None
    stage = stage_of(envelope)
    assert stage is not None
    assert stage.stage == "triaged"
