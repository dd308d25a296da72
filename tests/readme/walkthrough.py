"""Produces the output shown in the README's "Cleaning up orphans safely" section.

    .venv/bin/python -m tests.readme.walkthrough

Starts the sandbox's emulators on free ports (the registry is the committed ZenML
0.98 store), steps a daemon through dry runs, approval and a restore, and prints
each command with what it printed. Nothing here is edited by hand in the README.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from providers.emulators.sandbox import running, seed
from reconciler.cli import build_daemon
from reconciler.config import load_config
from reconciler.logs import configure
from tests.integration.test_sandbox import sandbox_config
from tests.support.procs import REPO


def show(path: Path, *args: str) -> str:
    shown = " ".join(a if a != str(path) else "config.yaml" for a in args)
    result = subprocess.run([sys.executable, "-m", "reconciler", *args, "--config", str(path)], capture_output=True,
                            text=True, cwd=REPO, timeout=180)
    print(f"$ schedule-reconciler {shown}\n{result.stdout.rstrip()}\n(exit {result.returncode})\n", flush=True)
    return result.stdout


def main() -> None:
    configure("console", "error")
    work = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    path, _ = sandbox_config(work)
    raw = yaml.safe_load(path.read_text())
    raw["state"] = {"url": f"sqlite:///{work}/state.db"}
    raw["cleanup"] = {"enabled": True, "approve": False, "dry_run_cycles": 2, "grace_period": "0s",
                      "max_actions_per_cycle": 10, "max_fraction": 0.5}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path)
    with running(config) as emulators:
        daemon = build_daemon(config, path)
        seed(emulators, {c.name: c.id for c in daemon.reconciler.registry.read().components})
        daemon.leadership.start()
        print("# 1. cleanup.enabled: true, approve: false -- the daemon runs one cycle\n")
        daemon.run_cycle()
        show(path, "plan")
        print("# 2. a second dry-run cycle; the candidates are now ready and wait for approval\n")
        daemon.run_cycle()
        show(path, "plan")
        show(path, "history", "--dry-run", "--target", "vertex")
        print("# 3. set cleanup.approve: true in the config file; the next cycle picks it up and acts\n")
        raw["cleanup"]["approve"] = True
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        daemon.run_cycle()
        out = show(path, "history")
        print("# 4. undo one action\n")
        vertex_id = next(line.split()[0] for line in out.splitlines() if " vertex " in line)
        show(path, "restore", vertex_id)
        show(path, "history", "--target", "vertex")
        daemon.run_cycle()
        show(path, "plan")
        daemon.reconciler.close()
        daemon.store.close()


if __name__ == "__main__":
    main()
