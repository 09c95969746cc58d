"""Kafka + PostgreSQL for the integration/e2e tests.

``start_infra()`` picks, in order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` from the environment (both set);
2. testcontainers, when a Docker engine answers;
3. the local Docker-free stack (``python -m tools.stack infra-up --profile test --fresh``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST_ENV_FILE = ROOT / ".stack" / "test" / "env"

KAFKA_IMAGE = "apache/kafka:3.9.1"
POSTGRES_IMAGE = "postgres:18"
CONTAINER_START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap_servers: str
    database_url: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _noop() -> None:
    return None


def docker_available(timeout: float = 5.0) -> bool:
    try:
        result = subprocess.run(
            ["docker", "info"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _start_containers() -> tuple[Infra, Callable[[], None]]:
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    started: list[Any] = []

    def stop() -> None:
        for container in reversed(started):
            with contextlib.suppress(Exception):
                container.stop()
        started.clear()

    try:
        postgres = PostgresContainer(
            POSTGRES_IMAGE, username="minyi", password="minyi", dbname="minyi", driver=None
        )
        postgres.with_command("postgres -c max_connections=300 -c fsync=off")
        postgres.start()
        started.append(postgres)

        # The official image, same version as the local stack and docker-compose.yml. The host
        # port is fixed before start so the advertised listener can name it.
        port = _free_port()
        kafka = (
            DockerContainer(KAFKA_IMAGE)
            .with_bind_ports(port, port)
            .with_env("KAFKA_NODE_ID", "1")
            .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{port},CONTROLLER://:9093")
            .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
            .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env(
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
            )
            .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env("KAFKA_NUM_PARTITIONS", "3")
        )
        kafka.start()
        started.append(kafka)
        wait_for_logs(kafka, "Kafka Server started", timeout=CONTAINER_START_TIMEOUT_S)

        infra = Infra(
            kafka_bootstrap_servers=f"127.0.0.1:{port}",
            # driver=None: plain postgresql://user:pass@host:port/db, as asyncpg wants it.
            database_url=postgres.get_connection_url(driver=None),
        )
    except BaseException:
        stop()
        raise
    return infra, stop


def _parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _stack(*args: str, check: bool) -> None:
    subprocess.run(
        [sys.executable, "-m", "tools.stack", *args, "--profile", "test"],
        cwd=ROOT,
        check=check,
        stdin=subprocess.DEVNULL,
    )


def _start_local_stack() -> tuple[Infra, Callable[[], None]]:
    try:
        _stack("infra-up", "--fresh", check=True)
    except BaseException:
        _stack("down", check=False)
        raise
    values = _parse_env_file(TEST_ENV_FILE)
    infra = Infra(
        kafka_bootstrap_servers=values["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=values["DATABASE_URL"],
    )

    def stop() -> None:
        _stack("down", check=False)

    return infra, stop


def start_infra() -> tuple[Infra, Callable[[], None]]:
    """Returns the infra and a stop callback."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database_url = os.environ.get("DATABASE_URL")
    if kafka and database_url:
        return Infra(kafka_bootstrap_servers=kafka, database_url=database_url), _noop
    if docker_available():
        return _start_containers()
    return _start_local_stack()
