"""Run code inside the ZenML side venv (.cache/venvs/zenml, prepared by tests/setup/zenml.sh).

ZenML never enters the product venv: tests drive it as a separate process, the way
an operator's ZenML would write the store the daemon reads.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.procs import REPO, venv_bin
from tests.zenml_stores.generate import populate_env

POPULATE = REPO / "tests" / "zenml_stores" / "populate.py"


def zenml_python() -> Path:
    return venv_bin("zenml", "python")


def run_in_zenml(argv: list[str], store_url: str, workdir: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python <argv>` in the ZenML venv against one store, with a throwaway ZenML config dir.

    Raises RuntimeError with ZenML's output tail when it fails.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(zenml_python()), *argv], env=populate_env(store_url, workdir / "zenml-config"),
        cwd=workdir, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"ZenML ({' '.join(argv[:1])}) exited {result.returncode}:\n{tail}")
    return result


def populate(store_url: str, workdir: Path) -> Path:
    """Write the scenario into the store with ZenML 0.98 (which creates and migrates it); returns the manifest."""
    manifest = workdir / "manifest.json"
    run_in_zenml([str(POPULATE), str(manifest)], store_url, workdir)
    return manifest
