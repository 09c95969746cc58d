"""Kafka topic names. One topic per aggregate type, keyed by aggregate id."""

from typing import Final

OPINION: Final = "minyi.opinion"  # opinion.* events, key = opinion id
CASE: Final = "minyi.case"  # case.* events, key = case id
NOTIFICATION: Final = "minyi.notification"  # notification.* events, key = case id

ALL: Final = (OPINION, CASE, NOTIFICATION)


def dead_letter(topic: str) -> str:
    return f"{topic}.dlq"


def for_aggregate(aggregate_type: str) -> str:
    return {"opinion": OPINION, "case": CASE, "notification": NOTIFICATION}[aggregate_type]
