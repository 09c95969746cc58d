"""Versioned SQL migrations, one PostgreSQL schema per service.

A service's migrations are the shared plumbing (outbox, processed messages) followed by its own
`migrations/NNNN_name.sql` files. Applied by `python -m services.<name> migrate`, never at
import or start-up; a service refuses to start while its schema is behind. They run as the
service's own role, which owns its schema (shared/db/roles.py), or as an administrator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

PLUMBING_DIR = Path(str(resources.files("shared.db") / "sql"))


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class SchemaBehind(RuntimeError):
    """The database schema lacks migrations this code needs."""


def load_migrations(service_dir: Path) -> list[Migration]:
    found: list[Migration] = []
    for prefix, folder in (("plumbing", PLUMBING_DIR), ("service", service_dir)):
        for path in sorted(folder.glob("*.sql")):
            found.append(Migration(name=f"{prefix}/{path.stem}", sql=path.read_text("utf-8")))
    return found


async def _ensure_table(conn: asyncpg.Connection[Any], schema: str) -> None:
    # Not `CREATE SCHEMA IF NOT EXISTS`: PostgreSQL checks the database's CREATE right before
    # it looks, and a service's own role (shared/db/roles.py) has the schema but not that right.
    if await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema) is None:
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        except asyncpg.InsufficientPrivilegeError as exc:
            raise RuntimeError(
                f"schema {schema!r} does not exist and this role may not create it: "
                "provision the roles first (python -m shared.cli db-provision)"
            ) from exc
    await conn.execute(
        f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
              name text PRIMARY KEY,
              checksum text NOT NULL,
              applied_at timestamptz NOT NULL DEFAULT now())"""
    )


async def apply_migrations(
    conn: asyncpg.Connection[Any], schema: str, migrations: list[Migration]
) -> list[str]:
    """Apply what is missing, each in its own transaction, under an advisory lock."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await _ensure_table(conn, schema)
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        done = {
            r["name"]: r["checksum"]
            for r in await conn.fetch(f'SELECT name, checksum FROM "{schema}".schema_migrations')
        }
        for m in migrations:
            if m.name in done:
                if done[m.name] != m.checksum:
                    raise RuntimeError(f"migration {m.name} was changed after it was applied")
                continue
            await conn.execute(m.sql)
            await conn.execute(
                f'INSERT INTO "{schema}".schema_migrations (name, checksum) VALUES ($1, $2)',
                m.name,
                m.checksum,
            )
            applied_now.append(m.name)
    return applied_now


async def pending_migrations(
    conn: asyncpg.Connection[Any], schema: str, migrations: list[Migration]
) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_migrations')
    if exists is None:
        return [m.name for m in migrations]
    done = {r["name"] for r in await conn.fetch(f'SELECT name FROM "{schema}".schema_migrations')}
    return [m.name for m in migrations if m.name not in done]


async def ensure_current(
    conn: asyncpg.Connection[Any], schema: str, migrations: list[Migration]
) -> None:
    missing = await pending_migrations(conn, schema, migrations)
    if missing:
        raise SchemaBehind(
            f"schema {schema!r} is behind, run the migrate command first; missing: {missing}"
        )
