from services.evaluation.app import MIGRATIONS, SCHEMA, build_app, build_runtime
from services.evaluation.settings import EvaluationSettings
from shared.cli import service_cli

cli = service_cli(
    service="evaluation",
    schema=SCHEMA,
    settings_factory=EvaluationSettings,
    build_app=build_app,
    build_runtime=build_runtime,
    migrations_dir=MIGRATIONS,
)

if __name__ == "__main__":
    cli()
