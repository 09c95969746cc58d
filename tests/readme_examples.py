"""README.md's examples, read from the page itself (tests check what it says is true)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    """The text of the README's `## <title>` section."""
    text = README.read_text("utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def bad_input_example() -> tuple[dict[str, Any], int, dict[str, Any]]:
    """The bad-input example: the body it posts, and the status and body it says come back."""
    text = README.read_text("utf-8")
    block = text[text.index("Bad input gets a 422") :]
    block = block[block.index("```bash") : block.index("```", block.index("```bash") + 3)]
    posted = re.search(r"-d '(\{.*?\})'", block, re.S)
    assert posted is not None, "README's bad-input example posts no -d '{...}' body"
    body = json.loads(posted.group(1))
    answer = block[block.index("# → ") + len("# → ") :]
    status, _, rest = answer.partition(" ")
    documented = json.loads("".join(line.lstrip("# ") for line in rest.splitlines()))
    return body, int(status), documented
