"""Named crash points for the crash-safety tests (the technique of etcd's gofail).

`SCHEDULE_RECONCILER_FAILPOINTS=action.after_act` makes the process SIGKILL
itself the first time it reaches `hit("action.after_act")`: no cleanup, no
flush, exactly what an OOM kill or a node loss does. Unset in production,
where `hit` is one set lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SCHEDULE_RECONCILER_FAILPOINTS"
_ACTIVE = frozenset(p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip())


def hit(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
