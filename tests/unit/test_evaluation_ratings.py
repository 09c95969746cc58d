"""Rating levels, the 1–5 mapping and the signed one-time rating link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import jwt
import pytest

from services.evaluation.domain import Level
from services.evaluation.ratings import (
    ForgedLink,
    RatingLinks,
    RatingSettings,
    level_of,
    level_of_score,
    resolve_level,
)
from shared.auth import AuthSettings, Principal, Role, issue_token

AUTH = AuthSettings()
NOW = datetime(2025, 3, 10, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (5, Level.SATISFIED),
        (4, Level.SATISFIED),
        (3, Level.BASICALLY_SATISFIED),
        (2, Level.UNSATISFIED),
        (1, Level.UNSATISFIED),
    ],
)
def test_scores_map_onto_three_levels(score: int, level: Level) -> None:
    assert level_of_score(score) is level


def test_levels_by_chinese_or_english_name() -> None:
    assert level_of("满意") is Level.SATISFIED
    assert level_of("基本满意") is Level.BASICALLY_SATISFIED
    assert level_of("Unsatisfied") is Level.UNSATISFIED
    with pytest.raises(ValueError, match="unknown level"):
        level_of("so-so")
    with pytest.raises(ValueError, match="score must be"):
        level_of_score(6)


def test_level_and_score_must_agree() -> None:
    assert resolve_level("满意", 5) is Level.SATISFIED
    assert resolve_level(None, 3) is Level.BASICALLY_SATISFIED
    with pytest.raises(ValueError, match="means unsatisfied"):
        resolve_level("satisfied", 1)
    with pytest.raises(ValueError, match="give a level"):
        resolve_level(None, None)


def test_link_round_trip_and_expiry() -> None:
    links = RatingLinks(AUTH, RatingSettings(link_ttl_hours=24))
    case_id, opinion_id = uuid4(), uuid4()
    link = links.issue(case_id, opinion_id, now=NOW)
    assert links.url(link.token).endswith(f"/api/v1/ratings/{link.token}")
    claims = links.read(link.token)
    assert (claims.case_id, claims.opinion_id, claims.token_id) == (
        case_id,
        opinion_id,
        link.token_id,
    )
    assert claims.expires_at == NOW + timedelta(hours=24)
    assert not claims.expired(NOW + timedelta(hours=23))
    assert claims.expired(NOW + timedelta(hours=24))


def test_forged_links_are_refused() -> None:
    links = RatingLinks(AUTH, RatingSettings())
    link = links.issue(uuid4(), uuid4(), now=NOW)
    other = RatingLinks(
        AuthSettings(secret="another-secret-another-secret-0123456789"), RatingSettings()
    )
    with pytest.raises(ForgedLink):
        other.read(link.token)
    with pytest.raises(ForgedLink):
        links.read(link.token[:-3] + "abc")
    with pytest.raises(ForgedLink):
        links.read("not-a-token")
    # A staff sign-in token is signed with the same key but is not a rating link.
    staff = issue_token(AUTH, Principal(subject="ops", role=Role.OPERATOR))
    with pytest.raises(ForgedLink, match="not a rating link"):
        links.read(staff)
    unsigned = jwt.encode({"purpose": "rating", "sub": str(uuid4())}, "x" * 40, algorithm="HS256")
    with pytest.raises(ForgedLink):
        links.read(unsigned)
