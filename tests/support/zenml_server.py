"""A real ZenML server (zenml[server]==0.98.0 from .cache/venvs/zenml) for the REST tests.

The session fixture copies the committed 0.98.0 store file, creates a service
account with two API keys in the copy with ZenML's own Python API, and serves
the copy with uvicorn on 127.0.0.1 (OAuth2 password-bearer auth). Started once
per session; stopped by its own process group.

The server is deliberately configured the way a production one can be:
tokens expire after a minute (`ZENML_SERVER_JWT_TOKEN_EXPIRE_MINUTES`), and
its page size maximum is tiny (`ZENML_PAGINATION_DEFAULT_LIMIT`), so every
listing spans several pages and the client must adopt the server's maximum.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import REPO, Server, free_port, http_ok, venv_bin, wait_until

ZENML_VERSION = "0.98.0"
STORE_FILE = REPO / "tests" / "zenml_stores" / "files" / f"zenml-{ZENML_VERSION}.db"
SERVICE_ACCOUNT = "schedule-reconciler"
MAIN_KEY = "reconciler"
SPARE_KEY = "rotating"  # for tests that rotate a key; the main key stays valid
SERVER_MAX_PAGE_SIZE = 5
TOKEN_LIFETIME_MINUTES = 1

# Runs inside the zenml venv against the copied store: ZenML's own API makes the account.
_CREATE_ACCOUNT = """
import json, sys
from zenml.config.global_config import GlobalConfiguration
from zenml.models import APIKeyRequest, ServiceAccountRequest

store = GlobalConfiguration().zen_store
account = store.create_service_account(
    ServiceAccountRequest(name=sys.argv[1], description="schedule-reconciler tests", active=True)
)
keys = {name: store.create_api_key(account.id, APIKeyRequest(name=name)).key for name in sys.argv[2:]}
print(json.dumps({"service_account_id": str(account.id), "keys": keys}))
"""

# Imports ZenML and opens the store first (seconds), then rotates on a line from stdin (fast):
# a test can log in, rotate, and use its old token again well within the token's lifetime.
_ROTATE_KEY = """
import json, sys
from uuid import UUID
from zenml.config.global_config import GlobalConfiguration
from zenml.models import APIKeyRotateRequest

store = GlobalConfiguration().zen_store
account = store.get_service_account(UUID(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
key = store.rotate_api_key(account.id, sys.argv[2], APIKeyRotateRequest(retain_period_minutes=0))
print(json.dumps({"key": key.key}), flush=True)
"""


@dataclass(frozen=True)
class ZenmlServer:
    url: str
    api_key: str  # the main service-account key; never rotated
    spare_key: str  # a second key of the same account, as created (see spare_key_rotator)
    service_account_id: str
    store: Path  # the SQLite file the server serves
    workdir: Path

    @contextmanager
    def spare_key_rotator(self) -> Iterator[Callable[[], str]]:
        """Yields `rotate()`: rotates the spare key with no grace period and returns the new key.

        After it, the old key and every token made from it are refused (401).
        """
        process = subprocess.Popen(
            [str(venv_bin("zenml", "python")), "-c", _ROTATE_KEY, self.service_account_id, SPARE_KEY],
            env=_zenml_env(self.store, self.workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the key rotator did not start:\n{process.stderr.read() if process.stderr else ''}")

            def rotate() -> str:
                process.stdin.write("go\n")
                process.stdin.flush()
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the key rotator failed:\n{process.stderr.read() if process.stderr else ''}")
                return str(json.loads(line)["key"])

            yield rotate
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


def _zenml_env(store: Path, workdir: Path) -> dict[str, str]:
    # No ZENML_* from the test process (e.g. ZENML_STORE_API_KEY) may steer these scripts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update({
        "ZENML_STORE_URL": f"sqlite:///{store}",
        "ZENML_CONFIG_PATH": str(workdir / "client-config"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_VERBOSITY": "ERROR",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
    })
    return env


def _zenml_python(script: str, args: list[str], store: Path, workdir: Path) -> dict[str, object]:
    env = _zenml_env(store, workdir)
    result = subprocess.run(
        [str(venv_bin("zenml", "python")), "-c", script, *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"zenml script failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_zenml_server(workdir: Path) -> tuple[Server, ZenmlServer]:
    if not STORE_FILE.exists():
        raise RuntimeError(f"{STORE_FILE} is missing: the committed ZenML {ZENML_VERSION} store file")
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "zenml.db"
    shutil.copyfile(STORE_FILE, store)
    account = _zenml_python(_CREATE_ACCOUNT, [SERVICE_ACCOUNT, MAIN_KEY, SPARE_KEY], store, workdir)
    keys = account["keys"]
    assert isinstance(keys, dict)

    port = free_port()
    env = {
        "ZENML_SERVER": "true",
        "ZENML_STORE_URL": f"sqlite:///{store}",
        "ZENML_CONFIG_PATH": str(workdir / "server-config"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_SERVER_AUTH_SCHEME": "OAUTH2_PASSWORD_BEARER",
        "ZENML_SERVER_JWT_SECRET_KEY": secrets.token_hex(32),
        "ZENML_SERVER_JWT_TOKEN_EXPIRE_MINUTES": str(TOKEN_LIFETIME_MINUTES),
        "ZENML_PAGINATION_DEFAULT_LIMIT": str(SERVER_MAX_PAGE_SIZE),
        "ZENML_LOGGING_VERBOSITY": "WARN",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
    }
    server = Server(
        "zenml-server",
        [venv_bin("zenml", "python"), "-m", "uvicorn", "zenml.zen_server.zen_server_api:app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        log=workdir / "server.log", env=env, cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/health"), timeout=120, what="the ZenML server's /health", server=server)
    except BaseException:
        server.stop()
        raise
    info = ZenmlServer(
        url=url,
        api_key=str(keys[MAIN_KEY]),
        spare_key=str(keys[SPARE_KEY]),
        service_account_id=str(account["service_account_id"]),
        store=store,
        workdir=workdir,
    )
    return server, info


@pytest.fixture(scope="session")
def zenml_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZenmlServer]:
    server, info = start_zenml_server(tmp_path_factory.mktemp("zenml-server"))
    try:
        yield info
    finally:
        server.stop()
