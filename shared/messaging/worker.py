"""A background loop woken by PostgreSQL LISTEN/NOTIFY, with a polling fallback.

Used by the outbox relay and by other row-claiming workers (deliveries, deadlines).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)

ConnectFn = Callable[[], Awaitable["asyncpg.Connection[Any]"]]


class NotifiedLoop:
    """Runs `work_once` until it reports no work, then sleeps until NOTIFY or the poll interval."""

    def __init__(
        self,
        *,
        name: str,
        channel: str,
        connect: ConnectFn,
        work_once: Callable[[], Awaitable[int]],
        poll_interval_s: float,
        error_backoff_s: float = 1.0,
    ) -> None:
        self.name = name
        self.channel = channel
        self._connect = connect
        self._work_once = work_once
        self._poll_interval_s = poll_interval_s
        self._error_backoff_s = error_backoff_s
        self._wake = asyncio.Event()
        self._listen_conn: asyncpg.Connection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listen_conn is not None and not self._listen_conn.is_closed():
            with contextlib.suppress(Exception):
                await self._listen_conn.close(timeout=2)
        self._listen_conn = None

    async def _ensure_listening(self) -> None:
        if self._listen_conn is not None and not self._listen_conn.is_closed():
            return
        try:
            conn = await self._connect()
            await conn.add_listener(self.channel, lambda *_: self._wake.set())
            self._listen_conn = conn
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("listen_failed", loop=self.name, error=str(exc))
            self._listen_conn = None

    async def _run(self) -> None:
        while True:
            await self._ensure_listening()
            self._wake.clear()
            try:
                done = await self._work_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker_loop_failed", loop=self.name)
                await asyncio.sleep(self._error_backoff_s)
                continue
            if done:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
