"""TLS verification is on by default and `ca_bundle` / `verify_tls` are honoured by every outbound
client the daemon builds: the Airflow, KFP and Kubernetes targets, the Vertex target over gRPC
and over REST, the ZenML REST registry and the Kubernetes Lease.

The emulators (and, for the registry, a TLS proxy in front of the real ZenML server) serve a
certificate for 127.0.0.1 signed by a throwaway CA that no system trusts. For each client:

- default config: the call fails with a certificate error, the part is unknown (`target_up` /
  `registry_up` 0) and the server received no request at all (so no credential was sent to a
  server that was not authenticated);
- `ca_bundle: <the CA>`: it works;
- `verify_tls: false`: it works, and the daemon logs a warning once;
- `verify_tls: false` beside a `ca_bundle` of an unrelated CA: off wins (it works);
- `ca_bundle` of an unrelated CA: it fails (the bundle replaces, it is not ignored).

The process environment of CI images often sets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, which
`requests` lets override a session's `verify`; the cases run with it set to the system bundle so
that a client that forgets to pin its setting fails here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from structlog.testing import capture_logs

from providers import build_elector
from providers.emulators.airflow import AirflowEmulator
from providers.emulators.kubeflow import KubeflowEmulator
from providers.emulators.kubernetes import KubernetesEmulator
from providers.emulators.sandbox import Emulators, default_store, seed
from reconciler import cli
from reconciler.cli import build_daemon
from reconciler.config import Config, ConfigError, LeaderElectionConfig, load_config
from reconciler.report import CycleReport
from providers.emulators.vertex import VertexEmulator
from tests.integration.cleanup_support import component_ids
from tests.security.pki import Pki, make_pki
from tests.security.tls_proxy import TlsProxy
from tests.support.procs import REPO
from tests.support.zenml_server import ZenmlServer, zenml_server  # noqa: F401 - the session fixture

pytestmark = pytest.mark.integration

AIRFLOW_USER, AIRFLOW_PASSWORD = "reconciler", "tls-test-airflow-password"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# mode -> the TLS keys every client gets, and whether its calls must succeed
MODES: dict[str, tuple[dict[str, Any], bool]] = {
    "default": ({}, False),
    "ca_bundle": ({"ca_bundle": "{ca}"}, True),
    "other_ca_bundle": ({"ca_bundle": "{other_ca}"}, False),
    "verify_tls_false": ({"verify_tls": False}, True),
    "verify_tls_false_beside_other_ca": ({"verify_tls": False, "ca_bundle": "{other_ca}"}, True),
}
TARGETS = ("airflow", "vertex-grpc", "vertex-rest", "kfp", "k8s")
CERT_WORDS = ("certificate verify failed", "CERTIFICATE_VERIFY_FAILED")


@pytest.fixture(autouse=True)
def requests_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables many images set; requests would let them replace a configured `verify`."""
    if Path(SYSTEM_BUNDLE).exists():
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
        monkeypatch.setenv("CURL_CA_BUNDLE", SYSTEM_BUNDLE)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def emulators(pki: Pki) -> Iterator[Emulators]:
    """The four emulators over TLS only (Vertex's gRPC and REST ports both), seeded with the sandbox scenario."""
    found = Emulators(AirflowEmulator(AIRFLOW_USER, AIRFLOW_PASSWORD), VertexEmulator(), KubeflowEmulator(),
                      KubernetesEmulator())
    seed(found, component_ids())
    found.airflow.start(0, tls=pki.server)
    found.vertex.start(0, 0, tls=pki.server)
    found.kubeflow.start(0, tls=pki.server)
    found.kubernetes.start(0, tls=pki.server)
    try:
        yield found
    finally:
        for emulator in (found.airflow, found.vertex, found.kubeflow, found.kubernetes):
            emulator.stop()


def _tls(mode: str, pki: Pki) -> dict[str, Any]:
    keys, _ = MODES[mode]
    return {k: v.format(ca=pki.ca, other_ca=pki.other_ca) if isinstance(v, str) else v for k, v in keys.items()}


