"""KubernetesLease against the Kubernetes emulator's coordination.k8s.io/v1 Leases, through the real client."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

import providers.lease
from providers import build_elector
from providers.lease import KubernetesLease
from reconciler.config import LeaderElectionConfig
from reconciler.leader import DatabaseLease, Leadership
from reconciler.state import StateStore
from tests.support.procs import REPO, Server, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration

TOKEN = "lease-sa-token-5d1e"
NAMESPACE = "zenml"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")  # client-go's RFC3339Micro, UTC


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("kubernetes-lease-emulator")
    seed = work / "seed.json"
    seed.write_text(json.dumps({"tokens": [TOKEN]}))
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


@pytest.fixture()
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    return str(path)


def config(url: str, token_file: str, lease_name: str, **settings: Any) -> LeaderElectionConfig:
    values: dict[str, Any] = {"enabled": True, "backend": "kubernetes", "lease_name": lease_name,
                              "namespace": NAMESPACE, "host": url, "token_file": token_file, "lease_duration": 2}
    values.update(settings)
    return LeaderElectionConfig(**values)


def elector(url: str, token_file: str, lease_name: str, identity: str, **settings: Any) -> KubernetesLease:
    return KubernetesLease(config(url, token_file, lease_name, **settings), identity)


def read_lease(url: str, name: str) -> dict[str, Any]:
    response = requests.get(f"{url}{LEASES}/{name}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    response.raise_for_status()
    return response.json()


def requests_log(url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/_emulator/requests", timeout=5)
    response.raise_for_status()
    return response.json()


def micro_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_one_replica_holds_the_other_follows(clean: str, token_file: str) -> None:
    a = elector(clean, token_file, "holds", "replica-a")
    b = elector(clean, token_file, "holds", "replica-b")
    assert a.acquire() is True
    created = read_lease(clean, "holds")
    spec = created["spec"]
    assert spec["holderIdentity"] == "replica-a"
    assert spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert MICRO_TIME.match(spec["acquireTime"]) and MICRO_TIME.match(spec["renewTime"])
    assert abs(micro_time(spec["renewTime"]).timestamp() - time.time()) < 60
    assert b.acquire() is False
    assert read_lease(clean, "holds")["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    time.sleep(0.01)
    assert a.acquire() is True  # renew
    renewed = read_lease(clean, "holds")["spec"]
    assert renewed["acquireTime"] == spec["acquireTime"]
    assert micro_time(renewed["renewTime"]) > micro_time(spec["renewTime"])
    assert renewed["leaseTransitions"] == 0
    operations = [(r["operation"], r["status"]) for r in requests_log(clean) if r["operation"] != "unknown"]
    assert operations[:2] == [("get_lease", 404), ("create_lease", 201)]
    assert ("replace_lease", 200) in operations


def test_release_hands_over_at_once(clean: str, token_file: str) -> None:
    a = elector(clean, token_file, "handover", "replica-a", lease_duration=60)
    b = elector(clean, token_file, "handover", "replica-b", lease_duration=60)
    assert a.acquire() is True
    assert b.acquire() is False
    a.release()
    released = read_lease(clean, "handover")["spec"]
    # client-go's ReleaseOnCancel record
    assert released["holderIdentity"] == ""
    assert released["leaseDurationSeconds"] == 1
    assert released["leaseTransitions"] == 0
    assert MICRO_TIME.match(released["renewTime"])
    assert b.acquire() is True  # at once, not after the 60 s lease
    spec = read_lease(clean, "handover")["spec"]
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseTransitions"] == 1
    assert spec["leaseDurationSeconds"] == 60
    assert a.acquire() is False


def test_release_by_a_follower_writes_nothing(clean: str, token_file: str) -> None:
    a = elector(clean, token_file, "follower-release", "replica-a")
    b = elector(clean, token_file, "follower-release", "replica-b")
    assert a.acquire() is True
    assert b.acquire() is False
    requests.delete(f"{clean}/_emulator/requests", timeout=5).raise_for_status()
    b.release()
    assert requests_log(clean) == []
    assert read_lease(clean, "follower-release")["spec"]["holderIdentity"] == "replica-a"


def test_an_expired_holder_is_taken_over(clean: str, token_file: str) -> None:
    stale = (datetime.now(timezone.utc) - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "expired", "namespace": NAMESPACE},
            "spec": {"holderIdentity": "crashed-replica", "leaseDurationSeconds": 15, "acquireTime": stale,
                     "renewTime": stale, "leaseTransitions": 4}}
    requests.post(f"{clean}{LEASES}", json=body, headers={"Authorization": f"Bearer {TOKEN}"},
                  timeout=5).raise_for_status()
    b = elector(clean, token_file, "expired", "replica-b")
    assert b.acquire() is True
    spec = read_lease(clean, "expired")["spec"]
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseTransitions"] == 5
    assert micro_time(spec["acquireTime"]) > micro_time(stale)


def test_a_live_lease_of_another_holder_is_respected(clean: str, token_file: str) -> None:
    fresh = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "kube-held", "namespace": NAMESPACE},
            "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 300, "renewTime": fresh}}
    requests.post(f"{clean}{LEASES}", json=body, headers={"Authorization": f"Bearer {TOKEN}"},
                  timeout=5).raise_for_status()
    requests.delete(f"{clean}/_emulator/requests", timeout=5).raise_for_status()
    b = elector(clean, token_file, "kube-held", "replica-b")
    assert b.acquire() is False
    assert [r["operation"] for r in requests_log(clean)] == ["get_lease"]
    assert read_lease(clean, "kube-held")["spec"]["holderIdentity"] == "someone-else"


def test_a_stale_resource_version_is_refused_and_is_not_leadership(clean: str, token_file: str) -> None:
    a = elector(clean, token_file, "race", "replica-a", lease_duration=60)
    b = elector(clean, token_file, "race", "replica-b", lease_duration=60)
    assert a.acquire() is True
    a.release()  # free for whoever writes first
    read = b._api.read_namespaced_lease

    def read_then_a_writes_first(*args: Any, **kwargs: Any) -> Any:
        response = read(*args, **kwargs)  # b now holds the resourceVersion of the released Lease
        assert a.acquire() is True
        return response

    b._api.read_namespaced_lease = read_then_a_writes_first  # type: ignore[method-assign]
    assert b.acquire() is False
    assert read_lease(clean, "race")["spec"]["holderIdentity"] == "replica-a"
    replaces = [r["status"] for r in requests_log(clean) if r["operation"] == "replace_lease"]
    assert replaces[-2:] == [200, 409]  # a's write, then b's with the stale resourceVersion


def test_losing_the_create_race_is_not_leadership(clean: str, token_file: str) -> None:
    a = elector(clean, token_file, "create-race", "replica-a")
    b = elector(clean, token_file, "create-race", "replica-b")
    read = b._api.read_namespaced_lease

    def read_then_a_creates_first(*args: Any, **kwargs: Any) -> Any:
        try:
            return read(*args, **kwargs)  # 404: not there yet
        finally:
            assert a.acquire() is True

    b._api.read_namespaced_lease = read_then_a_creates_first  # type: ignore[method-assign]
    assert b.acquire() is False
    assert read_lease(clean, "create-race")["spec"]["holderIdentity"] == "replica-a"
    creates = [r["status"] for r in requests_log(clean) if r["operation"] == "create_lease"]
    assert creates == [201, 409]


def test_an_unreachable_or_failing_api_server_is_not_leadership(clean: str, token_file: str) -> None:
    a = elector(clean, token_file, "faults", "replica-a")
    requests.post(f"{clean}/_emulator/faults", json={"get_lease": {"status": 503, "times": 2}},
                  timeout=5).raise_for_status()
    with capture_logs() as logs:
        assert a.acquire() is False
        assert a.acquire() is False
        assert a.acquire() is True
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0]["error"]

    requests.post(f"{clean}/_emulator/faults", json={"get_lease": {"hang": 120, "times": 1}},
                  timeout=5).raise_for_status()
    outcome: list[bool] = []
    call = threading.Thread(target=lambda: outcome.append(a.acquire()), daemon=True)
    call.start()
    call.join(timeout=30)  # the request timeout (1 s here) ends it, not the server's 120 s hang
    assert outcome == [False]
    dead = elector(f"http://127.0.0.1:{free_port()}", token_file, "faults", "replica-a")
    assert dead.acquire() is False


def test_a_wrong_token_is_not_leadership_and_never_logged(clean: str, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-9f8e")
    a = elector(clean, str(wrong), "auth", "replica-a")
    with capture_logs() as logs:
        assert a.acquire() is False
    message = " ".join(str(entry) for entry in logs)
    assert "HTTP 401" in message and "leases.coordination.k8s.io" in message
    assert "not-the-token-9f8e" not in message


def test_namespace_defaults_to_the_pods_own_then_default(clean: str, token_file: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers.lease, "NAMESPACE_FILE", tmp_path / "missing")
    assert elector(clean, token_file, "ns", "a", namespace=None).namespace == "default"
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text(f"{NAMESPACE}\n")
    monkeypatch.setattr(providers.lease, "NAMESPACE_FILE", namespace_file)
    in_pod = elector(clean, token_file, "ns", "a", namespace=None)
    assert in_pod.namespace == NAMESPACE
    assert in_pod.acquire() is True
    assert read_lease(clean, "ns")["spec"]["holderIdentity"] == "a"


def test_build_elector_picks_the_backend(clean: str, token_file: str, tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        kubernetes = build_elector(config(clean, token_file, "built"), store, "given-identity")
        assert isinstance(kubernetes, KubernetesLease) and kubernetes.identity == "given-identity"
        database = build_elector(config(clean, token_file, "built", backend="database"), store)
        assert isinstance(database, DatabaseLease) and f"-{os.getpid()}-" in database.identity
        assert database.acquire() is True
    finally:
        store.close()


def test_leadership_hands_over_on_stop(clean: str, token_file: str) -> None:
    lease = 2.0
    first = Leadership(elector(clean, token_file, "loop", "first"), lease)
    second = Leadership(elector(clean, token_file, "loop", "second"), lease)
    seen: dict[str, list[bool]] = {"first": [], "second": []}
    lock = threading.Lock()
    first.on_change(lambda leader: _append(seen["first"], leader, lock))
    second.on_change(lambda leader: _append(seen["second"], leader, lock))
    try:
        first.start()
        second.start()
        assert first.is_leader() is True
        assert second.is_leader() is False
        time.sleep(lease)  # several renewals: the leader keeps it, the follower keeps following
        assert first.is_leader() is True
        assert second.is_leader() is False
        first.stop()
        assert read_lease(clean, "loop")["spec"]["holderIdentity"] in ("", "second")
        wait_until(second.is_leader, timeout=lease, what="the second replica to take over", interval=0.05)
    finally:
        first.stop()
        second.stop()
    assert seen == {"first": [False, True, False], "second": [False, True, False]}
    assert read_lease(clean, "loop")["spec"]["holderIdentity"] == ""


HOLDER = """
import sys, time
from providers.lease import KubernetesLease
from reconciler.config import LeaderElectionConfig
from reconciler.leader import Leadership
url, token_file, name = sys.argv[1:4]
config = LeaderElectionConfig(enabled=True, lease_name=name, namespace="zenml", host=url, token_file=token_file,
                              lease_duration=2)
