"""AsyncAPI (from the FastStream brokers) and OpenAPI (from the FastAPI apps), kept in docs/.

`python -m tools.contracts` writes them; `--check` fails when the code and docs/ differ.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from shared.cli import render_asyncapi

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _documents() -> dict[Path, str]:
    # The documents describe the code, not this machine: ignore the environment's settings.
    for key in list(os.environ):
        if key.startswith("MINYI_") or key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            del os.environ[key]
    # The apps are built, never served: a throwaway signing key (documents hold no key).
    os.environ["MINYI_AUTH_SECRET"] = secrets.token_hex(32)
    from services.evaluation import app as evaluation
    from services.evaluation.settings import EvaluationSettings
    from services.intake import app as intake
    from services.intake.settings import IntakeSettings
    from services.notification import app as notification
    from services.notification.settings import NotificationSettings
    from services.routing import app as routing
    from services.routing.settings import RoutingSettings

    services: list[tuple[str, Any, Callable[[], Any]]] = [
        ("intake", intake, IntakeSettings),
        ("routing", routing, RoutingSettings),
        ("notification", notification, NotificationSettings),
        ("evaluation", evaluation, EvaluationSettings),
    ]
    docs: dict[Path, str] = {}
    for name, module, settings_cls in services:
        settings = settings_cls()
        docs[DOCS / "asyncapi" / f"{name}.json"] = render_asyncapi(
            module.build_runtime(settings), name
        )
        openapi = module.build_app(settings).openapi()
        docs[DOCS / "openapi" / f"{name}.json"] = (
            json.dumps(openapi, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        )
    return docs


def main(check: bool = typer.Option(False, "--check", help="Fail if docs/ is stale.")) -> None:
    stale = []
    for path, text in _documents().items():
        if check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
    if stale:
        typer.echo(
            "Contracts differ from the code (run `make contracts-update`): " + ", ".join(stale),
            err=True,
        )
        sys.exit(1)
    typer.echo("contracts: " + ("up to date" if check else "written"))


if __name__ == "__main__":
    typer.run(main)