def _targets(emulators: Emulators, tls: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    (tmp / "airflow-user").write_text(AIRFLOW_USER)
    (tmp / "airflow-password").write_text(AIRFLOW_PASSWORD)
    common = {"timeout": 5, "max_retries": 0, **tls}
    targets = [
        {"name": "airflow", "type": "airflow", "url": emulators.airflow.url, "api_version": "v2",
         "username_file": str(tmp / "airflow-user"), "password_file": str(tmp / "airflow-password"),
         "components": ["airflow-orchestrator"]},
        {"name": "vertex-grpc", "type": "vertex", "project": "demo-project", "location": "us-central1",
         "endpoint": f"https://{emulators.vertex.grpc_target}", "transport": "grpc", "credentials": "anonymous",
         "components": ["vertex-orchestrator"]},
        {"name": "vertex-rest", "type": "vertex", "project": "demo-project", "location": "us-central1",
         "endpoint": emulators.vertex.url, "transport": "rest", "credentials": "anonymous",
         "components": ["vertex-orchestrator"]},
        {"name": "kfp", "type": "kubeflow", "host": emulators.kubeflow.url, "components": ["kfp-orchestrator"]},
        {"name": "k8s", "type": "kubernetes", "host": emulators.kubernetes.url, "namespace": "zenml",
         "components": ["k8s-orchestrator"]},
    ]
    for target in targets:
        assert target.get("url", target.get("endpoint", target.get("host", ""))).startswith("https://")
        target.update(common)
    if tls.get("verify_tls") is False:
        # grpcio cannot skip certificate checks: that combination is refused (test below).
        targets = [t for t in targets if t["name"] != "vertex-grpc"]
    return targets


def _write(tmp: Path, raw: dict[str, Any]) -> Path:
    path = tmp / "schedule-reconciler.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _base(tmp: Path) -> dict[str, Any]:
    return {"registry": {"type": "zenml-sql", "url": f"sqlite:///{default_store()}"},
            "state": {"url": f"sqlite:///{tmp / 'state.db'}"},
            "metrics": {"host": "127.0.0.1", "port": 0}, "log": {"format": "json", "level": "info"}}


def _one_cycle(path: Path) -> tuple[CycleReport, dict[str, float], list[dict[str, Any]]]:
    """Build the real daemon from the file, run one cycle; (report, metric samples, log events)."""
    cli._TLS_WARNED.clear()  # the warning is once per process; each case is a fresh daemon
    with capture_logs() as logs:
        daemon = build_daemon(load_config(path), path)
        try:
            daemon.leadership.start()
            report = daemon.run_cycle()
            assert report is not None, "the cycle crashed"
            samples = _samples(daemon.metrics.exposition().decode())
        finally:
            daemon.leadership.stop()
            daemon.reconciler.close()
            daemon.store.close()
    return report, samples, logs


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            found[head] = float(value)
    return found


def _tls_warnings(logs: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("part")) for e in logs if "TLS certificate verification is off" in str(e.get("event"))]


def _clear(emulators: Emulators) -> None:
    for emulator in emulators.all():
        emulator.log.clear()  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_every_target_verifies_tls_as_configured(mode: str, pki: Pki, emulators: Emulators, tmp_path: Path) -> None:
    tls = _tls(mode, pki)
    _, succeeds = MODES[mode]
    raw = _base(tmp_path)
    raw["targets"] = _targets(emulators, tls, tmp_path)
    _clear(emulators)
    report, samples, logs = _one_cycle(_write(tmp_path, raw))

    assert report.registry.status == "ok"
    by_name = {t.name: t for t in report.targets}
    assert set(by_name) == {t["name"] for t in raw["targets"]}
    for name, target in by_name.items():
        up = samples[f'schedule_reconciler_target_up{{target="{name}"}}']
        if succeeds:
            assert target.status == "ok", (name, target.error)
            assert up == 1.0
            # The scenario's live schedules were really read through TLS.
            assert target.diff is not None and len(target.diff.managed) > 0, name
        else:
            assert target.status == "error", f"{name} listed over TLS it could not verify ({mode})"
            assert up == 0.0
            assert target.error is not None and any(w in target.error for w in CERT_WORDS), (name, target.error)
            # Never silently insecure: no last success, no drift invented from an empty listing.
            assert f'schedule_reconciler_last_success_timestamp_seconds{{target="{name}"}}' not in samples
            assert target.diff is None
    if not succeeds:
        # The handshake failed before any request: no credential reached the unverified server.
        for emulator in emulators.all():
            assert emulator.log.all() == [], (type(emulator).__name__, emulator.log.all()[:3])  # type: ignore
    unverified = {f"targets.{t['name']}" for t in raw["targets"]} if tls.get("verify_tls") is False else set()
    assert sorted(_tls_warnings(logs)) == sorted(unverified)


