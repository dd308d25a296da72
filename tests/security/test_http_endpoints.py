"""The daemon's HTTP endpoints expose nothing beyond what `plan` shows, and bind where config says.

The real daemon (`python -m reconciler run`, a subprocess) runs over the sandbox's emulators with
credentials written into its target URLs (`http://user:pass@host`, the way some operators paste
them) and secrets in its credential files. Probed over raw HTTP:

- only GET /metrics, /healthz, /readyz and /plan answer (`//plan` is `/plan`: http.server folds
  leading slashes); every other path (path traversal,
  encoded dots, trailing slashes, other case, the emulators' control paths) is 404, and a query
  string changes nothing;
- POST, PUT, DELETE, PATCH, HEAD, OPTIONS and TRACE are refused on every path;
- no answer, and no line the daemon logged, carries a credential: not the URL userinfo (so
  `target_info{endpoint}` is stripped), not the Airflow password, not a path of a secret file;
- `/plan` names no configured URL, host or file path: it is the plan report and nothing more;
- `metrics.host: 127.0.0.1` listens on 127.0.0.1 only (127.0.0.2, also loopback, is refused);
  the port is the kernel's pick (`port: 0`) and the daemon logs it.

A registry URL with a password (`mysql://user:pass@...`) is probed through `plan` and
`check-config --connect`, whose output is the same report: the password is never shown.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from providers.emulators.sandbox import Emulators, seed
from tests.integration.cleanup_support import Setup, cli, component_ids, emulated, write_config
from tests.support.procs import REPO

pytestmark = pytest.mark.integration

ROUTES = ("/metrics", "/healthz", "/readyz", "/plan")
NOT_ROUTES = (
    "/", "/index.html", "/../", "/..", "/plan/../etc/passwd", "/../../../../etc/passwd", "/%2e%2e/etc/passwd",
    "/plan/..%2f..%2fetc%2fpasswd", "/metrics/", "/plan/", "/PLAN", "/Metrics", "/plan.json",
    "/metrics;x", "/config", "/config.yaml", "/debug/pprof", "/_emulator/requests", "/api/v1/schedules",
    "/?/plan", "/etc/passwd?/metrics", "*",
)
REFUSED_METHODS = ("POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")
USERINFO_USER, USERINFO_PASSWORD = "leaky-user", "userinfo-pw-7c1e9b2f"


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    setup: Setup


def _request(port: int, method: str, path: str, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)  # the path goes out byte for byte
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _with_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{USERINFO_USER}:{USERINFO_PASSWORD}@{parts.netloc}").geturl()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("endpoints")
    setup = write_config(tmp)
    with emulated(setup) as emulators:
        _seed(emulators)
        # Credentials pasted into URLs of three targets; the Kubernetes one stays clean so that
        # the cycle has a healthy target with drift in /plan to look at.
        setup.target("airflow")["url"] = _with_userinfo(setup.target("airflow")["url"])
        setup.target("kubeflow")["host"] = _with_userinfo(setup.target("kubeflow")["host"])
        setup.target("vertex")["endpoint"] = _with_userinfo(setup.target("vertex")["endpoint"])
        setup.raw["metrics"] = {"host": "127.0.0.1", "port": 0}
        setup.raw["log"] = {"format": "json", "level": "debug"}
        setup.write()
        log = tmp / "daemon.log"
        with open(log, "wb") as sink:
            env = {k: v for k, v in os.environ.items() if k != "SCHEDULE_RECONCILER_FAILPOINTS"}
            process = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--config", str(setup.path)],
                                       cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        try:
            port = _serving_port(log, process)
            _wait_ready(port, process)
            yield Daemon(process, port, log, setup)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def _seed(emulators: Emulators) -> None:
    seed(emulators, component_ids())


def _serving_port(log: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "serving":
                address = json.loads(line)["address"]
                assert address.startswith("127.0.0.1:"), address
                return int(address.rsplit(":", 1)[1])
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"the daemon never logged where it serves:\n{log.read_text()}")


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "the daemon exited"
        if _request(port, "GET", "/readyz")[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError("the daemon never became ready")


def _secrets(setup: Setup) -> list[str]:
    """Every secret value and secret location the config involves."""
    airflow = setup.target("airflow")
    password = Path(airflow["password_file"]).read_text().strip()
    return [USERINFO_PASSWORD, f"{USERINFO_USER}:", password, airflow["password_file"]]


def test_only_the_four_routes_answer(daemon: Daemon) -> None:
    for route in ROUTES:
        status, headers, body = _request(daemon.port, "GET", route)
        assert status == 200, (route, status, body[:200])
        # A query string (Prometheus `params`, a curious user) changes nothing.
        again = _request(daemon.port, "GET", route + "?format=yaml&config=1&debug=true&path=../../etc/passwd")
        assert again[0] == 200
        if route != "/metrics":  # /metrics counts scrapes; the rest is a stable document between cycles
            assert again[2] == body or route == "/plan" and json.loads(again[2])["cycle"] != json.loads(body)["cycle"]
        assert "python" not in headers.get("server", "").lower(), headers  # no runtime version on the wire
    for path in NOT_ROUTES:
        status, _, body = _request(daemon.port, "GET", path)
        assert status == 404, (path, status, body[:200])
        assert b"root:" not in body


def test_mutating_and_other_methods_are_refused(daemon: Daemon) -> None:
    for path in (*ROUTES, "/", "/plan/../etc/passwd"):
        for method in REFUSED_METHODS:
            status, _, body = _request(daemon.port, method, path)
            assert status in (404, 405, 501), (method, path, status)
            assert b"schedule_reconciler_" not in body and b'"targets"' not in body, (method, path)
    # Still serving, still the same daemon.
    assert _request(daemon.port, "GET", "/healthz")[0] == 200


def test_no_answer_and_no_log_line_carries_a_credential(daemon: Daemon) -> None:
    answers = {route: _request(daemon.port, "GET", route)[2].decode() for route in ROUTES}
    answers["404"] = _request(daemon.port, "GET", f"/{USERINFO_PASSWORD}")[2].decode()
    metrics = answers["/metrics"]
    info = [line for line in metrics.splitlines() if line.startswith("schedule_reconciler_target_info{")]
    assert len(info) == 4, info
    for line in info:  # the endpoint label is there, without its userinfo
        endpoint = re.search(r'endpoint="([^"]*)"', line)
        assert endpoint and re.fullmatch(r"https?://127\.0\.0\.1:\d+", endpoint.group(1)), line
    log = daemon.log.read_text(errors="replace")
    assert "cycle" in log  # the log is the daemon's own, a cycle ran
    for secret in _secrets(daemon.setup):
        for where, text in {**answers, "daemon log": log}.items():
            assert secret not in text, f"{secret!r} appears in {where}"


def test_plan_names_no_configured_url_host_or_path(daemon: Daemon) -> None:
    plan = json.loads(_request(daemon.port, "GET", "/plan")[2])
    assert set(plan) == {"generated_at", "cycle", "registry", "targets"}
    k8s = next(t for t in plan["targets"] if t["name"] == "k8s")
    assert k8s["status"] == "ok" and k8s["drift"], "the healthy target's drift is shown"
    text = json.dumps(plan)
    raw = daemon.setup.raw
    configured = [raw["registry"]["url"].removeprefix("sqlite:///"), raw["state"]["url"].removeprefix("sqlite:///"),
                  str(daemon.setup.path)]
    for target in raw["targets"]:
        for key in ("url", "host", "endpoint", "username_file", "password_file", "token_file"):
            if target.get(key):
                configured.append(str(target[key]))
                if key in ("url", "host", "endpoint"):
                    configured.append(urlsplit(str(target[key])).netloc.rsplit("@", 1)[-1])  # host:port
    for value in configured:
        assert value not in text, f"/plan shows the configured {value!r}"


def test_it_listens_only_where_metrics_host_says(daemon: Daemon) -> None:
    assert _request(daemon.port, "GET", "/healthz")[0] == 200
    # 127.0.0.2 is loopback too: a server bound to 0.0.0.0 would answer there.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", daemon.port), timeout=5).close()


def test_a_password_in_the_registry_url_is_never_shown(tmp_path: Path) -> None:
    setup = write_config(tmp_path, targets=("kubernetes",))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # held, never listening: the connection is refused
    try:
        port = closed.getsockname()[1]
        password = "registry-pw-2d94c1"
        setup.raw["registry"] = {"type": "zenml-sql", "url": f"mysql://zenml:{password}@127.0.0.1:{port}/zenml",
                                 "max_retries": 0, "timeout": 5}
        setup.write()
        plan = cli(setup, "plan", "--output", "json")
        check = cli(setup, "check-config", "--connect")
    finally:
        closed.close()
    assert plan.returncode == 2, plan.stderr
    report = json.loads(plan.stdout)
    assert report["registry"]["status"] == "error" and report["registry"]["error"]
    assert check.returncode != 0
    for output in (plan.stdout, plan.stderr, check.stdout, check.stderr):
        assert password not in output, output
