"""Intake's reference cache (expiry, invalidation, one reload at a time) and group writer
(batching, per-request outcomes, a failed batch retried request by request), with fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.intake.domain import Opinion, ReferenceSnapshot
from services.intake.reference_cache import ReferenceCache
from services.intake.store import IdempotencyConflict, IdempotencyKey, PendingSave, Saved
from services.intake.writer import GroupWriter
from shared.events import Channel


def snapshot(*stations: str) -> ReferenceSnapshot:
    return ReferenceSnapshot(
        station_towns={s: "zeguo" for s in stations}, categories=frozenset(), deputies=frozenset()
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    def __init__(self) -> None:
        self.loads = 0
        self.stations = ["a"]
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> ReferenceSnapshot:
        self.loads += 1
        current = list(self.stations)
        if self.gate is not None:
            await self.gate.wait()
        return snapshot(*current)


async def test_the_snapshot_is_read_once_until_it_expires() -> None:
    clock, load = FakeClock(), Loader()
    cache = ReferenceCache(load, ttl_s=5, clock=clock)
    assert set((await cache.get()).station_towns) == {"a"}
    load.stations = ["a", "b"]  # written elsewhere
    clock.now += 4.9
    assert set((await cache.get()).station_towns) == {"a"}
    assert load.loads == 1
    clock.now += 0.2  # older than ttl_s: reloaded
    assert set((await cache.get()).station_towns) == {"a", "b"}
    assert load.loads == 2


async def test_invalidate_makes_the_next_request_reload() -> None:
    clock, load = FakeClock(), Loader()
    cache = ReferenceCache(load, ttl_s=3600, clock=clock)
    await cache.get()
    load.stations = ["b"]
    cache.invalidate()
    assert set((await cache.get()).station_towns) == {"b"}


async def test_a_load_begun_before_a_write_is_not_kept_as_fresh() -> None:
    clock, load = FakeClock(), Loader()
    cache = ReferenceCache(load, ttl_s=3600, clock=clock)
    load.gate = asyncio.Event()
    pending = asyncio.create_task(cache.get())
    await asyncio.sleep(0)
    load.stations = ["b"]
    cache.invalidate()  # the admin API committed while the old rows were being read
    load.gate.set()
    assert set((await pending).station_towns) == {"a"}
    assert set((await cache.get()).station_towns) == {"b"}  # not the stale one


async def test_concurrent_requests_share_one_reload() -> None:
    load = Loader()
    cache = ReferenceCache(load, ttl_s=60)
    load.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.get()) for _ in range(20)]
    await asyncio.sleep(0)
    load.gate.set()
    await asyncio.gather(*waiting)
    assert load.loads == 1


async def test_ttl_zero_reads_every_time() -> None:
    load = Loader()
    cache = ReferenceCache(load, ttl_s=0)
    for _ in range(3):
        await cache.get()
    assert load.loads == 3


def pending(key: str | None = None, request_hash: str = "h") -> PendingSave:
    opinion = Opinion(
        opinion_id=uuid4(),
        receipt_code="R",
        channel=Channel.ONLINE,
        station_id="a",
        town_id="zeguo",
        category_id=None,
        deputy_id=None,
        content="路灯坏了很久没人修",
        voter_name=None,
        voter_phone=None,
        submitted_at=datetime.now(UTC),
    )
    idem = None if key is None else IdempotencyKey("public", key, request_hash)
    return PendingSave([opinion], {"opinion_id": str(opinion.opinion_id)}, idem)


class FakeStore:
    def __init__(self, *, fail_batches: bool = False) -> None:
        self.batches: list[int] = []
        self.alone: list[PendingSave] = []
        self.fail_batches = fail_batches
        self.gate = asyncio.Event()
        self.gate.set()

    async def save_many(self, items: Sequence[PendingSave]) -> list[Saved | IdempotencyConflict]:
        await self.gate.wait()
        self.batches.append(len(items))
        if self.fail_batches:
            raise RuntimeError("one bad row")
        return [
            IdempotencyConflict(p.idempotency.key)
            if p.idempotency and p.idempotency.request_hash == "other"
            else Saved(p.response, replayed=False)
            for p in items
        ]

    async def save_one(self, item: PendingSave) -> Saved:
        self.alone.append(item)
        if item.idempotency and item.idempotency.key == "bad":
            raise ValueError("cannot store this text")
        return Saved(item.response, replayed=False)


async def test_requests_queued_while_a_transaction_runs_commit_together() -> None:
    store = FakeStore()
    writer = GroupWriter(store.save_many, store.save_one, writers=1, max_rows=1000)
    store.gate.clear()
    first = asyncio.create_task(writer.save(pending()))
    await asyncio.sleep(0)  # the writer takes the first alone (nothing else queued)
    rest = [asyncio.create_task(writer.save(pending())) for _ in range(50)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(first, *rest)
    assert all(not r.replayed for r in results)
    assert len(store.alone) == 1  # the first: a batch of one takes the direct path
    assert store.batches == [50]
    await writer.close()


async def test_each_request_gets_its_own_outcome() -> None:
    store = FakeStore()
    writer = GroupWriter(store.save_many, store.save_one, writers=1)
    store.gate.clear()
    blocker = asyncio.create_task(writer.save(pending()))
    await asyncio.sleep(0)
    ok = asyncio.create_task(writer.save(pending("k1")))
    clash = asyncio.create_task(writer.save(pending("k2", request_hash="other")))
    await asyncio.sleep(0)
    store.gate.set()
    await blocker
    assert (await ok).response
    with pytest.raises(IdempotencyConflict):
        await clash
    await writer.close()


async def test_a_failed_batch_is_retried_request_by_request() -> None:
    store = FakeStore(fail_batches=True)
    writer = GroupWriter(store.save_many, store.save_one, writers=1)
    store.gate.clear()
    blocker = asyncio.create_task(writer.save(pending()))
    await asyncio.sleep(0)
    good = [asyncio.create_task(writer.save(pending(f"g{i}"))) for i in range(3)]
    bad = asyncio.create_task(writer.save(pending("bad")))
    await asyncio.sleep(0)
    store.gate.set()
    await blocker
    assert all(not saved.replayed for saved in await asyncio.gather(*good))
    with pytest.raises(ValueError, match="cannot store"):
        await bad
    assert store.batches == [4]  # tried once together, then each alone
    assert len(store.alone) == 1 + 4
    await writer.close()


async def test_a_closed_writer_refuses_new_requests() -> None:
    store = FakeStore()
    writer = GroupWriter(store.save_many, store.save_one)
    await writer.save(pending())
    await writer.close()
    with pytest.raises(RuntimeError, match="shutting down"):
        await writer.save(pending())