def test_verify_tls_false_over_grpc_is_refused_not_ignored(tmp_path: Path) -> None:
    """grpcio has no way to skip the certificate check: the setting is a config error, named."""
    raw = _base(tmp_path)
    raw["targets"] = [{"name": "vertex", "type": "vertex", "project": "p", "location": "us-central1",
                       "endpoint": "https://127.0.0.1:1", "transport": "grpc", "verify_tls": False}]
    with pytest.raises(ConfigError, match=r"targets\[0\]: verify_tls: false .*gRPC"):
        load_config(_write(tmp_path, raw))
    # Plain http (an emulator) and the REST transport take it.
    raw["targets"][0]["transport"] = "rest"
    assert load_config(_write(tmp_path, raw)).targets[0].verify_tls is False


@pytest.mark.parametrize("mode", ["default", "ca_bundle", "other_ca_bundle", "verify_tls_false"])
def test_the_kubernetes_lease_verifies_tls_as_configured(mode: str, pki: Pki, emulators: Emulators,
                                                         tmp_path: Path) -> None:
    tls = _tls(mode, pki)
    _, succeeds = MODES[mode]
    lease_name = f"tls-{mode.replace('_', '-')}"
    config = LeaderElectionConfig(enabled=True, backend="kubernetes", lease_name=lease_name, namespace="zenml",
                                  host=emulators.kubernetes.url, lease_duration=30, **tls)
    _clear(emulators)
    elector = build_elector(config, None, "replica-1")  # type: ignore[arg-type] - the Lease needs no store
    try:
        assert elector.acquire() is succeeds
    finally:
        elector.release()
    leases = [r for r in emulators.kubernetes.log.all() if "/leases" in r.path]
    assert bool(leases) is succeeds


@pytest.fixture(scope="module")
def zenml_tls(zenml_server: ZenmlServer, pki: Pki) -> Iterator[TlsProxy]:  # noqa: F811
    host, port = zenml_server.url.removeprefix("http://").split(":")
    proxy = TlsProxy((host, int(port)), *pki.server)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.mark.parametrize("mode", ["default", "ca_bundle", "verify_tls_false"])
def test_the_rest_registry_verifies_tls_as_configured(mode: str, pki: Pki, zenml_server: ZenmlServer,  # noqa: F811
                                                      zenml_tls: TlsProxy, tmp_path: Path) -> None:
    tls = _tls(mode, pki)
    _, succeeds = MODES[mode]
    key = tmp_path / "zenml-api-key"
    key.write_text(zenml_server.api_key)
    raw = _base(tmp_path)
    raw["registry"] = {"type": "zenml-rest", "url": zenml_tls.url, "api_key_file": str(key), "timeout": 10,
                       "max_retries": 0, **tls}
    raw["targets"] = []
    failed_before = zenml_tls.handshakes_failed
    report, samples, logs = _one_cycle(_write(tmp_path, raw))
    if succeeds:
        assert report.registry.status == "ok", report.registry.error
        assert (report.registry.schedules or 0) > 0
        assert samples["schedule_reconciler_registry_up"] == 1.0
    else:
        assert report.registry.status == "error"
        assert samples["schedule_reconciler_registry_up"] == 0.0
        assert report.registry.error is not None and any(w in report.registry.error for w in CERT_WORDS), \
            report.registry.error
        assert zenml_tls.handshakes_failed > failed_before  # refused at the handshake: the API key never left
    assert _tls_warnings(logs) == (["registry"] if tls.get("verify_tls") is False else [])
