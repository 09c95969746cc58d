"""Wait until a service's database schema has every migration the image ships.

Run as the `wait-for-schema` initContainer of each Deployment (mounted from the
`minyi-scripts` ConfigMap): `python wait_for_schema.py <service>`. Exits 0 once
nothing is pending; logs and retries while PostgreSQL is unreachable or the
release's migrations Job has not finished. The service checks the same thing at
start-up (and refuses to start), so this only spares it a crash loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from pathlib import Path

import asyncpg

from shared.db.migrations import load_migrations, pending_migrations

SERVICES = ("intake", "routing", "notification", "evaluation")
RETRY_S = 3.0


def migrations_dir(service: str) -> Path:
    spec = importlib.util.find_spec(f"services.{service}")
    if spec is None or spec.origin is None:
        raise SystemExit(f"unknown service {service!r}")
    return Path(spec.origin).parent / "migrations"


def database_url(service: str) -> str:
    return os.environ.get(f"MINYI_{service.upper()}__DATABASE__URL") or os.environ["DATABASE_URL"]


async def pending(service: str) -> list[str]:
    conn = await asyncpg.connect(database_url(service), timeout=10)
    try:
        # The schema is named after the service.
        return await pending_migrations(conn, service, load_migrations(migrations_dir(service)))
    finally:
        await conn.close()


async def wait(service: str) -> None:
    started = time.monotonic()
    while True:
        try:
            missing = await pending(service)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            print(f"{service}: waiting for PostgreSQL: {exc!r}", flush=True)
        else:
            if not missing:
                print(f"{service}: schema is current", flush=True)
                return
            print(f"{service}: waiting for migrations {missing}", flush=True)
        print(f"{service}: {time.monotonic() - started:.0f}s so far", flush=True)
        await asyncio.sleep(RETRY_S)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in SERVICES:
        raise SystemExit(f"usage: wait_for_schema.py {{{'|'.join(SERVICES)}}}")
    asyncio.run(wait(argv[1]))


if __name__ == "__main__":
    main(sys.argv)
