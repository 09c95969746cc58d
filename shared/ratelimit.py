"""Rate limits for public endpoints: moving windows (the `limits` library), in memory.

Each process keeps its own counters (configure per replica). `RateLimiter.hit` raises
HTTP 429 with `Retry-After` (whole seconds) when a key is over its limit.
"""

from __future__ import annotations

import math
import time

from fastapi import HTTPException, Request, status
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimiter:
    def __init__(self, *, enabled: bool = True, trust_forwarded_for: bool = False) -> None:
        self.enabled = enabled
        self.trust_forwarded_for = trust_forwarded_for
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @staticmethod
    def parse(spec: str) -> RateLimitItem:
        return parse(spec)

    def client_address(self, request: Request) -> str:
        if self.trust_forwarded_for:
            forwarded = request.headers.get("x-forwarded-for", "")
            first = forwarded.split(",", 1)[0].strip()
            if first:
                return first
        return request.client.host if request.client else "unknown"

    def hit(self, limit: RateLimitItem, *identifiers: str, what: str) -> None:
        """Count one request against `limit` for `identifiers`; 429 when over it."""
        if not self.enabled:
            return
        if self._limiter.hit(limit, *identifiers):
            return
        stats = self._limiter.get_window_stats(limit, *identifiers)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail={"message": f"Too many requests {what}; try again in {retry_after} s."},
            headers={"Retry-After": str(retry_after)},
        )
