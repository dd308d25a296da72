"""Real Airflow servers for the tests: Airflow 3 (/api/v2) and Airflow 2 (/api/v1).

Each runs from its side venv (.cache/venvs/airflow3|airflow2, made by
tests/setup/airflow.sh) with its own AIRFLOW_HOME in a temp dir, SQLite, and a
DAGs folder filled from the test scenario (tests/airflow_dags/generate.py).
Only the API server and the DAG parser run (Airflow 3: `dag-processor`; Airflow 2:
`scheduler` with cron scheduling off), so no DAG ever runs and the machine stays quiet. Rescans are fast and the stale-DAG
threshold short, so a DAG whose file is removed turns stale within seconds.

`start(major, workdir)` returns once every DAG is parsed and the DAGs meant to
be stale are marked so; `stop()` signals only the process groups it started.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.airflow_dags import generate
from tests.support.procs import Server, free_port, http_ok, venv_bin, wait_until
from tests.support.spoiling import LoopbackServer

USERNAME = "reconciler"
START_TIMEOUT = 240.0


@dataclass
class AirflowServer:
    major: int  # 3 or 2
    url: str
    username: str
    password: str
    home: Path
    dags_folder: Path
    seeds: list[generate.DagSeed]
    gone: list[str]  # dag_ids whose files were removed: stale
    processes: list[Server] = field(default_factory=list)

    @property
    def api_prefix(self) -> str:
        return "/api/v2" if self.major == 3 else "/api/v1"

    def token(self) -> str:
        response = requests.post(
            f"{self.url}/auth/token", json={"username": self.username, "password": self.password}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def raw(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the server directly (not through the provider) to set up or verify state."""
        if self.major == 3:
            kwargs["headers"] = {"Authorization": f"Bearer {self.token()}"}
        else:
            kwargs["auth"] = (self.username, self.password)
        return requests.request(method, f"{self.url}{self.api_prefix}{path}", timeout=10, **kwargs)

    def all_dags(self) -> dict[str, dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100}
        if self.major == 3:
            params["exclude_stale"] = "false"
        else:
            params["only_active"] = "false"
        response = self.raw("GET", "/dags", params=params)
        response.raise_for_status()
        return {d["dag_id"]: d for d in response.json()["dags"]}

    def is_stale(self, dag: dict[str, Any]) -> bool:
        return bool(dag["is_stale"]) if self.major == 3 else not dag["is_active"]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start(major: int, workdir: Path) -> AirflowServer:
    venv = "airflow3" if major == 3 else "airflow2"
    airflow = venv_bin(venv, "airflow")
    home = workdir / "home"
    dags = workdir / "dags"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = secrets.token_urlsafe(16)
    env = _environment(major, home, dags, port, password)
    seeds = generate.write_all(dags)

    _run([airflow, "db", "migrate"], env, home / "db-migrate.log")
    server = AirflowServer(major, f"http://127.0.0.1:{port}", USERNAME, password, home, dags, seeds, [])
    try:
        if major == 3:
            server.processes.append(Server(
                "airflow3 api-server",
                [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                home / "api-server.log", env=env, cwd=home,
            ))
        else:
            _run([airflow, "users", "create", "--username", USERNAME, "--password", password,
                  "--role", "Admin", "--firstname", "Schedule", "--lastname", "Reconciler",
                  "--email", "reconciler@example.com"], env, home / "users-create.log")
            server.processes.append(Server(
                "airflow2 webserver",
                [airflow, "webserver", "--hostname", "127.0.0.1", "--port", str(port), "--workers", "1"],
                home / "webserver.log", env=env, cwd=home,
            ))
        # Airflow 2 refuses a standalone DAG processor on SQLite: its scheduler parses
        # instead, with cron scheduling off (use_job_schedule) so that nothing runs.
        command = "dag-processor" if major == 3 else "scheduler"
        processor = Server(f"{venv} {command}", [airflow, command], home / f"{command}.log", env=env, cwd=home)
        server.processes.append(processor)
        api = server.processes[0]
        health = "/api/v2/monitor/health" if major == 3 else "/health"
        wait_until(lambda: http_ok(server.url + health), START_TIMEOUT, f"{venv} API on :{port}", api)
        wanted = {s.dag_id for s in seeds}
        wait_until(lambda: wanted <= set(server.all_dags()), START_TIMEOUT, f"{venv} to parse the DAGs", processor)
        server.gone = generate.remove_gone(dags, seeds)
        wait_until(
            lambda: all(server.is_stale(server.all_dags()[d]) for d in server.gone),
            START_TIMEOUT, f"{venv} to mark removed DAGs stale", processor,
        )
    except BaseException:
        server.stop()
        raise
    return server


def _environment(major: int, home: Path, dags: Path, port: int, password: str) -> dict[str, str]:
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # ZenML's orchestrator turns safe mode off too: its zips need no "airflow"/"dag" strings.
        "AIRFLOW__CORE__DAG_DISCOVERY_SAFE_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONWARNINGS": "ignore",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if major == 3:
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({USERNAME: password}))
        passwords.chmod(0o600)
        env.update({
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "3",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
        })
    else:
        env.update({
            "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth",
            "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__WEBSERVER__WEB_SERVER_MASTER_TIMEOUT": "240",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__STALE_DAG_THRESHOLD": "3",
            "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__PRINT_STATS_INTERVAL": "600",
            "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
        })
    return env


