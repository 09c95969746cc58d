"""Every status the test suite saw a route answer is one its service's OpenAPI declares.

The services' RED-metrics middleware (shared/http.py) appends `service method path status`
lines to the file named by `OBSERVED_STATUSES_FILE`, in-process apps and service processes
alike; at the end of the session tests/conftest.py compares them with docs/openapi/*.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

DOCS = Path(__file__).resolve().parent.parent / "docs" / "openapi"
OUT_OF_SCOPE_PREFIXES = ("/health", "/metrics")


class Observed(NamedTuple):
    service: str
    method: str
    path: str
    status: int

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path} → {self.status}"


def read_observations(path: Path) -> set[Observed]:
    """The distinct lines of the file (none if it does not exist: nothing was answered)."""
    if not path.exists():
        return set()
    found = set()
    for line in path.read_text("utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[3].isdigit():
            found.add(Observed(parts[0], parts[1], parts[2], int(parts[3])))
    return found


def load_specs(docs: Path = DOCS) -> dict[str, dict[str, Any]]:
    """The committed OpenAPI documents by service name (docs/openapi/<service>.json)."""
    return {p.stem: json.loads(p.read_text("utf-8")) for p in sorted(docs.glob("*.json"))}


def _declares(responses: Mapping[str, Any], status: int) -> bool:
    return str(status) in responses or f"{str(status)[0]}XX" in responses or "default" in responses


def undeclared(
    observations: Iterable[Observed], specs: Mapping[str, Mapping[str, Any]]
) -> list[Observed]:
    """The observations no OpenAPI declares, sorted. Services without a document (the
    console, test apps), /health, /metrics and 405 (no such method on the path) are out of
    scope; HEAD is checked as GET."""
    missing = []
    for seen in observations:
        spec = specs.get(seen.service)
        if spec is None or seen.path.startswith(OUT_OF_SCOPE_PREFIXES):
            continue
        method = "get" if seen.method == "HEAD" else seen.method.lower()
        operation = spec.get("paths", {}).get(seen.path, {}).get(method)
        if operation is None and seen.status == 405:
            continue  # a method the path does not have: unmatched, like a 404 for a path
        if operation is None or not _declares(operation.get("responses", {}), seen.status):
            missing.append(seen)
    return sorted(missing)
