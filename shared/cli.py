"""The command line every service has: `serve`, `migrate`, `seed`, `asyncapi`; and the shared
one, `python -m shared.cli db-provision` (the services' database roles, run as administrator)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import typer
import uvicorn
from fastapi import FastAPI
from faststream import FastStream
from faststream.specification import AsyncAPI
from pydantic import ValidationError

from shared.auth import MissingAuthSecret
from shared.db import roles
from shared.db.migrations import apply_migrations, load_migrations
from shared.db.pool import connect
from shared.logs import configure_logging
from shared.ratelimit import uvicorn_proxy_options
from shared.runtime import ServiceRuntime
from shared.settings import DatabaseSettings, HttpSettings, LogSettings


class _Settings(Protocol):
    database: DatabaseSettings
    http: HttpSettings
    log: LogSettings


S = TypeVar("S", bound=_Settings)


def service_cli(
    *,
    service: str,
    schema: str,
    settings_factory: Callable[[], S],
    build_app: Callable[[S], FastAPI],
    build_runtime: Callable[[S], ServiceRuntime],
    migrations_dir: Path,
    seed: Callable[[S], Coroutine[Any, Any, str]] | None = None,
    after_migrate: Callable[[S], Coroutine[Any, Any, str | None]] | None = None,
) -> typer.Typer:
    """`after_migrate` runs after every `migrate` (applied or not): the place for data work a
    migration asked for and left pending, so a crash in between is finished by the next run."""
    cli = typer.Typer(help=f"Minyi {service} service", no_args_is_help=True, add_completion=False)

    @cli.command()
    def serve() -> None:
        """Run the service (HTTP + Kafka consumers + outbox relay) until SIGTERM."""
        try:
            settings = settings_factory()
            configure_logging(settings.log, service=service)
            app = build_app(settings)
        except (ValidationError, MissingAuthSecret) as exc:
            typer.echo(f"{service}: refusing to start: {exc}", err=True)
            raise typer.Exit(2) from exc
        uvicorn.run(
            app,
            host=settings.http.host,
            port=settings.http.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=20,
            **uvicorn_proxy_options(settings.http.trusted_proxies),
        )

    @cli.command()
    def migrate() -> None:
        """Apply this service's pending database migrations."""
        settings = settings_factory()
        configure_logging(settings.log, service=service)

        async def run() -> list[str]:
            conn = await connect(settings.database, schema=schema, service=service)
            try:
                return await apply_migrations(conn, schema, load_migrations(migrations_dir))
            finally:
                await conn.close()

        applied = asyncio.run(run())
        typer.echo(f"{service}: applied {len(applied)} migration(s) {applied}")
        if after_migrate is not None and (done := asyncio.run(after_migrate(settings))):
            typer.echo(f"{service}: {done}")

    @cli.command(name="seed")
    def seed_cmd() -> None:
        """Load the default reference data (idempotent)."""
        settings = settings_factory()
        configure_logging(settings.log, service=service)
        if seed is None:
            typer.echo(f"{service}: no reference data to load")
            return
        typer.echo(asyncio.run(seed(settings)))

    @cli.command()
    def asyncapi(
        out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    ) -> None:
        """Print the AsyncAPI document generated from the code."""
        text = render_asyncapi(build_runtime(settings_factory()), service)
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8")

    return cli


def asyncapi_app(runtime: ServiceRuntime, service: str) -> FastStream:
    """A FastStream app around the service's broker, for `faststream docs gen --factory` (its
    per-message declarations: the batches are how the service reads, not what is sent)."""
    return FastStream(
        runtime.broker.asyncapi_broker,
        specification=AsyncAPI(title=f"Minyi {service}", version="1.0.0"),
    )


def render_asyncapi(runtime: ServiceRuntime, service: str) -> str:
    schema: Any = asyncapi_app(runtime, service).schema.to_specification().to_jsonable()
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- shared commands

cli = typer.Typer(help="Minyi shared commands", no_args_is_help=True, add_completion=False)


@cli.callback()
def _shared() -> None:
    """Commands that belong to no single service."""


@cli.command("db-provision")
def db_provision(
    database_url: Annotated[
        str,
        typer.Option(
            envvar="DATABASE_URL",
            help="Administrator DSN (a superuser, or the database owner with CREATEROLE).",
        ),
    ],
    service: Annotated[
        list[str] | None, typer.Option(help="Only this service (repeatable); default: all.")
    ] = None,
    dev_passwords: Annotated[
        bool,
        typer.Option(
            help=f"A service without {roles.service_env_var('<service>')} gets the "
            "development password (local stacks and tests only)."
        ),
    ] = False,
) -> None:
    """Create or repair each service's login role minyi_<service>, owning its schema.

    Each role's password is the one in that service's own DSN (the variable
    MINYI_<SERVICE>__DATABASE__URL, whose user must be minyi_<service>). Idempotent.
    """
    wanted = service or list(roles.SERVICES)
    unknown = sorted(set(wanted) - set(roles.SERVICES))
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {unknown}", param_hint="--service")
    selected: list[roles.ServiceRole] = []
    for name in wanted:
        own_url = os.environ.get(roles.service_env_var(name))
        if own_url:
            try:
                selected.append(roles.role_from_url(name, own_url))
            except ValueError as exc:
                typer.echo(str(exc), err=True)
                raise typer.Exit(2) from exc
        elif dev_passwords:
            selected.append(roles.ServiceRole(name, roles.DEV_PASSWORD))
        else:
            typer.echo(
                f"{roles.service_env_var(name)} is not set: it names the role's password "
                "(or pass --dev-passwords on a development database)",
                err=True,
            )
            raise typer.Exit(2)
    changes = asyncio.run(roles.provision_url(database_url, selected))
    for change in changes:
        typer.echo(change)
    typer.echo(f"db-provision: {len(changes)} change(s) for {', '.join(r.role for r in selected)}")


if __name__ == "__main__":
    cli()
