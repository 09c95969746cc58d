"""Cross-site request forgery: what every POST of the console must carry. Pure functions.

Two checks, both on every unsafe request (the app runs them as one dependency on all routes):

1. Where it comes from: a browser's `Sec-Fetch-Site` must be `same-origin` (or `none`, typed
   by the user), and an `Origin` header, when sent, must be the console's own host. Browsers
   send at least one of them on every cross-site POST.
2. A token in the form's hidden field `csrf_token`, compared in constant time with the one
   the console expects: for a signed-in user an HMAC of the session (so another session's
   token never fits); for the sign-in form, which has no session yet, an HMAC of a random
   pre-session nonce kept in its own HttpOnly, SameSite=Strict cookie (set by `GET /login`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from console.session import Session

FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ACCEPTED_FETCH_SITES = frozenset({"same-origin", "none"})


def _mac(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def session_token(secret: str, session: Session) -> str:
    """The token of a signed-in user's forms: bound to this session's bearer token."""
    return _mac(secret, "csrf-session", session.token)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def presession_token(secret: str, nonce: str) -> str:
    """The sign-in form's token: bound to the pre-session cookie's nonce."""
    return _mac(secret, "csrf-login", nonce)


def tokens_match(expected: str | None, given: object) -> bool:
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def cross_site_reason(headers: Mapping[str, str], host: str | None) -> str | None:
    """Why the request comes from another site, or None. `headers` lower-case keyed (as
    Starlette's are); `host`: the request's Host header."""
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ACCEPTED_FETCH_SITES:
        return f"Sec-Fetch-Site is {site!r}"
    origin = headers.get("origin")
    if origin is not None:
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        if not netloc or netloc != (host or "").lower():
            return f"Origin {origin!r} is not this console"
    return None
