"""Fixtures. Unit tests need nothing; integration and e2e tests get real Kafka + PostgreSQL
(see tests/infra.py), a fresh database each and a topic prefix of their own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.infra import Infra, start_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    started, stop = start_infra()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = started.kafka_bootstrap_servers
    os.environ["DATABASE_URL"] = started.database_url
    try:
        yield started
    finally:
        stop()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A database of this test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(infra.database_url, name)
    admin = await asyncpg.connect(infra.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def topic_prefix() -> str:
    """Topics of this test's own, so no test reads another's messages."""
    return f"t{uuid.uuid4().hex[:10]}."