def _run(argv: list[Any], env: dict[str, str], log: Path) -> None:
    full = dict(os.environ)
    full.update(env)
    with open(log, "wb") as out:
        result = subprocess.run([str(a) for a in argv], env=full, stdout=out, stderr=subprocess.STDOUT,
                                timeout=START_TIMEOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{argv[1]} {argv[2]} failed ({result.returncode}):\n{tail}")


class FaultProxy:
    """A loopback HTTP proxy in front of a real Airflow that breaks chosen requests.

    Every request is forwarded to the real server unchanged, except the ones
    `fault` picks: the n-th request (1-based) whose path starts with
    `path_prefix`, and with `sticky` every one after it too. A fault is an HTTP
    status (answered by the proxy instead of Airflow, with `Retry-After:
    retry_after` when set), `"timeout"` or `"slow"` (the proxy holds the request
    for `hold` seconds, then forwards it), `"hang"` (holds it `hold` seconds, then
    drops the connection without an answer), `"malformed"` (200 with a body that
    is not JSON), or `"total+1"` (the real answer with `total_entries` raised by
    one, as if a DAG appeared). `down()` stops the proxy (connections refused, the
    port kept) until `up()`.

    `seen` logs the path of every request; `requests` logs (method, path), so a
    test can tell whether any mutating request reached the real server.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path_prefix = "/api/"
        self.fault: int | str | None = None
        self.nth = 0
        self.sticky = False
        self.hold = 3.0
        self.retry_after: int | None = None
        self.seen: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                proxy._forward(self)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self._listener = LoopbackServer(Handler)
        self.url = self._listener.url

    def arm(self, fault: int | str, nth: int, path_prefix: str, sticky: bool = False,
            retry_after: int | None = None) -> None:
        with self._lock:
            self.fault, self.nth, self.path_prefix, self.sticky = fault, nth, path_prefix, sticky
            self.retry_after = retry_after
            self.seen = []

    def disarm(self) -> None:
        with self._lock:
            self.fault = None

    def faulted(self) -> int:
        """Requests the armed fault's path prefix has met since `arm`."""
        with self._lock:
            return sum(1 for p in self.seen if p.startswith(self.path_prefix))

    def mutations(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(m, p) for m, p in self.requests if m not in ("GET", "HEAD", "OPTIONS")
                    and not p.startswith("/auth/")]  # a login is no change to any DAG

    def clear(self) -> None:
        with self._lock:
            self.seen = []
            self.requests = []

    def _pick(self, method: str, path: str) -> int | str | None:
        with self._lock:
            self.seen.append(path)
            self.requests.append((method, path))
            if self.fault is None or not path.startswith(self.path_prefix):
                return None
            count = sum(1 for p in self.seen if p.startswith(self.path_prefix))
            if count == self.nth or (self.sticky and count > self.nth):
                return self.fault
            return None

    def _answer(self, handler: Any, status: int, payload: bytes, headers: dict[str, str]) -> None:
        try:
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the timeout case)

    def _forward(self, handler: Any) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        fault = self._pick(handler.command, handler.path.split("?", 1)[0])
        if isinstance(fault, int):
            payload = json.dumps({"detail": f"injected HTTP {fault}"}).encode()
            headers = {"Content-Type": "application/json"}
            if self.retry_after is not None:
                headers["Retry-After"] = str(self.retry_after)
            self._answer(handler, fault, payload, headers)
            return
        if fault == "malformed":
            self._answer(handler, 200, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "application/json"})
            return
        if fault in ("timeout", "slow", "hang"):
            time.sleep(self.hold)
        if fault == "hang":
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        host, port = self.upstream
        connection = http.client.HTTPConnection(host, port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        try:
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if fault == "total+1":
                document = json.loads(payload)
                document["total_entries"] += 1
                payload = json.dumps(document).encode()
            self._answer(handler, response.status, payload, {
                k: v for k, v in response.getheaders()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")})
        finally:
            connection.close()

    def down(self) -> None:
        """Stop the proxy: the real server's address refuses connections until `up()`."""
        self._listener.down()

    def up(self) -> None:
        self._listener.up()

    def close(self) -> None:
        self._listener.close()
