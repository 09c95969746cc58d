"""Intake's rules: what an acceptable opinion is, and the receipt a voter gets. No I/O."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import phonenumbers

from shared.events import Channel, OpinionSubmittedV1

# Crockford-style alphabet: no I, L, O, U, so a voter reading it over the phone can't confuse.
RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RECEIPT_LENGTH = 10  # 32**10 ≈ 1.1e15 codes: unguessable at any rate we allow


class InvalidPhone(ValueError):
    pass


def new_receipt_code() -> str:
    raw = "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(RECEIPT_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_mobile(raw: str) -> str:
    """A Chinese mainland mobile number in E.164 (+86…), or InvalidPhone."""
    try:
        number = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if number.country_code != 86 or phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidPhone("not a Chinese mainland mobile number")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid Chinese mainland mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class Opinion:
    opinion_id: UUID
    receipt_code: str
    channel: Channel
    station_id: str
    town_id: str
    category_id: str | None
    deputy_id: str | None
    content: str
    voter_name: str | None
    voter_phone: str | None
    submitted_at: datetime

    def submitted_event(self) -> OpinionSubmittedV1:
        return OpinionSubmittedV1(
            opinion_id=self.opinion_id,
            receipt_code=self.receipt_code,
            channel=self.channel,
            station_id=self.station_id,
            town_id=self.town_id,
            category_id=self.category_id,
            deputy_id=self.deputy_id,
            content=self.content,
            submitted_at=self.submitted_at,
            voter_reachable=self.voter_phone is not None,
        )
