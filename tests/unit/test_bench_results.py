"""`make bench` results: each part keeps the time it was measured, across partial runs."""

from typing import Any

from bench.run import merge_results, stamp


def test_a_partial_run_keeps_the_other_parts_with_their_own_time():
    previous: dict[str, Any] = {
        "when": "2026-11-27T16:32:00+00:00",
        "intake": {"p99_ms": 212},
        "kpi": {"p99_ms": 4.1},
        "measured_at": {"intake": "2026-11-27T16:40:00+00:00", "kpi": "2026-11-27T16:55:00+00:00"},
    }
    new: dict[str, Any] = {"when": "2026-11-28T05:00:00+00:00"}
    merged = merge_results(previous, new)
    merged["intake"] = {"p99_ms": 99}
    stamp(merged, "intake")
    assert merged["when"] == "2026-11-28T05:00:00+00:00"
    assert merged["kpi"] == {"p99_ms": 4.1}
    assert merged["measured_at"]["kpi"] == "2026-11-27T16:55:00+00:00"
    assert merged["measured_at"]["intake"] > "2026-11-28"
    assert previous["measured_at"]["intake"] == "2026-11-27T16:40:00+00:00"  # not mutated
