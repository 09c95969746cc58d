"""An open-loop load generator: requests leave at the offered rate whatever the server does,
so slowness shows as latency (and backlog), never as a politely reduced rate."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shared.reference import wenling

TEXTS = [
    "小区门口道路破损严重，雨天积水，出行不便，希望尽快维修。",
    "公交站台缺少遮雨棚，老人孩子等车很辛苦。",
    "夜间工地施工噪音扰民，影响周边居民休息。",
    "村里自来水水压不足，高层住户经常停水。",
    "学校周边交通拥堵，建议增设护学岗和减速带。",
    "河道垃圾较多，希望加强清理和日常保洁。",
]


# One load generator on one address stands for thousands of voters behind a proxy: the
# per-address and per-phone limits of the public form are off for load runs, and so are the
# SMS per-number limits (every new case texts its department's one contact; see BENCHMARKS.md).
LOAD_TEST_ENV = {
    "MINYI_INTAKE__RATE_LIMIT__ENABLED": "false",
    "MINYI_NOTIFICATION__LIMITS__ENABLED": "false",
}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


@dataclass
class StepResult:
    offered_rate: float
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "offered_per_s": self.offered_rate,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "accepted": self.ok,
            "accepted_per_s": round(self.ok / self.wall_s, 1) if self.wall_s else 0,
            "errors": self.errors,
            "p50_ms": round(percentile(lat, 50), 1),
            "p95_ms": round(percentile(lat, 95), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        }


def opinion_mix(seed: int = 7) -> Callable[[int], dict[str, Any]]:
    """Opinions over every station and category, with and without a category, as the public
    online form sends them."""
    ref = wenling()
    rng = random.Random(seed)
    stations = [s.id for s in ref.stations]
    categories = [c.id for c in ref.categories] + [None]

    def make(i: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "channel": "online",
            "station_id": rng.choice(stations),
            "content": f"{rng.choice(TEXTS)}（编号{i}）",
            "voter_phone": f"139{rng.randrange(10**8):08d}",
        }
        category = rng.choice(categories)
        if category:
            body["category_id"] = category
        return body

    return make


async def open_loop(
    *,
    rate: float,
    duration_s: float,
    request: Callable[[aiohttp.ClientSession, int], Awaitable[tuple[bool, str]]],
    connections: int = 256,
    on_sent: Callable[[int, float], None] | None = None,
) -> StepResult:
    """Fire `request(i)` at `rate`/s for `duration_s`; latency measured from the *scheduled*
    send time, so a generator or server that falls behind is charged for it."""
    result = StepResult(offered_rate=rate, duration_s=duration_s)
    total = int(rate * duration_s)
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter() + 0.05
        tasks: list[asyncio.Task[None]] = []

        async def one(i: int, scheduled: float) -> None:
            try:
                ok, detail = await request(session, i)
            except Exception as exc:
                ok, detail = False, type(exc).__name__
            if ok:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
            else:
                result.errors[detail] = result.errors.get(detail, 0) + 1

        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if on_sent is not None:
                on_sent(i, scheduled)
            tasks.append(asyncio.create_task(one(i, scheduled)))
            result.sent += 1
        await asyncio.gather(*tasks)
        result.wall_s = time.perf_counter() - start
    return result
