"""A voter's receipt only moves forward: an opinion gathered into a common-problem suggestion
after its own case was completed stays `completed`; the grouping is a note, and the
suggestion's own stages (even under the member's correlation id and opinion id, as events
published before issue 14 were) appear on no member's receipt."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from shared import topics
from shared.events import CaseAssignedV1, CaseTriagedV1, EventEnvelope
from tests.helpers import eventually, produce_envelope
from tests.integration.intake_support import running_intake
from tests.integration.test_intake_receipts import story

pytestmark = pytest.mark.integration


def suggestion_events(
    members: list[UUID], lead: UUID, correlation: UUID, at: datetime
) -> list[EventEnvelope]:
    """A suggestion's triage (classification common) and its assignment, as routing published
    them before issue 14: under the opening opinion's correlation id, naming the lead."""
    case_id = uuid4()
    place = {"station_id": "taiping-1", "town_id": "taiping", "category_id": "utilities"}
    triaged = EventEnvelope.wrap(
        CaseTriagedV1(
            case_id=case_id,
            opinion_ids=members,
            classification="common",
            proposed_department_id="utilities",
            triaged_at=at,
            triaged_by="routing",
            **place,
        ),
        producer="routing",
        correlation_id=correlation,
    )
    assigned = triaged.caused(
        CaseAssignedV1(
            case_id=case_id,
            opinion_id=lead,
            receipt_code="JY-AAAAA-BBBBB",
            department_id="utilities",
            kind="utilities",
            assigned_at=at + timedelta(minutes=5),
            acknowledge_due_at=at + timedelta(hours=4),
            complete_due_at=at + timedelta(days=1),
            **place,
        ),
        producer="routing",
    )
    return [triaged, assigned]


async def test_a_grouping_after_completion_is_a_note_and_the_stage_stays_completed(
    infra, database_url, topic_prefix
):
    async with running_intake(database_url, topic_prefix) as intake:
        receipts: list[dict[str, Any]] = []
        for n in range(2):
            answer = await intake.http.post(
                "/api/v1/opinions",
                json={
                    "channel": "online",
                    "station_id": "taiping-1",
                    "category_id": "utilities",
                    "content": f"横湖路一带连续三天停水（{n}）",
                },
            )
            assert answer.status_code == 201, answer.text
            receipts.append(answer.json())
        lead_id = UUID(receipts[0]["opinion_id"])
        other_id = UUID(receipts[1]["opinion_id"])
        lead_code = receipts[0]["receipt_code"]
        events = story(lead_id, lead_code)
        case_topic = topic_prefix + topics.CASE
        for name in ("assigned", "acknowledged", "completed"):
            await produce_envelope(case_topic, events[name])
        completed_at = datetime.fromisoformat(events["completed"].payload["completed_at"])
        # Grouped five minutes after the lead's completion; the suggestion carries the other
        # member's correlation id (the opinion whose arrival opened it) and names the lead.
        for envelope in suggestion_events(
            [lead_id, other_id], lead_id, other_id, completed_at + timedelta(minutes=5)
        ):
            await produce_envelope(case_topic, envelope)

        async def all_handled() -> bool:
            # The lead's three events and the suggestion's two (its assignment included).
            return await intake.count("processed_messages") == 5

        await eventually(all_handled, what="intake to handle the five events")
        lead, other = [
            (await intake.http.get(f"/api/v1/receipts/{r['receipt_code']}")).json()
            for r in receipts
        ]
        assert [s["stage"] for s in lead["history"]] == [
            "submitted",
            "assigned",
            "acknowledged",
            "completed",
        ]
        assert lead["stage"] == "completed"
        assert [s["stage"] for s in other["history"]] == ["submitted"]
        for body in (lead, other):
            [note] = body["notes"]
            assert note["kind"] == "grouped"
            assert datetime.fromisoformat(note["at"]) == completed_at + timedelta(minutes=5)
            assert "汇总" in note["text"]
