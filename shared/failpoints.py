"""Named crash points for fault-injection tests (like etcd's gofail).

`MINYI_FAILPOINTS=after_handler_commit` makes `failpoint("after_handler_commit")` kill the
process on the spot, as a power cut would. Unset in production: the call is then a dict lookup.

Inside `deferred()` (a batch of messages sharing one transaction) a failpoint that is hit is held
until the caller `fire()`s it once the transaction committed, so "after the handler's commit"
still means after the commit of the transaction holding the handler's writes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ACTIVE = frozenset(filter(None, os.environ.get("MINYI_FAILPOINTS", "").split(",")))
_HELD: ContextVar[list[str] | None] = ContextVar("minyi_held_failpoints", default=None)


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        held = _HELD.get()
        if held is not None:
            held.append(name)
            return
        sys.stderr.write(f"failpoint {name} hit: exiting abruptly\n")
        sys.stderr.flush()
        os._exit(137)


class Held:
    def __init__(self) -> None:
        self.names: list[str] = []

    def fire(self) -> None:
        for name in self.names:
            failpoint(name)


@contextmanager
def deferred() -> Iterator[Held]:
    held = Held()
    token = _HELD.set(held.names)
    try:
        yield held
    finally:
        _HELD.reset(token)
