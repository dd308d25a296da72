"""Build the committed ZenML store files: one SQLite file per pinned ZenML version.

    python tests/zenml_stores/generate.py            # every version below
    python tests/zenml_stores/generate.py 0.91.2     # just one

For each version: a venv from a committed lock (uv), then `populate.py` inside it
against a new SQLite file (ZenML creates and migrates it), then `VACUUM INTO`
`files/zenml-<version>.db` plus the manifest `files/zenml-<version>.json`.
Stdlib only; run it with any Python 3.11. Needs PyPI the first time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FILES = HERE / "files"
UV = os.environ.get("UV") or str(REPO / ".cache" / "uv" / "bin" / "uv")
PYTHON = os.environ.get("PYTHON", "python3.11")

# version -> (venv, lock). 0.98.0 shares the venv tests/setup/zenml.sh prepares.
VERSIONS: dict[str, tuple[Path, Path]] = {
    "0.98.0": (REPO / ".cache" / "venvs" / "zenml", REPO / "tests" / "setup" / "zenml.lock"),
    "0.91.2": (REPO / ".cache" / "venvs" / "zenml-0.91.2", HERE / "locks" / "zenml-0.91.2.lock"),
    "0.75.0": (REPO / ".cache" / "venvs" / "zenml-0.75.0", HERE / "locks" / "zenml-0.75.0.lock"),
}


def ensure_venv(venv: Path, lock: Path) -> Path:
    want = hashlib.sha256(lock.read_bytes()).hexdigest()
    marker = venv / ".installed"
    if not (marker.exists() and marker.read_text().strip() == want):
        subprocess.run([UV, "venv", "--quiet", "--allow-existing", "-p", PYTHON, str(venv)], check=True)
        subprocess.run([UV, "pip", "sync", "--quiet", "-p", str(venv), str(lock)], check=True)
        marker.write_text(want + "\n")
    return venv / "bin" / "python"


def populate_env(store_url: str, config_dir: Path) -> dict[str, str]:
    """ZenML pointed at one store, with its global config in a throwaway directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(
        ZENML_STORE_URL=store_url,
        ZENML_CONFIG_PATH=str(config_dir),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_VERBOSITY="ERROR",
        ZENML_ENABLE_RICH_TRACEBACK="false",
        ZENML_DEBUG="false",
    )
    return env


def build(version: str) -> Path:
    venv, lock = VERSIONS[version]
    python = ensure_venv(venv, lock)
    FILES.mkdir(exist_ok=True)
    target = FILES / f"zenml-{version}.db"
    manifest = FILES / f"zenml-{version}.json"
    with tempfile.TemporaryDirectory(prefix=f"zenml-{version}-") as tmp:
        db = Path(tmp) / "zenml.db"
        subprocess.run(
            [str(python), str(HERE / "populate.py"), str(manifest)],
            env=populate_env(f"sqlite:///{db}", Path(tmp) / "config"), check=True,
        )
        target.unlink(missing_ok=True)
        with sqlite3.connect(db) as conn:
            conn.execute("VACUUM INTO ?", (str(target),))
        conn.close()
    return target


def main(argv: list[str]) -> int:
    versions = argv or list(VERSIONS)
    for version in versions:
        if version not in VERSIONS:
            print(f"unknown ZenML version {version}; pinned: {', '.join(VERSIONS)}", file=sys.stderr)
            return 2
        path = build(version)
        print(f"{path.relative_to(REPO)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
