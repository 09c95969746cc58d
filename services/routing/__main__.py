import asyncio
import getpass
import sys
from typing import Annotated

import typer

from services.routing.accounts import AccountRefused, StaffAccount, put_account
from services.routing.app import MIGRATIONS, SCHEMA, SERVICE, build_app, build_runtime, seed
from services.routing.settings import RoutingSettings
from services.routing.store import RoutingStore
from shared.auth import Role
from shared.cli import service_cli
from shared.db.pool import create_pool

cli = service_cli(
    service="routing",
    schema=SCHEMA,
    settings_factory=RoutingSettings,
    build_app=build_app,
    build_runtime=build_runtime,
    migrations_dir=MIGRATIONS,
    seed=seed,
)


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\r\n")


@cli.command()
def account(
    client_id: Annotated[str, typer.Argument(help="The id the account signs in with.")],
    role: Annotated[Role, typer.Option(help="department, station, committee, operator, admin.")],
    department: Annotated[str | None, typer.Option(help="Its department (a department's).")] = None,
    station: Annotated[str | None, typer.Option(help="Its station (role station).")] = None,
    deactivate: Annotated[
        bool, typer.Option(help="Stop the account signing in (no password is read).")
    ] = False,
) -> None:
    """Create or change a sign-in account (its password: one line on standard input, or asked
    for on a terminal; at least 12 characters), or deactivate it."""
    settings = RoutingSettings()
    wanted = StaffAccount(client_id, role, department_id=department, station_id=station)

    async def run(password: str) -> str:
        pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
        try:
            store = RoutingStore(pool)
            if deactivate:
                done = await store.deactivate_accounts([client_id])
                return f"routing: account {client_id!r} " + (
                    "deactivated" if done else "was not active"
                )
            created = await put_account(store, settings.accounts, wanted, password)
            return f"routing: account {client_id!r} ({role.value}) " + (
                "created" if created else "updated"
            )
        finally:
            await pool.close()

    try:
        typer.echo(asyncio.run(run("" if deactivate else _read_password())))
    except AccountRefused as exc:
        typer.echo(f"routing: {exc}", err=True)
        raise typer.Exit(2) from exc


if __name__ == "__main__":
    cli()
