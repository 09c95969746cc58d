"""Group commit of opinions: requests queue their rows, a few writer tasks each commit whatever
is queued in ONE transaction and then answer every request in it.

Per request, one PostgreSQL transaction (BEGIN, claim the key, insert the opinion, insert its
outbox rows, COMMIT, reset the pooled connection) is most of intake's cost at load (see
BENCHMARKS.md, "Intake profile"); a batch pays it once for all. The guarantees stay those of
`IntakeStore.save_opinions`, request by request:

- a request is answered (201) only after the transaction holding its rows has committed;
- a request's opinions, outbox rows and idempotency key are in one transaction (all or none);
- a key used before gives the first response (or IdempotencyConflict), as before;
- if a batch fails as a whole (e.g. one request's text cannot be stored), nothing of it is
  written and each of its requests is retried alone, so one bad request fails only itself.

There is no waiting to fill a batch: a writer takes what is queued when it is free, so at low
load a batch is one request and latency is that of the direct path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from services.intake.store import IdempotencyConflict, PendingSave, Saved

log = structlog.get_logger(__name__)

SaveMany = Callable[[Sequence[PendingSave]], Awaitable[list[Saved | IdempotencyConflict]]]
SaveOne = Callable[[PendingSave], Awaitable[Saved]]


@dataclass
class _Item:
    pending: PendingSave
    future: asyncio.Future[Saved]


class GroupWriter:
    def __init__(
        self, save_many: SaveMany, save_one: SaveOne, *, writers: int = 2, max_rows: int = 1000
    ) -> None:
        self._save_many = save_many
        self._save_one = save_one
        self._writers = writers
        self._max_rows = max_rows
        self._queue: asyncio.Queue[_Item] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def _start(self) -> asyncio.Queue[_Item]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._tasks = [
                asyncio.create_task(self._run(), name=f"intake-writer-{n}")
                for n in range(self._writers)
            ]
        return self._queue

    async def save(self, pending: PendingSave) -> Saved:
        """Queue the request's rows; returns once they are committed (or raises)."""
        if self._closed:
            raise RuntimeError("intake is shutting down")
        future: asyncio.Future[Saved] = asyncio.get_running_loop().create_future()
        self._start().put_nowait(_Item(pending, future))
        return await future

    async def close(self) -> None:
        """Stop the writers; whatever is still queued is refused (the HTTP server has
        finished its requests before the lifespan closes us)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("intake is shutting down"))

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            rows = len(batch[0].pending.opinions)
            while rows < self._max_rows and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                rows += len(item.pending.opinions)
            live = [i for i in batch if not i.future.done()]  # a cancelled request: not written
            if live:
                await self._write(live)

    async def _write(self, batch: list[_Item]) -> None:
        if len(batch) > 1:
            try:
                outcomes = await self._save_many([i.pending for i in batch])
            except asyncio.CancelledError:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(RuntimeError("intake is shutting down"))
                raise
            except Exception as exc:
                # Nothing of the batch was written: each request again, alone.
                log.warning("group_commit_failed", size=len(batch), error=type(exc).__name__)
            else:
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(outcome, Exception):
                        item.future.set_exception(outcome)
                    else:
                        item.future.set_result(outcome)
                return
        await asyncio.gather(*(self._alone(i) for i in batch))

    async def _alone(self, item: _Item) -> None:
        try:
            saved = await self._save_one(item.pending)
        except asyncio.CancelledError:
            if not item.future.done():
                item.future.set_exception(RuntimeError("intake is shutting down"))
            raise
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
        else:
            if not item.future.done():
                item.future.set_result(saved)
