"""Who sees what in the console, and masking of personal data. Pure functions."""

from __future__ import annotations

import re
from enum import StrEnum

WIDE_ROLES = frozenset({"operator", "committee", "admin"})


class Section(StrEnum):
    OVERVIEW = "overview"
    DEPARTMENTS = "departments"  # every department's queue
    OWN_DEPARTMENT = "own_department"
    STATIONS = "stations"  # every station's activity
    OWN_STATION = "own_station"
    CASES = "cases"
    PIPELINE = "pipeline"


def visible_sections(role: str) -> frozenset[Section]:
    """Operators, the committee and admins see everything; station staff their station;
    departments their own cases; anyone else nothing."""
    if role in WIDE_ROLES:
        return frozenset(
            {
                Section.OVERVIEW,
                Section.DEPARTMENTS,
                Section.STATIONS,
                Section.CASES,
                Section.PIPELINE,
            }
        )
    if role == "department":
        return frozenset({Section.OWN_DEPARTMENT, Section.CASES})
    if role == "station":
        return frozenset({Section.OWN_STATION, Section.CASES})
    return frozenset()


def may_view_department(role: str, own_department: str | None, department_id: str) -> bool:
    if role in WIDE_ROLES:
        return True
    return role == "department" and own_department == department_id


def may_view_station(role: str, own_station: str | None, station_id: str) -> bool:
    if role in WIDE_ROLES:
        return True
    return role == "station" and own_station == station_id


def sees_work_contacts(role: str) -> bool:
    """Responsible person of a case: departments (their own cases), the committee,
    operators and admins need it; station staff do not. Phone numbers are masked anyway."""
    return role in WIDE_ROLES or role == "department"


# Mainland mobile numbers, with or without +86 / 86, and landlines like 0576-86123456.
_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")


def mask_phone(number: str) -> str:
    digits = re.sub(r"\D", "", number)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_text(text: str | None) -> str:
    """Text with every phone number masked (138****8000); never shows a full number."""
    if not text:
        return ""
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def mask_name(name: str | None) -> str:
    """王小明 → 王**; keeps only the first character."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1)
