"""What the pipeline panel shows of a service's /metrics (Prometheus text format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class PipelineMetrics:
    consumer_lag: dict[str, float] = field(default_factory=dict)  # "group / topic" → lag
    outbox_backlog: float | None = None
    dead_lettered: dict[str, float] = field(default_factory=dict)  # topic → count
    consumed: dict[str, float] = field(default_factory=dict)  # outcome → count
    provider_errors: float | None = None  # None: the service exports no such metric

    @property
    def total_lag(self) -> float | None:
        return sum(self.consumer_lag.values()) if self.consumer_lag else None

    @property
    def total_dead_lettered(self) -> float:
        return sum(self.dead_lettered.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "consumer_lag": self.consumer_lag,
            "total_lag": self.total_lag,
            "outbox_backlog": self.outbox_backlog,
            "dead_lettered": self.dead_lettered,
            "total_dead_lettered": self.total_dead_lettered,
            "consumed": self.consumed,
            "provider_errors": self.provider_errors,
        }


def _is_provider_error(name: str) -> bool:
    return "provider" in name and ("error" in name or "fail" in name)


def parse_metrics(text: str) -> PipelineMetrics:
    """Consumer lag (per group/topic), outbox backlog, dead letters (per topic), consumed
    events by outcome and provider errors (any `*provider*error*`/`*provider*fail*` counter)."""
    out = PipelineMetrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name.endswith(("_created", "_bucket", "_count", "_sum")):
                continue
            if name == "minyi_consumer_lag":
                key = f"{labels.get('group', '?')} / {labels.get('topic', '?')}"
                out.consumer_lag[key] = out.consumer_lag.get(key, 0.0) + value
            elif name == "minyi_outbox_backlog":
                out.outbox_backlog = (out.outbox_backlog or 0.0) + value
            elif name == "minyi_dead_lettered_total":
                topic = labels.get("topic", "?")
                out.dead_lettered[topic] = out.dead_lettered.get(topic, 0.0) + value
            elif name == "minyi_events_consumed_total":
                outcome = labels.get("outcome", "?")
                out.consumed[outcome] = out.consumed.get(outcome, 0.0) + value
            elif _is_provider_error(name):
                out.provider_errors = (out.provider_errors or 0.0) + value
    return out
