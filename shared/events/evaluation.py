"""Evaluation events: ratings, evaluations of handling (评议), rating invitations."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime

from shared.events.envelope import Event


class _EvaluationEvent(Event):
    aggregate_type: ClassVar[str] = "evaluation"
    event_version: ClassVar[int] = 1

    case_id: UUID

    def aggregate_id(self) -> str:
        return str(self.case_id)


class RatingInvitedV1(_EvaluationEvent):
    """A completed case's voter may rate it, by this one-time link, until `expires_at`."""

    event_type: ClassVar[str] = "rating.invited"
    opinion_id: UUID
    rating_url: str
    expires_at: AwareDatetime


class SatisfactionRatedV1(_EvaluationEvent):
    """The voter rated the handling (满意/基本满意/不满意).

    level: satisfied | basically_satisfied | unsatisfied.
    """

    event_type: ClassVar[str] = "satisfaction.rated"
    opinion_id: UUID
    department_id: str | None
    level: str
    score: int | None  # 1–5 when given
    rated_at: AwareDatetime
    reopen_requested: bool  # 不满意: routing reopens the case (at most once)


class HandlingEvaluatedV1(_EvaluationEvent):
    """A station or the committee evaluated a department's handling of an invitation (评议)."""

    event_type: ClassVar[str] = "handling.evaluated"
    department_id: str | None
    evaluator_kind: str  # station | committee
    evaluator_id: str
    score: int
    evaluated_at: AwareDatetime
