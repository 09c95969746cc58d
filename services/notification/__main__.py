from services.notification.app import MIGRATIONS, SCHEMA, build_app, build_runtime, seed
from services.notification.settings import NotificationSettings
from shared.cli import service_cli

cli = service_cli(
    service="notification",
    schema=SCHEMA,
    settings_factory=NotificationSettings,
    build_app=build_app,
    build_runtime=build_runtime,
    migrations_dir=MIGRATIONS,
    seed=seed,
)

if __name__ == "__main__":
    cli()
