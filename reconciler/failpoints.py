"""Named crash points for the crash-safety tests (the technique of etcd's gofail).

`SCHEDULE_RECONCILER_FAILPOINTS=action.after_act` makes the process SIGKILL
itself the first time it reaches `hit("action.after_act")`: no cleanup, no
flush, exactly what an OOM kill or a node loss does. `name@N` fires on the Nth
time the point is reached instead (`migrate.statement@3`: after the third
statement of a migration), so a test can pick a random spot among many; several
points are separated by commas. Unset in production, where `hit` is one dict
lookup.

Points: action.after_audit_begin, action.after_mark_requested (the request is
about to go out), action.after_act, action.after_audit_complete,
migrate.statement (after each SQL statement a migration runs, inside a
revision), migrate.after_revision (after each Alembic revision, before the
migration transaction commits).
"""

from __future__ import annotations

import os
import signal

ENV = "SCHEDULE_RECONCILER_FAILPOINTS"


def _parse(value: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in value.split(","):
        name, _, nth = item.strip().partition("@")
        if name:
            points[name] = int(nth) if nth.strip() else 1
    return points


_ACTIVE = _parse(os.environ.get(ENV, ""))
_SEEN: dict[str, int] = {}


def arm(value: str) -> None:
    """Set the points as the environment variable would (a test's forked child, after its imports)."""
    global _ACTIVE
    _ACTIVE = _parse(value)
    _SEEN.clear()


def active(name: str) -> bool:
    return name in _ACTIVE


def hit(name: str) -> None:
    nth = _ACTIVE.get(name)
    if nth is None:
        return
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] >= nth:
        os.kill(os.getpid(), signal.SIGKILL)
