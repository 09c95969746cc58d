"""Named crash points for fault-injection tests (like etcd's gofail).

`MINYI_FAILPOINTS=after_handler_commit` makes `failpoint("after_handler_commit")` kill the
process on the spot, as a power cut would. Unset in production: the call is then a dict lookup.
"""

from __future__ import annotations

import os
import sys

_ACTIVE = frozenset(filter(None, os.environ.get("MINYI_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        sys.stderr.write(f"failpoint {name} hit: exiting abruptly\n")
        sys.stderr.flush()
        os._exit(137)
