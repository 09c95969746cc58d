"""The reference data an opinion may name (live stations and their towns, categories,
deputies), cached in process instead of three SELECTs per request.

Freshness: a change made through this process (admin API, seed) calls `invalidate()` after its
commit, so the next request reloads. A change made by another replica or the CLI is picked up
by expiry: a snapshot older than `ttl_s` is reloaded on the next request, so it is visible
within `ttl_s` (plus one reload) everywhere. `ttl_s <= 0` turns the cache off (every request
reads the tables, as before).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from services.intake.domain import ReferenceSnapshot

Loader = Callable[[], Awaitable[ReferenceSnapshot]]


class ReferenceCache:
    def __init__(
        self, load: Loader, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._clock = clock
        self._snapshot: ReferenceSnapshot | None = None
        self._loaded_at = 0.0
        self._generation = 0  # bumped by invalidate(): a load begun before it is not fresh
        self._lock: asyncio.Lock | None = None

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    def invalidate(self) -> None:
        """Forget the snapshot: the next `get()` reads the tables again."""
        self._generation += 1
        self._snapshot = None

    def _fresh(self) -> ReferenceSnapshot | None:
        if self._snapshot is not None and self._clock() - self._loaded_at < self._ttl_s:
            return self._snapshot
        return None

    async def get(self) -> ReferenceSnapshot:
        if self._ttl_s <= 0:
            return await self._load()
        snapshot = self._fresh()
        if snapshot is not None:
            return snapshot
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one reload at a time; the others wait for its result
            snapshot = self._fresh()
            if snapshot is not None:
                return snapshot
            generation, started = self._generation, self._clock()
            snapshot = await self._load()
            if generation == self._generation:  # no write committed meanwhile
                self._snapshot, self._loaded_at = snapshot, started
            return snapshot
