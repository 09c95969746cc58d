"""Schemathesis against each service's live OpenAPI (the four services as processes): no 5xx
(`not_a_server_error`) and responses that conform to the schema (`response_schema_conformance`),
anonymously and with an operator's token. A bounded number of examples per operation, seeded:
the whole run stays under about two minutes.

Skipped when schemathesis is not installed (`.venv/bin/pip install schemathesis`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import SERVICES, Stack, running_stack

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = 12
CHECKS = "not_a_server_error,response_schema_conformance"
# A live task stream never ends: not something to fuzz.
EXCLUDE_PATH_REGEX = r".*/stream$"


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory) -> Iterator[Stack]:
    if not CLI.exists() and shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed")
    # No rate limits here: 429s would hide what the fuzzing reaches.
    env = {
        "intake": {"MINYI_INTAKE__RATE_LIMIT__ENABLED": "false"},
        "evaluation": {"MINYI_EVALUATION__LIMITS__RATE_LIMIT_ENABLED": "false"},
        "routing": {"MINYI_ROUTING__LIMITS__SIGNIN_MAX_FAILURES": "1000000"},
    }
    with running_stack(infra, tmp_path_factory.mktemp("fuzz"), extra_env=env) as started:
        yield started


RUNS = [pytest.param(service, who) for service in SERVICES for who in ("anonymous", "operator")]


@pytest.mark.parametrize(("service", "who"), RUNS)
def test_schemathesis(stack: Stack, service: str, who: str, tmp_path: Path):
    command = [
        str(CLI),
        "run",
        f"{stack.url(service)}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "20250101",
        # One worker: hypothesis describes strategies with ast.parse, which CPython 3.11 cannot
        # run in two threads at once ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--exclude-path-regex",
        EXCLUDE_PATH_REGEX,
        "--max-time",
        "12",
        "--warnings",
        "off",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    if who != "anonymous":
        command += ["--header", f"Authorization: Bearer {stack.sign_in(who)}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, (
        f"{service} as {who}:\n{done.stdout[-8000:]}\n{done.stderr[-2000:]}"
    )
