from datetime import UTC, datetime, time, timedelta
from uuid import uuid4

import pytest

from services.notification import domain, reconciliation
from services.notification.delivery_rules import (
    BreakerSettings,
    CircuitBreaker,
    DispatchSettings,
    QuietHoursSettings,
    RateLimit,
    next_allowed,
    quiet_until,
)
from services.notification.providers import Lookup
from services.notification.templates import (
    PARAM_MAX_CHARS,
    TEMPLATES,
    build_params,
    clean_param,
    render,
    sms_segments,
)
from shared.events import (
    CaseAssignedV1,
    CaseCompletedV1,
    CaseEscalatedV1,
    Channel,
    EventEnvelope,
    NotificationSentV1,
    OpinionSubmittedV1,
)

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


def _assigned() -> EventEnvelope:
    event = CaseAssignedV1(
        case_id=uuid4(),
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        department_id="transport",
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
        kind="general",
        assigned_at=NOW,
        acknowledge_due_at=NOW + timedelta(days=1),
        complete_due_at=NOW + timedelta(days=9),
    )
    return EventEnvelope.wrap(event, producer="routing", correlation_id=uuid4())


def test_a_new_case_tells_its_department_by_sms_once():
    envelope = _assigned()
    planned = [p for p in domain.plan_deliveries(envelope) if p.recipient_kind == "department"]
    assert [(p.recipient_kind, p.recipient_ref, p.channel) for p in planned] == [
        ("department", "transport", "sms")
    ]
    assert planned[0].params == {
        "receipt_code": "ABCDE-FGHJK",
        "acknowledge_due": "03月04日09:00",
        "complete_due": "03月12日09:00",
    }
    again = [p for p in domain.plan_deliveries(envelope) if p.recipient_kind == "department"]
    assert again[0].delivery_id == planned[0].delivery_id


def test_the_voter_hears_by_wechat_when_opted_in_else_by_sms():
    envelope = _assigned()
    wechat = domain.Directory(voter=domain.VoterReach(has_phone=True, has_wechat=True))
    sms = domain.Directory(voter=domain.VoterReach(has_phone=True, has_wechat=False))
    nobody = domain.Directory(voter=domain.VoterReach(has_phone=False, has_wechat=False))

    def voter(d: domain.Directory) -> list[tuple[str, str]]:
        return [
            (p.channel, p.template)
            for p in domain.plan_deliveries(envelope, d)
            if p.recipient_kind == "voter"
        ]

    assert voter(wechat) == [("wechat", "case_assigned_voter")]
    assert voter(sms) == [("sms", "case_assigned_voter")]
    assert voter(nobody) == []


def test_an_opinion_tells_the_voter_and_the_station_staff():
    opinion = OpinionSubmittedV1(
        opinion_id=uuid4(),
        receipt_code="ABCDE-FGHJK",
        channel=Channel.ONLINE,
        station_id="zeguo-1",
        town_id="zeguo",
        category_id="traffic",
        content="路灯坏了",
        submitted_at=NOW,
        voter_reachable=True,
    )
    envelope = EventEnvelope.wrap(opinion, producer="intake", correlation_id=uuid4())
    directory = domain.Directory(station_staff={"zeguo-1": ["zeguo-1/head", "zeguo-1/deputy-1"]})
    planned = domain.plan_deliveries(envelope, directory)
    assert sorted((p.recipient_kind, p.recipient_ref) for p in planned) == [
        ("station_staff", "zeguo-1/deputy-1"),
        ("station_staff", "zeguo-1/head"),
        ("voter", str(opinion.opinion_id)),
    ]
    assert "路灯坏了" not in repr([p.params for p in planned])  # the content is not sent on


def test_escalation_tells_the_committee_urgently():
    event = CaseEscalatedV1(
        case_id=uuid4(), department_id="transport", deadline="complete", due_at=NOW, fired_at=NOW
    )
    envelope = EventEnvelope.wrap(event, producer="routing", correlation_id=uuid4())
    planned = domain.plan_deliveries(envelope, domain.Directory(committee=["committee/director"]))
    assert [(p.recipient_kind, p.template, p.urgent) for p in planned] == [
        ("committee", "case_escalated_committee", True)
    ]


