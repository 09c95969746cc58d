"""Whether a session still holds at routing (`GET /api/v1/auth/session`), asked on every
console request, with a short in-process cache of confirmations.

* routing says 401 (signed out, or the token is no longer valid) → the session is over;
* routing says 200 → confirmed, and believed for `ttl_s` seconds without asking again (a
  sign-out through this console process forgets it at once; through another process it takes
  effect here within `ttl_s`);
* routing does not answer → the signed cookie stands (the console must still show, e.g., the
  pipeline panel while routing is down; the services check the token on every call anyway).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable

from console.session import Session

Ask = Callable[[], Awaitable[bool | None]]  # True: holds; False: over; None: no answer
MAX_ENTRIES = 10_000


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionChecks:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._confirmed: dict[str, float] = {}

    async def holds(self, session: Session, ask: Ask) -> bool:
        key = _key(session.token)
        now = self.clock()
        confirmed_at = self._confirmed.get(key)
        if confirmed_at is not None and now - confirmed_at < self.ttl_s:
            return True
        answer = await ask()
        if answer is False:
            self._confirmed.pop(key, None)
            return False
        if answer is True and self.ttl_s > 0:
            self._prune(now)
            self._confirmed[key] = now
        return True

    def forget(self, session: Session) -> None:
        self._confirmed.pop(_key(session.token), None)

    def _prune(self, now: float) -> None:
        if len(self._confirmed) < MAX_ENTRIES:
            return
        self._confirmed = {k: t for k, t in self._confirmed.items() if now - t < self.ttl_s}
        if len(self._confirmed) >= MAX_ENTRIES:
            self._confirmed.clear()
