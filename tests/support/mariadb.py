"""A throwaway MariaDB server (Debian's mariadb-server) for the tests, on 127.0.0.1.

`mariadb_server` is a session fixture: its own datadir under pytest's tmp dir, a
free port, password-authenticated users (no --skip-grant-tables), stopped by its
own PID at the end. Register it in a conftest with
`from tests.support.mariadb import mariadb_server  # noqa: F401`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pymysql
import pytest

from tests.support.procs import Server, free_port, wait_until

DATABASE = "zenml"


@dataclass(frozen=True)
class MariaDB:
    host: str
    port: int
    socket: Path
    database: str
    owner: str  # all privileges on the database: ZenML migrates with it
    owner_password: str
    reader: str  # SELECT only: what the reconciler needs, and all it gets
    reader_password: str

    def url(self, user: str, password: str | None, scheme: str = "mysql") -> str:
        auth = quote(user, safe="") if password is None else f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"{scheme}://{auth}@{self.host}:{self.port}/{self.database}"

    def root(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)


def _program(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if found is None:
        raise RuntimeError(f"{name} is missing: run tests/setup/mariadb.sh (make test does)")
    return found


def _accepts(db: MariaDB) -> bool:
    db.root().close()
    return True


def start_mariadb(base: Path) -> tuple[Server, MariaDB]:
    datadir = base / "data"
    socket = base / "mariadbd.sock"
    user = pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        [_program("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}", f"--user={user}",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        check=True, capture_output=True,
    )
    port = free_port()
    server = Server(
        "mariadbd",
        [_program("mariadbd"), "--no-defaults", f"--datadir={datadir}", f"--socket={socket}",
         f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve", f"--user={user}",
         f"--pid-file={base / 'mariadbd.pid'}", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
         "--max-connections=50"],
        log=base / "mariadbd.log",
    )
    db = MariaDB(
        host="127.0.0.1", port=port, socket=socket, database=DATABASE,
        owner="zenml", owner_password=secrets.token_urlsafe(16),
        reader="reconciler", reader_password=secrets.token_urlsafe(16),
    )
    try:
        wait_until(lambda: _accepts(db), timeout=60, what="mariadbd to accept connections", server=server)
        conn = db.root()
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
            cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (db.owner, db.owner_password))
            cur.execute(f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO %s@'127.0.0.1'", (db.owner,))
            cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (db.reader, db.reader_password))
            cur.execute(f"GRANT SELECT ON {DATABASE}.* TO %s@'127.0.0.1'", (db.reader,))
        conn.close()
    except BaseException:
        server.stop()
        raise
    return server, db


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    # A short path: the unix socket path must fit in 108 bytes.
    base = tmp_path_factory.mktemp("mariadb")
    server, db = start_mariadb(base)
    try:
        yield db
    finally:
        server.stop()
