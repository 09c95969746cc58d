"""Pure parts of the chaos ledger (bench/chaos.py): what counts as a duplicate at the provider,
and the per-kind recovery summary."""

from __future__ import annotations

from bench.chaos import FaultLog, provider_duplicates


def _sms(receipt: str, out_id: str, phone: str = "13800000000") -> dict[str, object]:
    return {
        "phone_numbers": phone,
        "template_code": "SMS_100000001",
        "template_param": {"receipt_code": receipt, "department": "交通运输局"},
        "out_id": out_id,
    }


def test_the_same_message_to_the_same_recipient_twice_is_a_duplicate_whatever_the_out_id() -> None:
    sent = [
        _sms("R1", "d1:1"),
        _sms("R1", "d1:2"),  # the same delivery, a second attempt
        _sms("R2", "d2"),
        _sms("R2", "d3"),  # a second delivery planned for the same case
        _sms("R3", "d4"),
        _sms("R3", "d5", phone="13900000000"),  # another recipient: not a duplicate
    ]
    assert provider_duplicates(sent) == 2
    assert provider_duplicates([_sms("R1", "d1"), _sms("R2", "d2")]) == 0


def test_fault_log_summarises_recovery_per_kind() -> None:
    log = FaultLog()
    log.record("sigkill_service", "intake", 10.0)
    log.record("sigkill_service", "routing", 12.0)
    log.record("sigkill_service", "intake", 11.0)
    log.record("network_latency", "kafka", None, "+500±250 ms for 12 s")
    log.record("poison_message", "minyi.case", None)

    kinds = log.by_kind()
    assert kinds["sigkill_service"] == {
        "count": 3,
        "targets": {"intake": 2, "routing": 1},
        "recovered_max_s": 12.0,
        "recovered_median_s": 11.0,
    }
    assert kinds["network_latency"]["recovered_max_s"] is None
    assert log.recoveries[3]["detail"] == "+500±250 ms for 12 s"
    assert dict(log.counts) == {"sigkill_service": 3, "network_latency": 1, "poison_message": 1}
