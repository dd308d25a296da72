"""The Kubernetes emulator as its own process (`python -m providers.emulators.kubernetes`), read by KubernetesTarget."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from providers.emulators.kubernetes import plain_cron_job, zenml_cron_job
from providers.kubernetes import KubernetesTarget
from reconciler.config import KubernetesTarget as KubernetesConfig
from reconciler.model import ListingError, LiveState
from tests.support.procs import REPO, Server, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration

TOKEN = "integration-sa-token-77aa"
COMPONENT = "9b2f64c1-5c1e-4c3b-8d0a-2f1e6b7a9c30"
NAMESPACE = "zenml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("kubernetes-emulator")
    cron_jobs = [zenml_cron_job(f"pipeline_{i:03d}", COMPONENT, "0 9 * * *", NAMESPACE, name=f"c0ffee{i:02x}-p-{i:03d}")
                 for i in range(120)]
    cron_jobs.append(plain_cron_job("nightly-backup", "0 2 * * *", NAMESPACE))
    seed = work / "seed.json"
    seed.write_text(json.dumps({"cronjobs": cron_jobs, "tokens": [TOKEN]}))
    port = free_port()
    server = Server("kubernetes-emulator", [sys.executable, "-m", "providers.emulators.kubernetes", "--port",
                                            str(port), "--seed", seed], work / "emulator.log", cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/version"), 30, "the Kubernetes emulator", server)
        yield url
    finally:
        server.stop()


@pytest.fixture()
def clean(cluster: str) -> Iterator[str]:
    requests.delete(f"{cluster}/_emulator/faults", timeout=5).raise_for_status()
    requests.delete(f"{cluster}/_emulator/requests", timeout=5).raise_for_status()
    yield cluster
    requests.delete(f"{cluster}/_emulator/faults", timeout=5).raise_for_status()


def provider(url: str, tmp_path: Path, calls: list[tuple[str, str]] | None = None,
             **settings: Any) -> KubernetesTarget:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    values: dict[str, Any] = {"type": "kubernetes", "name": "k8s", "namespace": NAMESPACE, "host": url,
                              "token_file": str(token_file), "page_size": 50, "timeout": 5, "max_retries": 2}
    values.update(settings)
    recorded = calls if calls is not None else []
    return KubernetesTarget(KubernetesConfig(**values), lambda operation, code: recorded.append((operation, code)))


def requests_log(url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/_emulator/requests", timeout=5)
    response.raise_for_status()
    return response.json()


def test_the_seeded_cluster_lists_in_pages_read_only(clean: str, tmp_path: Path) -> None:
    live = provider(clean, tmp_path).list_schedules()
    assert len(live) == 121
    zenml = [s for s in live if s.component_id]
    assert len(zenml) == 120
    assert {s.component_id for s in zenml} == {COMPONENT.replace("-", "")}
    assert [s for s in live if not s.component_id][0].name == "nightly-backup"
    log = requests_log(clean)
    assert [r["operation"] for r in log] == ["list_schedules"] * 3
    assert [r["query"]["limit"] for r in log] == [["50"]] * 3
    assert all(r["method"] == "GET" for r in log)


def test_410_mid_listing_over_http_restarts_and_completes(clean: str, tmp_path: Path) -> None:
    requests.post(f"{clean}/_emulator/faults", json={"list_schedules": {"status": 410, "after": 1, "times": 1}},
                  timeout=5).raise_for_status()
    calls: list[tuple[str, str]] = []
    assert len(provider(clean, tmp_path, calls).list_schedules()) == 121
    assert [c for _, c in calls] == ["200", "410", "200", "200", "200"]


def test_a_hang_over_http_is_a_listing_error(clean: str, tmp_path: Path) -> None:
    requests.post(f"{clean}/_emulator/faults", json={"list_schedules": {"hang": 3, "after": 1}},
                  timeout=5).raise_for_status()
    with pytest.raises(ListingError) as raised:
        provider(clean, tmp_path, timeout=0.5, max_retries=1).list_schedules()
    assert "no answer" in str(raised.value) and TOKEN not in str(raised.value)


def test_pause_then_resume_over_the_wire(clean: str, tmp_path: Path) -> None:
    target = provider(clean, tmp_path)
    native_id = f"{NAMESPACE}/c0ffee00-p-000"
    assert target.pause(native_id) is True
    paused = target.get(native_id)
    assert paused is not None and paused.state is LiveState.PAUSED
    assert target.resume(native_id) is True
    patches = [r for r in requests_log(clean) if r["method"] == "PATCH"]
    assert [r["body"] for r in patches] == [{"spec": {"suspend": True}}, {"spec": {"suspend": False}}]