leadership = Leadership(KubernetesLease(config, "doomed-holder"), 2.0)
leadership.start()
print("leader" if leadership.is_leader() else "follower", flush=True)
time.sleep(600)
"""


def test_a_killed_leader_is_taken_over_within_the_lease(clean: str, token_file: str, tmp_path: Path) -> None:
    lease = 2.0
    doomed = Server("doomed-holder", [sys.executable, "-c", HOLDER, clean, token_file, "killed"],
                    tmp_path / "holder.log", cwd=REPO)
    survivor = Leadership(elector(clean, token_file, "killed", "survivor"), lease)
    try:
        wait_until(lambda: {"leader", "follower"} & set(doomed.log.read_text().splitlines()), 30,
                   "the first process to report", doomed)
        assert "leader" in doomed.log.read_text().splitlines()
        survivor.start()
        assert survivor.is_leader() is False
        os.kill(doomed.pid, signal.SIGKILL)  # no release: the lease must run out
        doomed.process.wait(10)
        # The lease runs at most lease_duration past the holder's last renew; the survivor
        # notices on its next attempt, every lease_duration/3.
        wait_until(survivor.is_leader, timeout=lease + lease / 3 + 1.0, what="the survivor to take over",
                   interval=0.05)
        spec = read_lease(clean, "killed")["spec"]
        assert spec["holderIdentity"] == "survivor"
        assert spec["leaseTransitions"] == 1
    finally:
        survivor.stop()
        doomed.stop()


def _append(items: list[bool], value: bool, lock: threading.Lock) -> None:
    with lock:
        items.append(value)
