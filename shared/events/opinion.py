"""Events of the opinion aggregate (owned by intake)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from shared.events.envelope import Event


class Channel(StrEnum):
    """How an opinion reached a liaison station (线上+线下)."""

    STATION_RECEPTION = "station_reception"  # 坐诊: reception day at a station
    DEPUTY_VISIT = "deputy_visit"  # 出诊: deputies visiting voters
    JOINT_SESSION = "joint_session"  # 会诊: with departments
    MAILBOX = "mailbox"  # 代表信箱
    ONLINE = "online"  # 网上代表联络站 / web form
    WECHAT = "wechat"
    HOTLINE = "hotline"


class OpinionSubmittedV1(Event):
    """A voter's opinion was accepted and given a receipt.

    Carries no voter name or phone: consumers that must reach the voter ask intake.
    """

    event_type: ClassVar[str] = "opinion.submitted"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "opinion"

    opinion_id: UUID
    receipt_code: str
    channel: Channel
    station_id: str
    town_id: str
    category_id: str | None = None
    deputy_id: str | None = None
    content: str = Field(description="The opinion's text, as the voter gave it.")
    submitted_at: AwareDatetime
    voter_reachable: bool = Field(description="Whether the voter left a phone number.")

    def aggregate_id(self) -> str:
        return str(self.opinion_id)


class VoterContactRecordedV1(Event):
    """How to reach the voter of one opinion. Personal data: on the restricted topic
    `minyi.contact`, read by notification only, never logged."""

    event_type: ClassVar[str] = "voter_contact.recorded"
    event_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "contact"

    opinion_id: UUID
    phone_e164: str | None = None
    wechat_openid: str | None = None
    wechat_opted_in: bool = False

    def aggregate_id(self) -> str:
        return str(self.opinion_id)
