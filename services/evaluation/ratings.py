"""Voter ratings: the three-level scale, the 1–5 score mapping, and the signed one-time link.

The link is a JWT (HS256, the services' shared key) with purpose "rating", the case, the
opinion and an expiry; its `jti` is kept with the invitation so only the link we issued works.
Pure: the caller gives the clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt
from pydantic import BaseModel, ConfigDict, Field

from services.evaluation.domain import Level
from shared.auth import AuthSettings

PURPOSE = "rating"

_LEVEL_NAMES: dict[str, Level] = {
    "satisfied": Level.SATISFIED,
    "满意": Level.SATISFIED,
    "basically_satisfied": Level.BASICALLY_SATISFIED,
    "基本满意": Level.BASICALLY_SATISFIED,
    "unsatisfied": Level.UNSATISFIED,
    "dissatisfied": Level.UNSATISFIED,
    "不满意": Level.UNSATISFIED,
}


class RatingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    link_ttl_hours: int = Field(
        default=15 * 24, gt=0, description="How long a voter's rating link stays valid."
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8004",
        description="Where voters reach this service; the link is `<this>/api/v1/ratings/<t>`.",
    )


def level_of(name: str) -> Level:
    """满意 / 基本满意 / 不满意 or their English names; ValueError otherwise."""
    found = _LEVEL_NAMES.get(name.strip().lower()) or _LEVEL_NAMES.get(name.strip())
    if found is None:
        raise ValueError(f"unknown level {name!r}: use satisfied, basically_satisfied, unsatisfied")
    return found


def level_of_score(score: int) -> Level:
    """1–5: 5 and 4 are satisfied, 3 basically satisfied, 2 and 1 unsatisfied."""
    if not 1 <= score <= 5:
        raise ValueError("score must be 1–5")
    if score >= 4:
        return Level.SATISFIED
    if score == 3:
        return Level.BASICALLY_SATISFIED
    return Level.UNSATISFIED


def resolve_level(level: str | None, score: int | None) -> Level:
    """The level a submission means; both given must agree."""
    if level is None and score is None:
        raise ValueError("give a level (满意/基本满意/不满意) or a score (1–5)")
    by_level = level_of(level) if level is not None else None
    by_score = level_of_score(score) if score is not None else None
    if by_level and by_score and by_level is not by_score:
        raise ValueError(f"score {score} means {by_score.value}, not {by_level.value}")
    resolved = by_level or by_score
    assert resolved is not None
    return resolved


@dataclass(frozen=True)
class RatingLink:
    token: str
    token_id: str
    case_id: UUID
    opinion_id: UUID
    expires_at: datetime


@dataclass(frozen=True)
class RatingClaims:
    token_id: str
    case_id: UUID
    opinion_id: UUID
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


class ForgedLink(Exception):
    """Not a rating link we signed."""


class RatingLinks:
    def __init__(self, auth: AuthSettings, rating: RatingSettings) -> None:
        self._auth = auth
        self._rating = rating

    def issue(self, case_id: UUID, opinion_id: UUID, *, now: datetime) -> RatingLink:
        expires = (now + timedelta(hours=self._rating.link_ttl_hours)).replace(microsecond=0)
        jti = uuid.uuid4().hex
        claims = {
            "iss": self._auth.issuer,
            "purpose": PURPOSE,
            "sub": str(case_id),
            "opinion_id": str(opinion_id),
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": jti,
        }
        token = jwt.encode(claims, self._auth.signing_key(), algorithm="HS256")
        return RatingLink(token, jti, case_id, opinion_id, expires)

    def url(self, token: str) -> str:
        return f"{self._rating.public_base_url.rstrip('/')}/api/v1/ratings/{token}"

    def read(self, token: str) -> RatingClaims:
        """The link's claims if we signed it (expiry is checked by the caller, so that a voter
        who already rated still sees the rating after the link expired)."""
        try:
            claims = jwt.decode(
                token,
                self._auth.signing_key(),
                algorithms=["HS256"],
                issuer=self._auth.issuer,
                # No audience: a link is told apart from staff tokens by its purpose.
                options={
                    "require": ["exp", "sub", "jti", "iss"],
                    "verify_exp": False,
                    "verify_aud": False,
                },
            )
            if claims.get("purpose") != PURPOSE:
                raise ForgedLink("not a rating link")
            return RatingClaims(
                token_id=str(claims["jti"]),
                case_id=UUID(str(claims["sub"])),
                opinion_id=UUID(str(claims["opinion_id"])),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise ForgedLink(str(exc)) from exc
