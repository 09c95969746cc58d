"""The WeChat access token shared by every worker, in PostgreSQL (`wechat_tokens`).

Readers take the stored token while it is fresh. A refresher locks the app's row
(`SELECT … FOR UPDATE`), looks again (another worker may have just refreshed it), and only then
asks WeChat: one fetch per expiry across all workers, never two tokens fighting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from shared.db.pool import Pool

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class PgTokenStore:
    def __init__(self, pool_of: Callable[[], Pool], *, clock: Clock = _now) -> None:
        self._pool_of = pool_of
        self._clock = clock

    async def current(self, app_id: str) -> tuple[str, datetime] | None:
        row = await self._pool_of().fetchrow(
            "SELECT access_token, expires_at FROM wechat_tokens WHERE app_id = $1", app_id
        )
        return (row["access_token"], row["expires_at"]) if row else None

    async def refresh(
        self,
        app_id: str,
        *,
        stale: str | None,
        fetch: Callable[[], Awaitable[tuple[str, int]]],
        margin: timedelta,
    ) -> str:
        """A fresh token: the stored one unless it is `stale` or within `margin` of expiry."""
        found = await self.current(app_id)
        if found is not None and found[0] != stale and found[1] - margin > self._clock():
            return found[0]
        pool = self._pool_of()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO wechat_tokens (app_id, access_token, expires_at)
                   VALUES ($1, '', '1970-01-01+00') ON CONFLICT (app_id) DO NOTHING""",
                app_id,
            )
            row = await conn.fetchrow(
                """SELECT access_token, expires_at FROM wechat_tokens
                   WHERE app_id = $1 FOR UPDATE""",
                app_id,
            )
            assert row is not None
            now = self._clock()
            if (
                row["access_token"]
                and row["access_token"] != stale
                and (row["expires_at"] - margin > now)
            ):
                return str(row["access_token"])
            token, expires_in = await fetch()
            await conn.execute(
                """UPDATE wechat_tokens SET access_token = $2, expires_at = $3,
                       refreshed_at = $4 WHERE app_id = $1""",
                app_id,
                token,
                now + timedelta(seconds=expires_in),
                now,
            )
            return token

    async def invalidate(self, app_id: str, token: str) -> None:
        """WeChat refused `token`: expire it, unless another worker already replaced it."""
        await self._pool_of().execute(
            """UPDATE wechat_tokens SET expires_at = '1970-01-01+00'
               WHERE app_id = $1 AND access_token = $2""",
            app_id,
            token,
        )
