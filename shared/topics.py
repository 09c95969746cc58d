"""Kafka topic names. One topic per aggregate type, keyed by aggregate id."""

from typing import Final

OPINION: Final = "minyi.opinion"  # opinion.* events, key = opinion id
CONTACT: Final = (
    "minyi.contact"  # voter_contact.* (personal data; notification only), key = opinion id
)
CASE: Final = "minyi.case"  # case.* and invitation.* events, key = case id
NOTIFICATION: Final = "minyi.notification"  # notification.* events, key = case id
EVALUATION: Final = "minyi.evaluation"  # rating.*, satisfaction.*, handling.*, key = case id
REFERENCE: Final = "minyi.reference"  # reference.changed, key = kind:id
STATION: Final = "minyi.station"  # station.* (activity records, reception days), key = station id

ALL: Final = (OPINION, CONTACT, CASE, NOTIFICATION, EVALUATION, REFERENCE, STATION)

_BY_AGGREGATE: Final = {
    "opinion": OPINION,
    "contact": CONTACT,
    "case": CASE,
    "notification": NOTIFICATION,
    "evaluation": EVALUATION,
    "reference": REFERENCE,
    "station": STATION,
}


def dead_letter(topic: str) -> str:
    return f"{topic}.dlq"


def for_aggregate(aggregate_type: str) -> str:
    return _BY_AGGREGATE[aggregate_type]
