"""Rate limits for public endpoints: moving windows (the `limits` library), in memory.

Each process keeps its own counters (configure per replica). `RateLimiter.hit` raises
HTTP 429 with `Retry-After` (whole seconds) when a key is over its limit.

The client's address is the TCP peer, unless the peer is one of the service's
`http.trusted_proxies`: then it is the right-most address of X-Forwarded-For that is not a
trusted proxy (what uvicorn's proxy headers, configured from the same setting, give).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException, Request, status
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The reverse proxies allowed to name the client (X-Forwarded-For): addresses or CIDR
    networks; `*` trusts every peer (only behind a proxy that overwrites the header)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.entries = [e.strip() for e in entries if e.strip()]
        self.everyone = "*" in self.entries
        self._networks: list[Network] = [
            ipaddress.ip_network(e, strict=False) for e in self.entries if e != "*"
        ]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """The client's address: `peer` unless it is trusted and names one."""
        if not self.trusts(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer

    def client_of(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        return self.client(peer, ", ".join(request.headers.getlist("x-forwarded-for")))


def uvicorn_proxy_options(trusted_proxies: Iterable[str]) -> dict[str, Any]:
    """uvicorn's proxy trust from a process's `http.trusted_proxies` (the setting its rate
    limiters use too). uvicorn's own default trusts X-Forwarded-For from 127.0.0.1, which would
    let anything on the host pick its client address: off unless proxies are named."""
    proxies = [p for p in trusted_proxies if p.strip()]
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}


class RateLimiter:
    def __init__(self, *, enabled: bool = True, trusted_proxies: Iterable[str] = ()) -> None:
        self.enabled = enabled
        self.proxies = TrustedProxies(trusted_proxies)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @staticmethod
    def parse(spec: str) -> RateLimitItem:
        return parse(spec)

    def client_address(self, request: Request) -> str:
        return self.proxies.client_of(request)

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
