from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.intake import importer
from services.intake.app import MIGRATIONS, SCHEMA, build_app, build_runtime, seed
from services.intake.domain import SERVICE, Opinion
from services.intake.reference import KINDS
from services.intake.settings import IntakeSettings
from services.intake.store import IntakeStore, ReferenceStore
from shared.cli import service_cli
from shared.db.pool import create_pool
from shared.logs import configure_logging

cli = service_cli(
    service="intake",
    schema=SCHEMA,
    settings_factory=IntakeSettings,
    build_app=build_app,
    build_runtime=build_runtime,
    migrations_dir=MIGRATIONS,
    seed=seed,
)


@cli.command(name="import-file")
def import_file(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    station: Annotated[
        str | None, typer.Option(help="Station of rows without a station_id column value.")
    ] = None,
    chunk: Annotated[int, typer.Option(min=1, max=5000, help="Rows per transaction.")] = 500,
    rejects: Annotated[
        Path | None, typer.Option(help="Also write the rejected rows (row, reason) to this CSV.")
    ] = None,
) -> None:
    """Import offline records (CSV or XLSX). Resumable and idempotent: rows already imported
    (same file and row, or same external_id) are skipped; rejected rows are reported."""
    settings = IntakeSettings()
    configure_logging(settings.log, service=SERVICE)
    console = Console()
    try:
        total = importer.count_rows(path)
    except importer.UnreadableFile as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    added, skipped, rejected = asyncio.run(_import(settings, path, station, chunk, total, console))
    console.print(
        f"{path.name}: {total} rows — {added} imported, {skipped} already imported, "
        f"{len(rejected)} rejected"
    )
    if rejected:
        table = Table("row", "reason", title="Rejected rows")
        for r in rejected[:200]:
            table.add_row(str(r.row), r.reason)
        console.print(table)
        if len(rejected) > 200:
            console.print(f"… and {len(rejected) - 200} more")
        if rejects is not None:
            import csv

            with rejects.open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["row", "reason"])
                writer.writerows((r.row, r.reason) for r in rejected)
        raise typer.Exit(1)


async def _import(
    settings: IntakeSettings,
    path: Path,
    station: str | None,
    chunk: int,
    total: int,
    console: Console,
) -> tuple[int, int, list[importer.Rejected]]:
    pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
    store = IntakeStore(pool, topic_prefix=settings.kafka.topic_prefix)
    added = skipped = 0
    rejected: list[importer.Rejected] = []
    try:
        snapshot = await store.reference_snapshot()
        file_key = importer.fingerprint(path)
        now = datetime.now(UTC)
        pending: list[Opinion] = []
        first_row: dict[str, int] = {}  # row key → the row that had it first
        progress = Progress(
            TextColumn("importing {task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("import", total=total, name=path.name)

            async def flush() -> None:
                nonlocal added, skipped
                if pending:
                    fresh = await store.import_opinions(pending)
                    added += fresh
                    skipped += len(pending) - fresh
                    progress.advance(task, len(pending))
                    pending.clear()

            for number, values in importer.read_rows(path):
                prepared = importer.prepare(
                    number,
                    values,
                    snapshot=snapshot,
                    default_station=station,
                    file_key=file_key,
                    entered_by=f"import:{path.name}",
                    now=now,
                )
                if isinstance(prepared, importer.Rejected):
                    rejected.append(prepared)
                    progress.advance(task)
                    continue
                key = prepared.import_key or ""
                if key in first_row:
                    rejected.append(
                        importer.Rejected(number, f"duplicate of row {first_row[key]} ({key})")
                    )
                    progress.advance(task)
                    continue
                first_row[key] = number
                pending.append(prepared)
                if len(pending) >= chunk:
                    await flush()
            await flush()
    finally:
        await pool.close()
    return added, skipped, rejected


@cli.command(name="reference-upsert")
def reference_upsert(
    kind: Annotated[str, typer.Argument(help="town, station, category, department or deputy")],
    record_id: Annotated[str, typer.Argument(metavar="ID")],
    data: Annotated[str, typer.Option(help='The fields as JSON, e.g. \'{"name": "…"}\'.')],
) -> None:
    """Create or change a reference record (publishes reference.changed)."""
    settings = IntakeSettings()
    configure_logging(settings.log, service=SERVICE)
    if kind not in KINDS:
        raise typer.BadParameter(f"one of {sorted(KINDS)}", param_hint="KIND")
    try:
        record = KINDS[kind].model.model_validate({**json.loads(data), "id": record_id})
    except (ValueError, ValidationError) as exc:
        typer.echo(f"invalid {kind}: {exc}", err=True)
        raise typer.Exit(2) from exc

    async def run() -> str:
        pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
        try:
            store = ReferenceStore(pool, topic_prefix=settings.kafka.topic_prefix)
            missing = await store.missing_parents(KINDS[kind], record.model_dump())
            if missing:
                return f"refused: unknown {missing}"
            envelope = await store.save(KINDS[kind], record.model_dump(), by="cli")
            return f"{kind} {record_id} saved (event {envelope.event_id})"
        finally:
            await pool.close()

    outcome = asyncio.run(run())
    typer.echo(outcome)
    if outcome.startswith("refused"):
        raise typer.Exit(1)


@cli.command(name="reference-retire")
def reference_retire(
    kind: Annotated[str, typer.Argument(help="town, station, category, department or deputy")],
    record_id: Annotated[str, typer.Argument(metavar="ID")],
) -> None:
    """Retire a reference record (publishes reference.changed with retired=true)."""
    settings = IntakeSettings()
    configure_logging(settings.log, service=SERVICE)
    if kind not in KINDS:
        raise typer.BadParameter(f"one of {sorted(KINDS)}", param_hint="KIND")

    async def run() -> bool:
        pool = await create_pool(settings.database, schema=SCHEMA, service=SERVICE)
        try:
            store = ReferenceStore(pool, topic_prefix=settings.kafka.topic_prefix)
            return await store.retire(KINDS[kind], record_id, by="cli") is not None
        finally:
            await pool.close()

    if not asyncio.run(run()):
        typer.echo(f"no {kind} {record_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{kind} {record_id} retired")


if __name__ == "__main__":
    cli()
