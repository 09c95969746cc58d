"""Notification's own Prometheus counters (the shared ones are in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

RECONCILIATIONS = Counter(
    "minyi_notification_reconciliations_total",
    "Attempts whose sender died mid-call, looked up at the provider, by its answer "
    "(found, not_found, unavailable, unsupported).",
    ["provider", "answer"],
)
UNCERTAIN_RESENDS = Counter(
    "minyi_notification_uncertain_resends_total",
    "Messages resent without knowing whether the dead sender's call went out (providers "
    "that cannot be asked, e.g. WeChat; dispatch.resend_uncertain).",
    ["provider"],
)
