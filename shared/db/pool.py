"""asyncpg pools bound to one service's schema."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from shared.settings import DatabaseSettings

if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    Connection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    )
else:
    Pool = asyncpg.Pool
    Connection = asyncpg.Connection


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(
            pg_type,
            encoder=lambda v: json.dumps(v, ensure_ascii=False),
            decoder=json.loads,
            schema="pg_catalog",
        )


def connect_kwargs(settings: DatabaseSettings, *, schema: str, service: str) -> dict[str, Any]:
    return {
        "dsn": settings.url,
        "server_settings": {"search_path": schema, "application_name": service},
        "command_timeout": settings.command_timeout_s,
    }


async def create_pool(settings: DatabaseSettings, *, schema: str, service: str) -> Pool:
    pool = await asyncpg.create_pool(
        **connect_kwargs(settings, schema=schema, service=service),
        min_size=settings.min_pool_size,
        max_size=settings.max_pool_size,
        init=_init_connection,
    )
    assert pool is not None
    return pool


async def connect(
    settings: DatabaseSettings, *, schema: str, service: str
) -> asyncpg.Connection[asyncpg.Record]:
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        **connect_kwargs(settings, schema=schema, service=service)
    )
    await _init_connection(conn)
    return conn
