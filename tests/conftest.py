"""Fixtures. Unit tests need nothing; integration and e2e tests get real Kafka + PostgreSQL
(see tests/infra.py), a fresh database each and a topic prefix of their own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

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
def topic_prefix() -> Iterator[str]:
    """Topics of this test's own, so no test reads another's messages; deleted afterwards, so
    a long run does not leave Kafka with thousands of partitions (and open files)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # outside any running loop
            pool.submit(asyncio.run, _delete_topics(bootstrap, prefix)).result()


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names, timeout_ms=10_000)
    except Exception:  # best effort: a broker that is down keeps them, nothing else breaks
        return
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


# --------------------------------------------------------------------------- personal data


def pytest_configure(config: pytest.Config) -> None:
    """Route in-process logs (structlog and stdlib) to a file the PII scan reads at the end.

    The services' own DSNs of a sourced `.stack/<profile>/env` (MINYI_<SERVICE>__DATABASE__URL)
    are dropped: in-process code uses the DSN a test gives it, service processes the role DSN
    tests/processes.service_env provisions in the test's database.

    Tests run in the dev profile with routing's development accounts, and share one random
    token signing key for the session (MINYI_AUTH_SECRET, kept if the shell sets one); service
    processes get the same (tests/processes.harness_env)."""
    for name in [n for n in os.environ if n.startswith("MINYI_") and n.endswith("__DATABASE__URL")]:
        del os.environ[name]
    from tests.processes import harness_env

    os.environ.update(harness_env("routing"))
    import logging
    import tempfile
    from pathlib import Path

    from shared.logs import configure_logging
    from shared.settings import LogSettings
    from tests import pii_scan

    configure_logging(LogSettings(level="INFO", json_format=True), service="tests")
    path = Path(tempfile.mkdtemp(prefix="minyi-test-logs-")) / "in-process.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    root = logging.getLogger()
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
    pii_scan.register(path)
    config.stash[_PII_LOG] = path


_PII_LOG = pytest.StashKey["object"]()


# --------------------------------------------------------------------------- contracts


def pytest_sessionstart(session: pytest.Session) -> None:
    """Every service app (in-process or a process, tests/processes.py passes the variable on)
    records the statuses it answers to one file; `_check_observed_statuses` reads it."""
    import tempfile

    from shared.http import OBSERVED_STATUSES_ENV

    if not os.environ.get(OBSERVED_STATUSES_ENV):
        directory = tempfile.mkdtemp(prefix="minyi-test-statuses-")
        os.environ[OBSERVED_STATUSES_ENV] = os.path.join(directory, "observed.tsv")


def _check_observed_statuses(session: pytest.Session, reporter: object) -> None:
    """Fail the session when a route answered a status its committed OpenAPI does not declare."""
    from pathlib import Path

    from shared.http import OBSERVED_STATUSES_ENV
    from tests import observed_statuses

    path = Path(os.environ.get(OBSERVED_STATUSES_ENV, ""))
    observed = observed_statuses.read_observations(path) if path.name else set()
    missing = observed_statuses.undeclared(observed, observed_statuses.load_specs())
    write_line = getattr(reporter, "write_line", None)
    if missing:
        if write_line is not None:
            write_line("Statuses answered but not declared in docs/openapi:", red=True)
            for seen in missing:
                write_line(f"  {seen}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif write_line is not None:
        write_line(f"OpenAPI check: {len(observed)} observed route statuses, all declared")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests import pii_scan

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    _check_observed_statuses(session, reporter)
    found = pii_scan.scan_files(pii_scan.LOG_FILES)
    if found:
        if reporter is not None:
            reporter.write_line("Personal data found in logs:", red=True)
            for path, lines in found.items():
                reporter.write_line(f"  {path}")
                for line in lines:
                    reporter.write_line(f"    {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"PII scan: {len(pii_scan.LOG_FILES)} log files, no personal data")
