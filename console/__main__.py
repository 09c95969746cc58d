"""`python -m console serve`."""

from __future__ import annotations

import typer
import uvicorn

from console.app import build_app
from console.settings import ConsoleSettings
from shared.ratelimit import uvicorn_proxy_options

cli = typer.Typer(add_completion=False, no_args_is_help=True)


@cli.callback()
def main() -> None:
    """Minyi's operator console."""


@cli.command()
def serve() -> None:
    """Serve the console over HTTP (MINYI_CONSOLE__HTTP__HOST / __PORT)."""
    settings = ConsoleSettings()
    uvicorn.run(
        build_app(settings),
        host=settings.http.host,
        port=settings.http.port,
        log_level="info",
        access_log=False,
        **uvicorn_proxy_options(settings.http.trusted_proxies),
    )


if __name__ == "__main__":
    cli()
