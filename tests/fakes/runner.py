"""Run a fake provider server (`python -m tests.fakes.<module>`) in a subprocess on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

_REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ControlledState(Protocol):
    lock: threading.Lock
    requests: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    script: deque[str]

    def reset(self) -> None: ...


def add_control_routes(app: FastAPI, state: ControlledState) -> None:
    """The `/_fake/*` endpoints every fake provider has: health, what it recorded, reset, and a
    script of codes to answer the next calls with."""

    @app.get("/_fake/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/_fake/requests")
    async def recorded() -> list[dict[str, Any]]:
        with state.lock:
            return list(state.requests)

    @app.get("/_fake/attempts")
    async def attempts() -> list[dict[str, Any]]:
        with state.lock:
            return list(state.attempts)

    @app.post("/_fake/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    @app.post("/_fake/script")
    async def script(request: Request) -> JSONResponse:
        data = await request.json()
        codes = data.get("codes") if isinstance(data, dict) else None
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            return JSONResponse(status_code=422, content={"error": "expected {'codes': [str]}"})
        with state.lock:
            state.script.extend(codes)
            pending = len(state.script)
        return JSONResponse(content={"ok": True, "pending": pending})


class FakeProcess:
    module: str = ""

    def __init__(self, *args: str, port: int | None = None, startup_timeout: float = 20) -> None:
        self.port = port or free_port()
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.endpoint}"

    def start(self) -> Self:
        if self._proc is not None:
            return self
        cmd = [sys.executable, "-m", self.module, "--port", str(self.port), *self.args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            cmd, cwd=_REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                output = self.output()
                self.stop()
                raise RuntimeError(f"{self.module} exited early:\n{output}")
            try:
                if httpx.get(f"{self.base_url}/_fake/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        output = self.output()
        self.stop()
        raise RuntimeError(f"{self.module} did not start in time:\n{output}")

    def output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text: str = self._log.read().decode("utf-8", "replace")
        return text[-4000:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(f"{self.base_url}/_fake/requests").json()
        return result

    def attempts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(f"{self.base_url}/_fake/attempts").json()
        return result

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_fake/reset").raise_for_status()

    def script(self, codes: list[str]) -> None:
        httpx.post(f"{self.base_url}/_fake/script", json={"codes": codes}).raise_for_status()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
