"""The signed-in user, kept in one HttpOnly, SameSite=Strict cookie signed with HMAC-SHA256.

The cookie holds the bearer token routing issued (forwarded to the services on every call)
and what routing said about the account (role, department, station). The services verify the
token themselves; the role here only decides which pages the console offers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Session:
    token: str
    subject: str
    role: str
    department_id: str | None
    station_id: str | None
    expires_at: float

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest())


def encode_session(secret: str, session: Session) -> str:
    payload = _b64(json.dumps(asdict(session), separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def decode_session(secret: str, value: str | None, now: float | None = None) -> Session | None:
    """The session in a cookie value, or None when absent, forged, malformed or expired."""
    if not value or value.count(".") != 1:
        return None
    payload, mac = value.split(".")
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
        session = Session(
            token=str(data["token"]),
            subject=str(data["subject"]),
            role=str(data["role"]),
            department_id=data.get("department_id"),
            station_id=data.get("station_id"),
            expires_at=float(data["expires_at"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return None if session.expired(now) else session


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT without checking its signature (the services check it): used only
    when routing's token response lacks the role fields."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}
