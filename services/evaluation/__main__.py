from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from services.evaluation.app import MIGRATIONS, SCHEMA, SERVICE, build_app, build_runtime, seed
from services.evaluation.reports import MonthlyReport, build_report
from services.evaluation.reports.pdf import render_pdf
from services.evaluation.reports.xlsx import render_xlsx
from services.evaluation.settings import EvaluationSettings
from services.evaluation.store import EvaluationStore
from shared.cli import service_cli
from shared.db.pool import create_pool
from shared.logs import configure_logging


async def finish_migrations(settings: EvaluationSettings) -> str | None:
    """Rebuild the KPI counters when a migration asked for it (0004: the new KPI rules)."""
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        store = EvaluationStore(pool)
        if not await store.recount_pending():
            return None
        return f"{await store.recount_kpis()} KPI counter rows rebuilt from the case facts"
    finally:
        await pool.close()


cli = service_cli(
    service=SERVICE,
    schema=SCHEMA,
    settings_factory=EvaluationSettings,
    build_app=build_app,
    build_runtime=build_runtime,
    migrations_dir=MIGRATIONS,
    seed=seed,
    after_migrate=finish_migrations,
)


async def load_report(settings: EvaluationSettings, month: str, town: str | None) -> MonthlyReport:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await build_report(EvaluationStore(pool), month, town)
    finally:
        await pool.close()


def write_report(report: MonthlyReport, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    xlsx = out / f"{report.file_stem}.xlsx"
    pdf = out / f"{report.file_stem}.pdf"
    xlsx.write_bytes(render_xlsx(report))
    pdf.write_bytes(render_pdf(report))
    return [xlsx, pdf]


async def recount(settings: EvaluationSettings) -> int:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    try:
        return await EvaluationStore(pool).recount_kpis()
    finally:
        await pool.close()


@cli.command("recount-kpis")
def recount_kpis() -> None:
    """Rebuild the KPI counters from the case facts by the current rules (once after
    migration 0004; safe to run again at any time)."""
    settings = EvaluationSettings()
    configure_logging(settings.log, service=SERVICE)
    rows = asyncio.run(recount(settings))
    typer.echo(f"evaluation: {rows} KPI counter rows rebuilt from the case facts")


@cli.command()
def report(
    month: Annotated[str, typer.Option(help="The month, e.g. 2025-03.")],
    out: Annotated[Path, typer.Option(help="Directory to write the XLSX and PDF into.")],
    town: Annotated[str | None, typer.Option(help="A town id; the whole city without.")] = None,
) -> None:
    """Write the monthly report (XLSX and PDF) of the city or one town."""
    settings = EvaluationSettings()
    configure_logging(settings.log, service=SERVICE)
    try:
        loaded = asyncio.run(load_report(settings, month, town))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from exc
    for path in write_report(loaded, out):
        typer.echo(str(path))


if __name__ == "__main__":
    cli()
