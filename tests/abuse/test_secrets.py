"""No secret ever leaves the daemon: the secrets scan.

A distinct random value sits in every secret slot the sandbox's targets can use (the
Airflow password file, the KFP token file and cookie, the Kubernetes token file, the
ZenML REST API key), the emulators accept exactly those values, and the real CLI and
daemon run as subprocesses: `run --once` at `log.level: debug`, `plan`, `plan --output
json`, `history --output json`, `check-config` and `check-config --connect`, and a running
`run` whose /metrics, /plan, /healthz and /readyz are fetched. Then the emulators are
told to accept other values, so every secret the daemon sends is refused (401/403) and
the refusals are logged and reported; a REST registry pointed at a server that refuses
the API key; and configs that carry a secret inline or through an env override, which
must be rejected without echoing it.

Everything produced (every stdout and stderr, every HTTP body, every row of the state
store: audit records with their snapshots, cycles, evidence) is scanned for each secret,
raw and in its base64, URL-safe base64 and URL-encoded forms. Zero hits.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml

from providers.emulators.sandbox import seed
from tests.integration.cleanup_support import Setup, cli, component_ids, emulated, write_config
from tests.support.procs import REPO

pytestmark = pytest.mark.integration


def _secret(kind: str) -> str:
    # Distinct, recognisable, and long enough that a chance match is impossible.
    return f"s3cr3t-{kind}-{secrets.token_hex(12)}"


def encodings(value: str) -> set[str]:
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value)}
    for data in (raw, f"admin:{value}".encode()):  # the secret alone, and as HTTP basic auth sends it
        forms.add(base64.b64encode(data).decode().rstrip("="))
        forms.add(base64.urlsafe_b64encode(data).decode().rstrip("="))
    return forms


class Collected:
    """Every text the suite saw the product produce, by where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str | bytes) -> None:
        self.texts.append((where, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))

    def run(self, setup: Setup, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        result = cli(setup, *args, env=env)
        self.add(f"{' '.join(args)} stdout", result.stdout)
        self.add(f"{' '.join(args)} stderr", result.stderr)
        return result

    def hits(self, values: dict[str, str]) -> list[str]:
        found = []
        for kind, value in values.items():
            for form in encodings(value):
                for where, text in self.texts:
                    if form in text:
                        found.append(f"{kind} ({form!r}) in {where}")
        return found


def _state_rows(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _serve(setup: Setup, env: dict[str, str], collected: Collected) -> None:
    """A running daemon: wait for its first cycle, fetch every endpoint, stop it with SIGTERM."""
    full = {**os.environ, **env}
    full.pop("SCHEDULE_RECONCILER_FAILPOINTS", None)
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(setup.path)], cwd=REPO,
                               env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        address = None
        lines = []
        deadline = time.monotonic() + 120
        while address is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r'"address": "([0-9.]+:\d+)"', line)
            address = match.group(1) if match else None
        assert address is not None, "".join(lines)
        base = f"http://{address}"
        while time.monotonic() < deadline and _get(base + "/readyz")[0] != 200:
            time.sleep(0.2)
        for path in ("/metrics", "/plan", "/healthz", "/readyz", "/nothing-here"):
            status, body = _get(base + path)
            collected.add(f"GET {path} ({status})", body)
        assert _get(base + "/plan")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        collected.add("run stdout", out)
        collected.add("run stderr", "".join(lines) + err)


