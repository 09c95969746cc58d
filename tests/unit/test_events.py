from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from shared import topics
from shared.events import (
    CaseAssignedV1,
    Channel,
    EventEnvelope,
    OpinionSubmittedV1,
    envelope_schema,
)


def _opinion() -> OpinionSubmittedV1:
    return OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.WECHAT,
        station_id="taiping-1",
        town_id="taiping",
        content="路灯坏了",
        submitted_at=datetime.now(UTC),
        voter_reachable=True,
    )


def test_envelope_round_trips_through_json_and_keys_by_aggregate():
    opinion = _opinion()
    envelope = EventEnvelope.wrap(opinion, producer="intake", correlation_id=opinion.opinion_id)
    again = EventEnvelope.model_validate_json(envelope.model_dump_json())
    assert again == envelope
    assert again.aggregate_id == str(opinion.opinion_id)
    assert again.is_a(OpinionSubmittedV1)
    assert not again.is_a(CaseAssignedV1)
    assert again.payload_as(OpinionSubmittedV1) == opinion
    assert topics.for_aggregate(again.aggregate_type) == topics.OPINION


def test_caused_events_keep_the_correlation_and_point_to_their_cause():
    opinion = _opinion()
    first = EventEnvelope.wrap(opinion, producer="intake", correlation_id=opinion.opinion_id)
    second = first.caused(opinion, producer="routing")
    assert second.correlation_id == first.correlation_id
    assert second.causation_id == first.event_id
    assert second.event_id != first.event_id


def test_events_carry_no_voter_personal_data():
    fields = set(OpinionSubmittedV1.model_fields)
    assert not {"voter_name", "voter_phone", "phone", "name"} & fields


def test_unknown_fields_are_refused():
    data = _opinion().model_dump()
    data["voter_phone"] = "+8613800138000"
    with pytest.raises(ValidationError):
        OpinionSubmittedV1.model_validate(data)


def test_envelope_schema_types_the_payload():
    schema = envelope_schema(OpinionSubmittedV1).model_json_schema()
    assert schema["properties"]["event_type"]["const"] == "opinion.submitted"