def test_events_without_recipients_plan_nothing():
    sent = NotificationSentV1(
        delivery_id=uuid4(),
        case_id=uuid4(),
        source_event_id=uuid4(),
        recipient_kind="department",
        recipient_ref="transport",
        channel="sms",
        template="case_assigned_department",
        provider="console",
        provider_message_id=None,
        sent_at=datetime.now(UTC),
    )
    envelope = EventEnvelope.wrap(sent, producer="notification", correlation_id=uuid4())
    assert domain.plan_deliveries(envelope) == []


def test_every_rule_has_a_template_code_for_every_provider():
    codes = domain.TemplateSettings()
    for rule in domain.RULES:
        assert rule.template in TEMPLATES
        for provider in ("aliyun", "tencent", "wechat"):
            assert codes.code_for(provider, rule.template) != rule.template


def test_params_are_cleaned_and_clipped_so_nothing_can_be_injected():
    nasty = "已修复}【其他签名】{receipt_code}\n点击 http://evil.example 领奖" + "很" * 50
    cleaned = clean_param(nasty)
    assert len(cleaned) <= PARAM_MAX_CHARS
    assert not set("【】{}\n") & set(cleaned)
    completed = CaseCompletedV1(
        case_id=uuid4(),
        opinion_id=uuid4(),
        department_id="transport",
        station_id="zeguo-1",
        town_id="zeguo",
        category_id=None,
        completed_at=NOW,
        complete_due_at=NOW,
        on_time=True,
        result_summary=nasty,
    )
    envelope = EventEnvelope.wrap(completed, producer="routing", correlation_id=uuid4())
    planned = domain.plan_deliveries(envelope)
    text = render(planned[0].template, planned[0].params)
    assert text.count("【") == 1  # only our signature
    assert "{" not in text


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_fits_few_sms_segments_even_with_the_longest_params(name: str):
    template = TEMPLATES[name]
    longest = {p: "测" * PARAM_MAX_CHARS for p in template.params}
    text = render(name, build_params(name, longest))
    assert sms_segments(text) <= 3, (name, len(text))
    assert sms_segments(render(name, {p: "短" for p in template.params})) == 1


def test_retry_delay_grows_is_capped_and_jittered():
    s = domain.DispatchSettings(backoff_base_s=2, backoff_max_s=30, jitter=0.5)
    top = [domain.retry_delay(n, s, lambda: 1.0).total_seconds() for n in range(1, 7)]
    assert top == [2, 4, 8, 16, 30, 30]
    low = [domain.retry_delay(n, s, lambda: 0.0).total_seconds() for n in range(1, 7)]
    assert low == [1, 2, 4, 8, 15, 15]


def test_rate_limits_say_when_the_next_message_may_go():
    limits = [RateLimit(window_s=60, max_count=1), RateLimit(window_s=3600, max_count=5)]
    assert next_allowed([], NOW, limits) is None
    assert next_allowed([NOW - timedelta(seconds=10)], NOW, limits) == NOW + timedelta(seconds=50)
    five = [NOW - timedelta(minutes=m) for m in (50, 40, 30, 20, 10)]
    assert next_allowed(five, NOW, limits) == NOW + timedelta(minutes=10)
    assert next_allowed([NOW - timedelta(minutes=2)], NOW, limits) is None


def test_quiet_hours_hold_voter_messages_until_eight_in_the_morning():
    s = QuietHoursSettings()

    def at(h: int, m: int = 0) -> datetime:
        return datetime(2025, 3, 3, h, m, tzinfo=domain.CHINA)

    assert quiet_until(at(12), s) is None
    assert quiet_until(at(20, 59), s) is None
    assert quiet_until(at(21), s) == datetime(2025, 3, 4, 8, 0, tzinfo=domain.CHINA)
    assert quiet_until(at(3), s) == datetime(2025, 3, 3, 8, 0, tzinfo=domain.CHINA)
    assert quiet_until(at(8), s) is None
    assert quiet_until(at(22), QuietHoursSettings(enabled=False)) is None
    day = QuietHoursSettings(start=time(12), end=time(13))
    assert quiet_until(at(12, 30), day) == at(13)


