"""Live task streams: one LISTEN connection per process fans new-task notices out to the
SSE subscribers of each department. A notice is sent (pg_notify) in the transaction that
assigns the case, so it arrives only once the assignment is committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from services.routing.store import NEW_TASK_CHANNEL

log = structlog.get_logger(__name__)

Connect = Callable[[], Awaitable["asyncpg.Connection[Any]"]]


class TaskHub:
    def __init__(self, connect: Connect, *, queue_size: int = 1000) -> None:
        self._connect = connect
        self._queue_size = queue_size
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = {}
        self._conn: asyncpg.Connection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _ensure_listening(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            conn = await self._connect()
            await conn.add_listener(NEW_TASK_CHANNEL, self._on_notice)
            self._conn = conn

    def _on_notice(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            notice = json.loads(str(payload))
        except ValueError:
            return
        for queue in self._subscribers.get(str(notice.get("department_id")), ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(str(notice.get("case_id")))

    @contextlib.asynccontextmanager
    async def subscribe(self, department_id: str) -> AsyncIterator[asyncio.Queue[str]]:
        await self._ensure_listening()
        queue: asyncio.Queue[str] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(department_id, set()).add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(department_id, set())
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(department_id, None)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
