"""A throwaway PostgreSQL cluster (Debian's postgresql) for the tests, on 127.0.0.1.

`postgres_server` is a session fixture: its own cluster made by `initdb`, a free
port, SCRAM password authentication for every connection (the superuser too),
stopped by its own PID at the end. PostgreSQL refuses to run as root, so when
the tests run as root the cluster belongs to the `postgres` system user (or
`nobody`), whose datadir lives in a private directory under /tmp (pytest's tmp
dir is root-only). Register it in a test module or conftest with
`from tests.support.postgres import postgres_server  # noqa: F401`.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.support.procs import Server, free_port, wait_until


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    superuser: str
    superuser_password: str
    user: str  # owns `database` and every database made by create_database
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        """The state store URL, as an operator writes it (the store maps it to psycopg 3)."""
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{database or self.database}")

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.superuser,
                               password=self.superuser_password, dbname="postgres", autocommit=True)

    def create_database(self, name: str) -> str:
        """A fresh, empty database owned by `user`; returns its URL."""
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return self.url(name)


def _program(name: str) -> str:
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    found = versions[-1] if versions else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is missing: run tests/setup/postgres.sh (make test does)")
    return found


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _as_user(user: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user.pw_name, "--", *argv]


def _accepts(db: Postgres) -> bool:
    db.admin().close()
    return True


def _stop(server: Server, datadir: Path) -> None:
    """Fast shutdown (SIGINT to the postmaster, by the PID it wrote): the default SIGTERM
    would wait for every pooled client connection to go away."""
    try:
        pid = int((datadir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)
        server.process.wait(30)
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        pass
    server.stop()


def start_postgres(base: Path) -> tuple[Server, Postgres, Path]:
    user = _run_as()
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
    os.chmod(base, 0o700)
    datadir = base / "data"
    superuser_password = secrets.token_urlsafe(16)
    pwfile = base / "pwfile"
    pwfile.write_text(superuser_password + "\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        subprocess.run(
            _as_user(user, [_program("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=scram-sha-256",
                            f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-sync"]),
            check=True, capture_output=True, cwd=base,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')[-2000:]}") from None
    finally:
        pwfile.unlink()
    port = free_port()
    server = Server(
        "postgres",
        _as_user(user, [_program("postgres"), "-D", str(datadir), "-c", "listen_addresses=127.0.0.1",
                        "-c", f"port={port}", "-c", f"unix_socket_directories={base}", "-c", "max_connections=60",
                        "-c", "shared_buffers=32MB", "-c", "fsync=off", "-c", "logging_collector=off"]),
        log=base / "postgres.log",
        cwd=base,
    )
    db = Postgres(host="127.0.0.1", port=port, superuser="postgres", superuser_password=superuser_password,
                  user="reconciler", password=secrets.token_urlsafe(16), database="reconciler")
    try:
        wait_until(lambda: _accepts(db), timeout=60, what="postgres to accept connections", server=server)
        with db.admin() as conn:
            conn.execute(f"CREATE ROLE \"{db.user}\" LOGIN PASSWORD '{db.password}'")
            conn.execute(f'CREATE DATABASE "{db.database}" OWNER "{db.user}"')
    except BaseException:
        _stop(server, datadir)
        raise
    return server, db, datadir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    base = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    try:
        server, db, datadir = start_postgres(base)
        try:
            yield db
        finally:
            _stop(server, datadir)
    finally:
        shutil.rmtree(base, ignore_errors=True)