def test_breaker_opens_on_outages_waits_then_probes():
    now = [NOW]
    breaker = CircuitBreaker(
        "aliyun", BreakerSettings(failure_threshold=2, open_s=10), lambda: now[0]
    )
    assert breaker.blocked_until() is None
    assert not breaker.record(success=False, outage=True)
    assert breaker.record(success=False, outage=True)
    assert breaker.state == "open"
    assert breaker.blocked_until() == NOW + timedelta(seconds=10)
    now[0] = NOW + timedelta(seconds=11)
    assert breaker.blocked_until() is None  # the probe
    assert breaker.blocked_until() is not None  # one probe at a time
    assert breaker.record(success=False, outage=True)  # reopened, for longer
    assert breaker.opened_until == now[0] + timedelta(seconds=20)
    now[0] += timedelta(seconds=21)
    assert breaker.blocked_until() is None
    breaker.record(success=True, outage=False)
    assert breaker.state == "closed"
    # A business error (bad number) says the provider is up: it does not count.
    breaker.record(success=False, outage=True)
    breaker.record(success=False, outage=False)
    assert breaker.failures == 0


# ---- reconciliation: an attempt whose sender died mid-call ---------------------------------

STARTED = NOW - timedelta(seconds=30)


def _decide(lookup: Lookup, now: datetime = NOW, **settings: object) -> reconciliation.Decision:
    return reconciliation.decide(
        lookup,
        started_at=STARTED,
        now=now,
        settings=DispatchSettings(reconcile_grace_s=60, jitter=0, **settings),
        failed_lookups=2,
        rand=lambda: 0.5,
    )


def test_found_at_the_provider_is_recorded_sent_whatever_its_age():
    assert _decide(Lookup.found("5000:1")).action == "record_sent"
    assert _decide(Lookup.found(None), now=STARTED).action == "record_sent"


def test_not_found_is_final_only_after_the_grace():
    young = _decide(Lookup.not_found())
    assert (young.action, young.until) == ("wait", STARTED + timedelta(seconds=60))
    assert _decide(Lookup.not_found(), now=STARTED + timedelta(seconds=60)).action == "send"
    grace_zero = reconciliation.decide(
        Lookup.not_found(),
        started_at=NOW,
        now=NOW,
        settings=DispatchSettings(reconcile_grace_s=0),
    )
    assert grace_zero.action == "send"


def test_a_failed_query_is_asked_again_after_the_usual_backoff_never_sent():
    for failure in (
        Lookup.unavailable("ServiceUnavailable", outage=True),
        Lookup.unavailable("Throttling.User"),
    ):
        decision = _decide(failure, backoff_base_s=2.0, backoff_max_s=600)
        assert decision.action == "ask_again"
        # The third failed query: base · 2² (no jitter here).
        assert decision.until == NOW + timedelta(seconds=8)


def test_a_provider_that_cannot_be_asked_falls_back_to_resend_uncertain():
    wechat = Lookup.unsupported("WeChat has no API to look a sent message up")
    assert _decide(wechat).action == "resend_blind"
    assert _decide(wechat, resend_uncertain=False).action == "give_up"


def test_out_id_names_the_delivery_and_the_attempt():
    delivery = uuid4()
    value = reconciliation.out_id(delivery, 3)
    assert value != reconciliation.out_id(delivery, 4)
    assert reconciliation.parse_out_id(value) == (delivery, 3)
    for other in (None, "", str(delivery), "x:1", f"{delivery}:", f"{delivery}:a"):
        assert reconciliation.parse_out_id(other) is None
