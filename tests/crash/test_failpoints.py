"""The failpoints themselves: `name@N` kills the process at the Nth pass, a bare name at the first, others never.

Each case runs in a forked child, which the failpoint must really SIGKILL.
"""

from __future__ import annotations

import os
import signal

import pytest

from reconciler import failpoints


def passes_before_death(spec: str, name: str, passes: int = 5) -> int | None:
    """How many times the child passed `name` before it was killed (None: it never was)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: count the passes into the pipe, die where the failpoint says
        os.close(read)
        try:
            failpoints.arm(spec)
            for _ in range(passes):
                failpoints.hit("some.other_point")
                os.write(write, b".")
                failpoints.hit(name)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        written = len(pipe.read())
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return written
    assert os.WEXITSTATUS(status) == 0
    return None


@pytest.mark.parametrize(("spec", "expected"), [
    ("action.after_act", 1),
    ("action.after_act@1", 1),
    ("action.after_act@3", 3),
    ("migrate.statement@2, action.after_act@4", 4),
    ("action.after_act@9", None),
    ("", None),
    ("action.after_audit_begin", None),
])
def test_a_failpoint_kills_at_its_nth_pass(spec: str, expected: int | None) -> None:
    assert passes_before_death(spec, "action.after_act") == expected


def test_arm_parses_like_the_environment() -> None:
    assert failpoints._parse(" a.b , c.d@3,,e@ ") == {"a.b": 1, "c.d": 3, "e": 1}
