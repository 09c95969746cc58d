"""The personal-data check over the whole test run's logs.

Every service process started by the tests writes its log to a file registered here; the
in-process code logs through structlog into a capture file too. At the end of the session each
line is scanned for Chinese mainland mobile numbers in clear (masked ones like 138****8000 are
fine) and for the voter names and WeChat openids the tests used. A hit fails the run.
"""

from __future__ import annotations

import re
from pathlib import Path

LOG_FILES: list[Path] = []

# A mainland mobile number in clear: 1[3-9] + 9 digits, optionally +86 / 86 in front, not part
# of a longer run of letters or digits (UUIDs, ids, offsets, timestamps).
MOBILE = re.compile(r"(?<![0-9A-Za-z*])(?:\+?86)?1[3-9]\d{9}(?![0-9A-Za-z*])")
# Values the tests use as voter names and WeChat openids (add new ones here).
KNOWN_PERSONAL = ("王小明", "张三", "李四", "oWX-test-openid")


def register(path: Path) -> None:
    LOG_FILES.append(path)


def scan_text(text: str) -> list[str]:
    hits = []
    for line in text.splitlines():
        if MOBILE.search(line) or any(value in line for value in KNOWN_PERSONAL):
            hits.append(line[:300])
    return hits


def scan_files(paths: list[Path]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in paths:
        if path.exists():
            hits = scan_text(path.read_text("utf-8", "replace"))
            if hits:
                found[str(path)] = hits[:5]
    return found