def test_no_secret_appears_in_anything_the_daemon_produces(tmp_path: Path) -> None:
    values = {kind: _secret(kind) for kind in ("airflow-password", "kfp-token", "kfp-cookie", "k8s-token",
                                                "zenml-api-key")}
    setup = write_config(tmp_path, cleanup={"enabled": True, "approve": True, "dry_run_cycles": 1,
                                            "grace_period": "0s", "max_fraction": 1.0})
    Path(setup.target("airflow")["password_file"]).write_text(values["airflow-password"] + "\n")
    (tmp_path / "kfp-token").write_text(values["kfp-token"] + "\n")
    (tmp_path / "k8s-token").write_text(values["k8s-token"] + "\n")
    setup.target("kubeflow").update(token_file=str(tmp_path / "kfp-token"), cookies_env="KFP_COOKIE")
    setup.target("kubernetes").update(token_file=str(tmp_path / "k8s-token"))
    setup.raw["log"] = {"format": "json", "level": "debug"}
    setup.raw["metrics"]["port"] = 0
    setup.write()
    env = {"KFP_COOKIE": f"authservice_session={values['kfp-cookie']}",
           "ZENML_STORE_API_KEY": values["zenml-api-key"]}
    collected = Collected()

    with emulated(setup) as emulators:
        emulators.kubeflow.tokens = {values["kfp-token"]}
        emulators.kubeflow.cookies = {f"authservice_session={values['kfp-cookie']}"}
        emulators.kubernetes.tokens = {values["k8s-token"]}
        seed(emulators, component_ids())

        # The right secrets: every command works, at debug level.
        assert collected.run(setup, "check-config", "--connect", env=env).returncode == 0, collected.texts[-1]
        assert collected.run(setup, "run", "--once", env=env).returncode == 0, collected.texts[-1]
        assert collected.run(setup, "plan", env=env).returncode == 1
        assert collected.run(setup, "plan", "--output", "json", env=env).returncode == 1
        assert collected.run(setup, "run", "--once", env=env).returncode == 0  # acts: audit records with snapshots
        records = collected.run(setup, "history", "--output", "json", "--dry-run", "--limit", "1000", env=env)
        # Real (not dry-run) records: each carries the snapshot of the live object taken before acting.
        assert any(r["outcome"] != "dry_run" for r in json.loads(records.stdout)), records.stdout
        _serve(setup, env, collected)

        # Wrong secrets: the emulators now accept other values, so each one the daemon sends is refused.
        emulators.kubeflow.tokens = {"another-token"}
        emulators.kubeflow.cookies = {"authservice_session=another"}
        emulators.kubernetes.tokens = {"another-token"}
        emulators.airflow._credentials = ("admin", "another-password")
        emulators.airflow._tokens.clear()
        refused = collected.run(setup, "run", "--once", env=env)
        assert refused.returncode == 2
        assert re.search(r"40[13]", refused.stderr), refused.stderr  # the refusals are logged
        assert collected.run(setup, "plan", "--output", "json", env=env).returncode == 2
        assert collected.run(setup, "check-config", "--connect", env=env).returncode == 2

        # A REST registry that refuses the API key (the Airflow emulator has no /api/v1/login: 404,
        # and the login form carried the key).
        rest = Setup(tmp_path / "rest.yaml", yaml.safe_load(setup.path.read_text()), setup.state_db)
        rest.raw["registry"] = {"type": "zenml-rest", "url": emulators.airflow.url, "max_retries": 0}
        rest.write()
        assert collected.run(rest, "plan", env=env).returncode == 2
        assert collected.run(rest, "check-config", "--connect", env=env).returncode == 2

    # Configs that carry a secret themselves are refused without repeating it.
    inline = Setup(tmp_path / "inline.yaml", yaml.safe_load(setup.path.read_text()), setup.state_db)
    inline.target("kubeflow")["token"] = values["kfp-token"]
    inline.write()
    assert collected.run(inline, "check-config", env=env).returncode == 2
    override = {**env, "SCHEDULE_RECONCILER__TARGETS__KFP__COOKIES": values["kfp-cookie"]}
    assert collected.run(setup, "check-config", env=override).returncode == 2

    collected.add("state store", _state_rows(setup.state_db))
    assert sum(len(text) for _, text in collected.texts) > 10_000  # the scan had something to read
    assert collected.hits(values) == []
