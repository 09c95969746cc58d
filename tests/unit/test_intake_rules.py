from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from services.intake import importer
from services.intake.domain import (
    Opinion,
    ReferenceSnapshot,
    request_fingerprint,
    stage_of,
)
from shared.events import (
    CaseCompletedV1,
    CaseDeadlineApproachingV1,
    Channel,
    EventEnvelope,
    OpinionSubmittedV1,
    VoterContactRecordedV1,
)

SNAPSHOT = ReferenceSnapshot(
    station_towns={"zeguo-1": "zeguo"},
    categories=frozenset({"traffic"}),
    deputies=frozenset({"dep-002"}),
)
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def opinion(**extra) -> Opinion:
    values = {
        "opinion_id": uuid4(),
        "receipt_code": "ABCDE-FGHJK",
        "channel": Channel.ONLINE,
        "station_id": "zeguo-1",
        "town_id": "zeguo",
        "category_id": None,
        "deputy_id": None,
        "content": "路灯坏了很久",
        "voter_name": "王小明",
        "voter_phone": None,
        "submitted_at": NOW,
        **extra,
    }
    return Opinion(**values)


def test_the_contact_event_comes_only_with_a_phone_or_openid_and_never_the_name():
    assert [e.event_type for e in opinion().envelopes()] == ["opinion.submitted"]
    submitted, contact = opinion(voter_phone="+8613800138000").envelopes()
    assert contact.is_a(VoterContactRecordedV1)
    assert contact.aggregate_type == "contact"
    assert contact.causation_id == submitted.event_id
    assert contact.correlation_id == submitted.correlation_id
    assert "+8613800138000" not in submitted.model_dump_json()
    assert "王小明" not in submitted.model_dump_json() + contact.model_dump_json()
    _, by_wechat = opinion(wechat_openid="o9AgO5Kd5ggOC").envelopes()
    assert by_wechat.payload_as(VoterContactRecordedV1).wechat_opted_in
    assert by_wechat.payload_as(VoterContactRecordedV1).phone_e164 is None
    assert submitted.payload_as(OpinionSubmittedV1).voter_reachable


def test_reference_problems_name_each_unknown_field():
    problems = SNAPSHOT.problems(station_id="x", category_id="y", deputy_id="dep-002")
    assert [p.field for p in problems] == ["station_id", "category_id"]
    assert SNAPSHOT.problems(station_id="zeguo-1", category_id=None, deputy_id=None) == []


def test_request_fingerprints_ignore_key_order_only():
    assert request_fingerprint({"a": 1, "b": "二"}) == request_fingerprint({"b": "二", "a": 1})
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})


def test_stages_come_from_case_events_and_reminders_are_not_shown():
    case_id, opinion_id = uuid4(), uuid4()
    completed = EventEnvelope.wrap(
        CaseCompletedV1(
            case_id=case_id,
            opinion_id=opinion_id,
            department_id="transport",
            station_id="zeguo-1",
            town_id="zeguo",
            category_id=None,
            completed_at=NOW,
            complete_due_at=NOW + timedelta(days=1),
            on_time=True,
            result_summary="已调整信号灯配时",
        ),
        producer="routing",
        correlation_id=opinion_id,
    )
    stage = stage_of(completed)
    assert stage is not None
    assert (stage.stage, stage.case_id, stage.opinion_ids) == ("completed", case_id, (opinion_id,))
    reminder = EventEnvelope.wrap(
        CaseDeadlineApproachingV1(
            case_id=case_id, department_id="t", deadline="complete", due_at=NOW, fired_at=NOW
        ),
        producer="routing",
        correlation_id=opinion_id,
    )
    assert stage_of(reminder) is None


def prepare(values: dict[str, Any], **kw: str) -> Opinion | importer.Rejected:
    return importer.prepare(
        7,
        values,
        snapshot=SNAPSHOT,
        default_station=kw.get("station"),
        file_key="f" * 32,
        entered_by="import:test.csv",
        now=NOW,
    )


def test_an_import_row_becomes_an_opinion_with_a_row_key():
    made = prepare({"content": "红绿灯时间太短", "voter_phone": "13800138000"}, station="zeguo-1")
    assert isinstance(made, Opinion)
    assert made.import_key == "file:" + "f" * 32 + ":7"
    assert made.channel is Channel.STATION_RECEPTION
    assert made.voter_phone == "+8613800138000"
    by_id = prepare({"content": "红绿灯时间太短", "station_id": "zeguo-1", "external_id": "A-9"})
    assert isinstance(by_id, Opinion)
    assert by_id.import_key == "ext:A-9"
    local = prepare(
        {"content": "红绿灯时间太短", "occurred_at": "2026-03-02 09:30"}, station="zeguo-1"
    )
    assert isinstance(local, Opinion)
    assert local.submitted_at == datetime(2026, 3, 2, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"content": "短"}, "content"),
        ({"content": "红绿灯时间太短", "voter_phone": "12345"}, "voter_phone"),
        ({"content": "红绿灯时间太短", "channel": "online"}, "channel"),
        ({"content": "红绿灯时间太短", "category_id": "nope"}, "category_id: unknown id"),
        ({"content": "红绿灯时间太短", "occurred_at": "2999-01-01"}, "future"),
        ({"content": "红绿灯时间太短", "station_id": "atlantis"}, "station_id: unknown id"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(values, reason):
    made = prepare(values, station="zeguo-1")
    assert isinstance(made, importer.Rejected)
    assert made.row == 7
    assert reason in made.reason


def test_files_with_unknown_columns_are_refused(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_text("content,phone\n路灯坏了很久,1\n", encoding="utf-8")
    with pytest.raises(importer.UnreadableFile, match="phone"):
        list(importer.read_rows(path))
    with pytest.raises(importer.UnreadableFile):
        list(importer.read_rows(tmp_path / "x.txt"))
