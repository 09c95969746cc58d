"""No new secret in the repository: detect-secrets over every tracked file, against
`.secrets.baseline` (today's findings, all audited as non-secrets: dev defaults such as
`minyi-dev-password` and the dev JWT key, and test fixtures).

A finding that is truly no secret (a test fixture, a documented dev default): add it with
    .venv/bin/detect-secrets scan --baseline .secrets.baseline $(git ls-files)
and audit it (`.venv/bin/detect-secrets audit .secrets.baseline`). A real credential: remove
it, and rotate it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / ".secrets.baseline"
HOOK = Path(sys.executable).parent / "detect-secrets-hook"


def _files() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ours = [str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "security").glob("*.py")]
    # The baseline itself holds hashes of the audited findings: not a place to look for more.
    return sorted({f for f in [*tracked, *ours] if (ROOT / f).is_file() and f != BASELINE.name})


def test_the_baseline_holds_only_audited_non_secrets():
    results = json.loads(BASELINE.read_text("utf-8"))["results"]
    unaudited = [
        f"{path}:{item['line_number']} {item['type']}"
        for path, items in results.items()
        for item in items
        if item.get("is_secret") is not False
    ]
    assert unaudited == [], "baseline entries not audited as non-secrets"


def test_no_new_secrets_in_tracked_files(tmp_path: Path):
    if not HOOK.exists():
        pytest.fail(f"{HOOK} is missing: install detect-secrets into the venv")
    # A copy: the hook rewrites its baseline (line numbers) and refuses an unstaged one.
    baseline = tmp_path / "baseline.json"
    shutil.copy(BASELINE, baseline)
    done = subprocess.run(
        [str(HOOK), "--json", "--baseline", str(baseline), *_files()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # 0: nothing new; 3: nothing new, the copy's line numbers were refreshed; 1: new secrets.
    assert done.returncode in (0, 3), f"new secrets (not in .secrets.baseline):\n{done.stdout}"
