"""The sign-in limiter: failed sign-ins per account and per client address, in routing's
PostgreSQL so that every replica counts the same attempts.

An attempt first *reserves* a failure for its account and its address — in one transaction,
under advisory locks on both keys, refused with 429 when either already holds the maximum
inside the window — and only then is the secret checked. A right secret takes back its
reservation (and the account's earlier failures: its holder proved the secret), never the
address's other failures. So concurrent guesses cannot slip past the count, a locked account
is refused even with the right secret until the window has moved on, and a success from one
address does not reset that address's count for other accounts. The attempted secret is never
stored or logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from fastapi import HTTPException, status

from shared.db.pool import Pool

log = structlog.get_logger(__name__)


class SignInLocked(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"sign-in locked for {retry_after_s} s")
        self.retry_after_s = retry_after_s

    def as_http(self) -> HTTPException:
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail={
                "message": "Too many failed sign-ins for this account or from this address; "
                f"try again in {self.retry_after_s} s."
            },
            headers={"Retry-After": str(self.retry_after_s)},
        )


@dataclass(frozen=True)
class Reservation:
    account_row: int
    address_row: int


class SignInLimiter:
    def __init__(self, *, max_failures: int, window_s: int) -> None:
        self.max_failures = max_failures
        self.window = timedelta(seconds=window_s)

    async def reserve(self, pool: Pool, account: str, address: str) -> Reservation:
        """Count this attempt as a failure now; `SignInLocked` when it is one too many."""
        async with pool.acquire() as conn, conn.transaction():
            for scope, key in (("account", account), ("address", address)):
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"signin:{scope}:{key}"
                )
            now: datetime = await conn.fetchval("SELECT now()")
            since = now - self.window
            await conn.execute("DELETE FROM signin_failures WHERE failed_at < $1", since)
            retry_after = 0
            for scope, key in (("account", account), ("address", address)):
                recent = await conn.fetch(
                    """SELECT failed_at FROM signin_failures
                       WHERE scope = $1 AND key = $2 AND failed_at >= $3
                       ORDER BY failed_at""",
                    scope,
                    key,
                    since,
                )
                if len(recent) >= self.max_failures:
                    # Free again when enough of them have left the window.
                    frees_at = recent[len(recent) - self.max_failures]["failed_at"] + self.window
                    retry_after = max(retry_after, math.ceil((frees_at - now).total_seconds()))
            if retry_after:
                log.warning("signin_locked", account=account, retry_after_s=retry_after)
                raise SignInLocked(max(1, retry_after))
            rows = await conn.fetch(
                """INSERT INTO signin_failures (scope, key)
                   VALUES ('account', $1), ('address', $2) RETURNING id, scope""",
                account,
                address,
            )
        ids = {r["scope"]: r["id"] for r in rows}
        return Reservation(account_row=ids["account"], address_row=ids["address"])

    async def succeeded(self, pool: Pool, account: str, reservation: Reservation) -> None:
        """The secret was right: drop this attempt's rows and the account's failures."""
        await pool.execute(
            """DELETE FROM signin_failures
               WHERE id = $1 OR (scope = 'account' AND key = $2)""",
            reservation.address_row,
            account,
        )
