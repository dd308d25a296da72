"""The KFP emulator as its own process (`python -m providers.emulators.kubeflow`), read by KubeflowTarget.

Faults and the request log go over the emulator's HTTP control endpoints, the
way the sandbox and an out-of-process benchmark drive it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from providers.emulators.kubeflow import seed_recurring_run, zenml_display_name
from providers.kubeflow import KubeflowTarget
from reconciler.config import KubeflowTarget as KubeflowConfig
from reconciler.model import ListingError, LiveState
from tests.support.procs import REPO, Server, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration

TOKEN = "integration-token-5e6f"
EXPERIMENT_ID = "3f1c8e2a-0b7d-4c55-9a61-2d8f0e4b7c19"


@pytest.fixture(scope="module")
def kfp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("kfp-emulator")
    experiment = {"experiment_id": EXPERIMENT_ID, "display_name": "training_pipeline", "description": "",
                  "created_at": "2026-01-01T00:00:00Z", "namespace": "kubeflow", "storage_state": "AVAILABLE"}
    runs = [seed_recurring_run(zenml_display_name("training_pipeline"), EXPERIMENT_ID, cron="0 0 9 * * *",
                               created_at="2026-01-02T00:00:00Z") for _ in range(450)]
    seed = work / "seed.json"
    seed.write_text(json.dumps({"experiments": [experiment], "recurring_runs": runs, "tokens": [TOKEN]}))
    port = free_port()
    server = Server("kfp-emulator", [sys.executable, "-m", "providers.emulators.kubeflow", "--port", str(port),
                                     "--seed", seed], work / "emulator.log", cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/apis/v2beta1/healthz"), 30, "the KFP emulator", server)
        yield url
    finally:
        server.stop()


@pytest.fixture()
def clean(kfp: str) -> Iterator[str]:
    requests.delete(f"{kfp}/_emulator/faults", timeout=5).raise_for_status()
    requests.delete(f"{kfp}/_emulator/requests", timeout=5).raise_for_status()
    yield kfp
    requests.delete(f"{kfp}/_emulator/faults", timeout=5).raise_for_status()


def provider(url: str, token_file: Path, calls: list[tuple[str, str]] | None = None, **settings: Any) -> KubeflowTarget:
    token_file.write_text(TOKEN)
    values: dict[str, Any] = {"type": "kubeflow", "name": "kfp", "host": url, "token_file": str(token_file),
                              "timeout": 5, "max_retries": 2}
    values.update(settings)
    recorded = calls if calls is not None else []
    return KubeflowTarget(KubeflowConfig(**values), lambda operation, code: recorded.append((operation, code)))


def requests_log(url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/_emulator/requests", timeout=5)
    response.raise_for_status()
    return response.json()


def test_the_seeded_emulator_lists_in_three_pages_read_only(clean: str, tmp_path: Path) -> None:
    live = provider(clean, tmp_path / "token").list_schedules()
    assert len(live) == 450
    assert {s.group for s in live} == {"training_pipeline"}
    assert all(s.zenml_marks == frozenset({"entrypoint"}) and s.state is LiveState.ENABLED for s in live)
    log = requests_log(clean)
    assert [r["operation"] for r in log] == ["list_schedules"] * 3 + ["list_experiments"]
    assert all(r["method"] == "GET" for r in log)


def test_faults_set_over_http_fail_the_listing_on_page_two(clean: str, tmp_path: Path) -> None:
    requests.post(f"{clean}/_emulator/faults", json={"list_schedules": {"status": 502, "after": 1}},
                  timeout=5).raise_for_status()
    calls: list[tuple[str, str]] = []
    with pytest.raises(ListingError) as raised:
        provider(clean, tmp_path / "token", calls, max_retries=1).list_schedules()
    assert "502" in str(raised.value) and TOKEN not in str(raised.value)
    assert calls == [("list_schedules", "200"), ("list_schedules", "502"), ("list_schedules", "502")]


def test_a_503_burst_with_retry_after_is_ridden_out(clean: str, tmp_path: Path) -> None:
    requests.post(f"{clean}/_emulator/faults",
                  json={"list_schedules": {"status": 503, "retry_after": 0.1, "times": 2}}, timeout=5).raise_for_status()
    calls: list[tuple[str, str]] = []
    assert len(provider(clean, tmp_path / "token", calls).list_schedules()) == 450
    assert [c for _, c in calls] == ["503", "503", "200", "200", "200", "200"]


def test_pause_goes_over_the_wire_and_shows_in_the_next_listing(clean: str, tmp_path: Path) -> None:
    target = provider(clean, tmp_path / "token")
    first = target.list_schedules()[0]
    assert target.pause(first.native_id) is True
    again = {s.native_id: s for s in target.list_schedules()}
    assert again[first.native_id].state is LiveState.PAUSED
    assert target.resume(first.native_id) is True
    log = requests_log(clean)
    assert [(r["method"], r["path"].rsplit(":", 1)[-1]) for r in log if r["method"] == "POST"] == [
        ("POST", "disable"), ("POST", "enable")]
