from services.routing.app import MIGRATIONS, SCHEMA, build_app, build_runtime, seed
from services.routing.settings import RoutingSettings
from shared.cli import service_cli

cli = service_cli(
    service="routing",
    schema=SCHEMA,
    settings_factory=RoutingSettings,
    build_app=build_app,
    build_runtime=build_runtime,
    migrations_dir=MIGRATIONS,
    seed=seed,
)

if __name__ == "__main__":
    cli()
