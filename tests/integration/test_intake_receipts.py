"""The voter's receipt: the case's stage history from routing's and evaluation's events
(idempotent, in any order), and never any personal data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from shared import topics
from shared.events import (
    CaseAcknowledgedV1,
    CaseAssignedV1,
    CaseCompletedV1,
    CaseDeadlineApproachingV1,
    EventEnvelope,
    SatisfactionRatedV1,
)
from tests.helpers import eventually, produce_envelope
from tests.integration.intake_support import running_intake

pytestmark = pytest.mark.integration

PHONE = "13912345678"
NAME = "王小明"


def story(opinion_id: UUID, receipt_code: str) -> dict[str, EventEnvelope]:
    case_id = uuid4()
    t0 = datetime.now(UTC) - timedelta(days=3)
    common = {"department_id": "utilities", "station_id": "taiping-1", "town_id": "taiping"}
    assigned = EventEnvelope.wrap(
        CaseAssignedV1(
            case_id=case_id,
            opinion_id=opinion_id,
            receipt_code=receipt_code,
            category_id="utilities",
            kind="utilities",
            assigned_at=t0,
            acknowledge_due_at=t0 + timedelta(hours=4),
            complete_due_at=t0 + timedelta(days=1),
            **common,
        ),
        producer="routing",
        correlation_id=opinion_id,
    )

    def then(event: Any) -> EventEnvelope:
        return assigned.caused(event, producer="routing")

    return {
        "assigned": assigned,
        "acknowledged": then(
            CaseAcknowledgedV1(
                case_id=case_id,
                category_id="utilities",
                responsible_person="赵科长",
                planned_completion_date=date.today(),
                acknowledged_at=t0 + timedelta(hours=1),
                acknowledge_due_at=t0 + timedelta(hours=4),
                on_time=True,
                **common,
            )
        ),
        "reminder": then(
            CaseDeadlineApproachingV1(
                case_id=case_id,
                department_id="utilities",
                deadline="complete",
                due_at=t0 + timedelta(days=1),
                fired_at=t0 + timedelta(hours=20),
            )
        ),
        "completed": then(
            CaseCompletedV1(
                case_id=case_id,
                opinion_id=opinion_id,
                category_id="utilities",
                completed_at=t0 + timedelta(hours=22),
                complete_due_at=t0 + timedelta(days=1),
                on_time=True,
                result_summary="已抢修供水管道，恢复供水",
                **common,
            )
        ),
        "rated": EventEnvelope.wrap(
            SatisfactionRatedV1(
                case_id=case_id,
                opinion_id=opinion_id,
                department_id="utilities",
                level="satisfied",
                score=5,
                rated_at=t0 + timedelta(days=2),
                reopen_requested=False,
            ),
            producer="evaluation",
            correlation_id=opinion_id,
        ),
    }


async def test_the_receipt_shows_the_stage_history_in_order_and_no_personal_data(
    infra, database_url, topic_prefix
):
    async with running_intake(database_url, topic_prefix) as intake:
        answer = await intake.http.post(
            "/api/v1/opinions",
            json={
                "channel": "online",
                "station_id": "taiping-1",
                "category_id": "utilities",
                "content": "横湖路一带连续三天停水，老人孩子用水困难",
                "voter_phone": PHONE,
                "voter_name": NAME,
            },
        )
        receipt = answer.json()
        code = receipt["receipt_code"]
        events = story(UUID(receipt["opinion_id"]), code)
        case_topic = topic_prefix + topics.CASE
        # Out of order, with duplicates; the rating arrives on its own topic first.
        await produce_envelope(topic_prefix + topics.EVALUATION, events["rated"])
        for name in ("completed", "reminder", "acknowledged", "completed", "assigned"):
            await produce_envelope(case_topic, events[name])
        await produce_envelope(case_topic, events["acknowledged"])

        async def full_history() -> dict[str, Any] | None:
            body: dict[str, Any] = (await intake.http.get(f"/api/v1/receipts/{code}")).json()
            return body if len(body["history"]) == 5 else None

        status = await eventually(full_history, what="the five stages")
        assert [s["stage"] for s in status["history"]] == [
            "submitted",
            "assigned",
            "acknowledged",
            "completed",
            "rated",
        ]
        assert status["stage"] == "rated"
        assert status["history"][3]["detail"]["result_summary"] == "已抢修供水管道，恢复供水"
        assert status["station"]
        assert status["town"] == "太平街道"

        # Each distinct event claimed once (the reminder is not a stage: not even claimed).
        assert await intake.count("processed_messages") == 4
        assert await intake.count("case_stages") == 4  # assigned, acknowledged, completed, rated

        text = (await intake.http.get(f"/api/v1/receipts/{code.lower()}")).text
        for secret in (PHONE, "+86" + PHONE, NAME, "赵科长", "横湖路"):
            assert secret not in text
