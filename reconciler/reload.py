"""Live config reload: the config file is looked at before every cycle.

A Kubernetes ConfigMap volume updates by swapping a `..data` symlink, so the
file's own mtime may never change; `os.stat` follows the links and sees a new
inode. A change whose text is the same is ignored. An invalid file raises
ConfigError once per change; the caller keeps the config it has.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.config import Config, load_config

# Sections read once at start (a listening socket, a database, a lease): a change waits for a restart.
RESTART_ONLY = ("metrics", "state", "leader_election")


class ConfigWatcher:
    def __init__(self, path: Path, environ: Mapping[str, str] = os.environ) -> None:
        self.path = path
        self._environ = environ
        self._stamp = _stamp(path)
        self._digest = _digest(path)

    def poll(self) -> Config | None:
        """The new config when the file changed, None when it did not. Raises ConfigError."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        digest = _digest(self.path)
        if digest == self._digest:
            return None
        self._digest = digest
        return load_config(self.path, self._environ)


def live_part(new: Config, running: Config) -> tuple[Config, list[str]]:
    """`new` with the restart-only sections kept as they run; and the names of those that differ."""
    waiting = [name for name in RESTART_ONLY if getattr(new, name) != getattr(running, name)]
    return new.model_copy(update={name: getattr(running, name) for name in RESTART_ONLY}), waiting


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None

