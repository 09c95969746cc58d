"""Offline records from CSV / XLSX files: rows → opinions, each with a row key, so that a file
imported twice (or resumed after a crash) adds every opinion once.

Columns (header row, any order; unknown columns refused): content (required), station_id
(or `--station`), channel (default station_reception), category_id, deputy_id, voter_name,
voter_phone, occurred_at (ISO date or date-time; without a zone, China time), external_id (a
stable id from the source; the row key becomes it instead of file fingerprint + row number).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import StringConstraints, ValidationError, field_validator

from services.intake.api import OpinionFields, StaffChannel, make_opinion
from services.intake.domain import Opinion, ReferenceSnapshot
from shared.events import Channel

CHINA = ZoneInfo("Asia/Shanghai")
COLUMNS = frozenset(
    {
        "external_id",
        "channel",
        "station_id",
        "category_id",
        "deputy_id",
        "content",
        "voter_name",
        "voter_phone",
        "occurred_at",
    }
)


class UnreadableFile(ValueError):
    pass


class RowIn(OpinionFields):
    channel: StaffChannel = StaffChannel.STATION_RECEPTION
    station_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = (
        None
    )
    external_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] | None = (
        None
    )

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _china_time(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            try:
                value = datetime.fromisoformat(text)
            except ValueError:
                return text  # let pydantic say what is wrong
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime.combine(value, time(12, 0))
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=CHINA)
        return value


@dataclass(frozen=True)
class Rejected:
    row: int  # the line in the file (the header is row 1)
    reason: str


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def _check_header(header: list[str]) -> list[str]:
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n and n not in COLUMNS]
    if unknown:
        raise UnreadableFile(f"unknown column(s) {unknown}; expected some of {sorted(COLUMNS)}")
    if "content" not in names:
        raise UnreadableFile("the header has no `content` column")
    return names


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, values by column) for every non-empty data row."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            names = _check_header(next(reader, []))
            for number, values in enumerate(reader, start=2):
                if any(v.strip() for v in values):
                    yield number, dict(zip(names, values, strict=False))
    elif suffix == ".xlsx":
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = book.worksheets[0].iter_rows(values_only=True)
            names = _check_header([str(v or "") for v in next(rows, ())])
            for number, values in enumerate(rows, start=2):
                if any(v not in (None, "") for v in values):
                    yield number, dict(zip(names, values, strict=False))
        finally:
            book.close()
    else:
        raise UnreadableFile(f"{path.name}: only .csv and .xlsx files can be imported")


def count_rows(path: Path) -> int:
    return sum(1 for _ in read_rows(path))


def _reason(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
    )


def prepare(
    number: int,
    values: dict[str, Any],
    *,
    snapshot: ReferenceSnapshot,
    default_station: str | None,
    file_key: str,
    entered_by: str,
    now: datetime,
) -> Opinion | Rejected:
    cleaned = {
        k: (v.strip() if isinstance(v, str) else v)
        for k, v in values.items()
        if k and v not in (None, "")
    }
    if "voter_phone" in cleaned:
        cleaned["voter_phone"] = str(cleaned["voter_phone"])
    try:
        row = RowIn.model_validate(cleaned)
    except ValidationError as exc:
        return Rejected(number, _reason(exc))
    station_id = row.station_id or default_station
    if not station_id:
        return Rejected(number, "station_id: missing (and no --station given)")
    problems = snapshot.problems(
        station_id=station_id, category_id=row.category_id, deputy_id=row.deputy_id
    )
    if problems:
        return Rejected(number, "; ".join(f"{p.field}: {p.message}" for p in problems))
    key = f"ext:{row.external_id}" if row.external_id else f"file:{file_key}:{number}"
    return make_opinion(
        row,
        channel=Channel(row.channel.value),
        station_id=station_id,
        town_id=snapshot.station_towns[station_id],
        now=now,
        entered_by=entered_by,
        import_key=key,
    )
