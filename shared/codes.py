"""Codes people read out over the phone: a voter's receipt (XXXXX-XXXXX) and a suggestion's
reference (JY-XXXXX-XXXXX). Crockford's base 32: no I, L, O, U, so none can be confused."""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # pragma: allowlist secret
LENGTH = 10  # 32**10 ≈ 1.1e15 codes: unguessable at any rate the services allow


def new_code(prefix: str | None = None) -> str:
    """A random code, `XXXXX-XXXXX`, with `PREFIX-` in front when given."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    code = f"{raw[:5]}-{raw[5:]}"
    return f"{prefix}-{code}" if prefix else code
