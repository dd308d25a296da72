"""Start and stop the outside servers the tests need: on 127.0.0.1, by our own PID.

Each server runs in its own session (process group) so that stopping it ends
its children too, and only the processes the tests started are ever signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
VENVS = CACHE / "venvs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_bin(name: str, program: str) -> Path:
    """A program inside one of the venvs `make test` prepares under .cache/venvs."""
    path = VENVS / name / "bin" / program
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make test` (it prepares {name})")
    return path


class Server:
    """A process the tests started. `stop()` signals only its own process group."""

    def __init__(self, name: str, argv: Sequence[str | os.PathLike[str]], log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(log, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [str(a) for a in argv], stdout=self._log_file, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
        self._log_file.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, server: Server | None = None,
               interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and not server.alive():
            raise RuntimeError(f"{server.name} exited while waiting for {what}:\n{server.tail()}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    tail = f"\n{server.tail()}" if server is not None else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            return 200 <= response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False
