"""Services run as real processes (`python -m services.<name> serve`), as in production: each
connects to PostgreSQL as its own role, limited to its own schema (shared/db/roles.py)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from shared.db import roles
from tests import pii_scan
from tests.fakes.runner import free_port

ROOT = Path(__file__).resolve().parent.parent


def service_database_url(name: str, database_url: str) -> str:
    """Provision `name`'s role in the database of the administrator DSN `database_url` (its
    schema, owned by it, whatever an administrator created there before included) and return
    the service's own DSN. Callable from inside an event loop."""
    role = roles.ServiceRole(name, roles.DEV_PASSWORD)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, roles.provision_url(database_url, [role])).result()
    return roles.role_url(database_url, role)


def session_auth_secret() -> str:
    """The token signing key of this run (tests, bench, chaos): `MINYI_AUTH_SECRET` if set,
    else a random one, set for the rest of the run so in-process code and processes share it."""
    return os.environ.setdefault("MINYI_AUTH_SECRET", secrets.token_hex(32))


def harness_env(name: str) -> dict[str, str]:
    """What the harness runs every service with: the dev profile, the run's signing key and,
    for routing, the development accounts (their documented password signs the tests in)."""
    env = {"MINYI_PROFILE": "dev", "MINYI_AUTH_SECRET": session_auth_secret()}
    if name == "routing":
        env["MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS"] = "true"
    return env


def service_env(
    name: str, *, database_url: str, topic_prefix: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of service `name`'s processes (migrate, seed, serve, its CLI): its own
    role's DSN, never the administrator's `database_url`, and `harness_env`."""
    prefix = f"MINYI_{name.upper()}__"
    own_url = service_database_url(name, database_url)
    # The caller's environment without its MINYI_ settings: OBSERVED_STATUSES_FILE (set by
    # tests/conftest.py) comes along, so processes record their answers as in-process apps do.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINYI_")}
    env.update(harness_env(name))
    env.update(
        {
            "DATABASE_URL": own_url,
            f"{prefix}DATABASE__URL": own_url,
            f"{prefix}KAFKA__TOPIC_PREFIX": topic_prefix,
            f"{prefix}KAFKA__RETRY_BACKOFF_S": "0.05",
            f"{prefix}OUTBOX__POLL_INTERVAL_S": "0.5",
            f"{prefix}LOG__JSON_FORMAT": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def run_command(name: str, command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"services.{name}", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{name} {command} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, f"MINYI_{name.upper()}__HTTP__PORT": str(self.port)}
        self.log_path = log_dir / f"{name}.log"
        pii_scan.register(self.log_path)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, extra_env: dict[str, str] | None = None) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}", "serve"],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL if it hangs; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait(timeout=10)
        return proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
