from services.intake.app import MIGRATIONS, SCHEMA, build_app, build_runtime, seed
from services.intake.settings import IntakeSettings
from shared.cli import service_cli

cli = service_cli(
    service="intake",
    schema=SCHEMA,
    settings_factory=IntakeSettings,
    build_app=build_app,
    build_runtime=build_runtime,
    migrations_dir=MIGRATIONS,
    seed=seed,
)

if __name__ == "__main__":
    cli()
