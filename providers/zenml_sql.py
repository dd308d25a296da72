"""ZenML's schedule registry, read straight from its SQL store (SQLite or MySQL).

Read-only by construction: SQLite is opened with `mode=ro`, MySQL inside a
`READ ONLY` transaction that is always rolled back. Each `read()` is one
consistent snapshot taken in one transaction. The tables are reflected on
every read, so the same code reads every ZenML schema from 0.75 on:
`workspace_id` (before 0.80) or `project_id`, with or without `is_archived`
(0.93.1+), with or without `run_metadata_resource`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Integer, MetaData, Table, create_engine, event, inspect, null, select, type_coerce
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from reconciler.config import ConfigError, RegistryConfig, secret
from reconciler.model import Component, RegistryError, RegistrySchedule, RegistrySnapshot

log = logging.getLogger(__name__)

STORE_URL_ENV = "ZENML_STORE_URL"
CONFIG_PATH_ENV = "ZENML_CONFIG_PATH"
LOCAL_STORES_PATH_ENV = "ZENML_LOCAL_STORES_PATH"

# What a failed read can raise below RegistryError: drivers, SQLAlchemy, and a schema
# that lacks a column this code expects. `from None` on re-raise: a chained driver
# exception may carry connection details.
_FAILURES = (SQLAlchemyError, sqlite3.Error, OSError, ValueError, TypeError, KeyError, OverflowError)

# The metadata of a schedule that has none: one shared read-only empty mapping.
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})
# ZenML archives a deleted schedule by renaming it `f"{name}_{uuid.uuid4()}"`.
_ARCHIVE_SUFFIX = re.compile(r"^(?P<name>.+)_[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")


def zenml_config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """ZenML's global config directory: `ZENML_CONFIG_PATH`, else click's app dir for `zenml`."""
    if environ.get(CONFIG_PATH_ENV):
        return Path(environ[CONFIG_PATH_ENV]).resolve()
    home = Path(environ.get("HOME") or Path.home())
    if sys.platform.startswith("win"):
        return Path(environ.get("APPDATA") or home) / "zenml"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "zenml"
    return Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "zenml"


def default_store_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where ZenML keeps its local SQLite store (GlobalConfiguration.get_default_store)."""
    if environ.get(LOCAL_STORES_PATH_ENV):
        local_stores = Path(environ[LOCAL_STORES_PATH_ENV])
    else:
        local_stores = zenml_config_dir(environ) / "local_stores"
    return local_stores / "default_zen_store" / "zenml.db"


def resolve_store_url(config: RegistryConfig, environ: Mapping[str, str] = os.environ) -> str:
    """config.url, else $ZENML_STORE_URL, else ZenML's local SQLite store."""
    if config.url:
        return config.url
    if environ.get(STORE_URL_ENV):
        return environ[STORE_URL_ENV]
    return f"sqlite:///{default_store_path(environ)}"


def hex_id(value: Any) -> str:
    """ZenML ids as 32 lowercase hex digits, however the driver hands them over."""
    if type(value) is str and value.isascii() and value.isalnum() and value.islower():
        return value  # already the answer (SQLite's CHAR(32)): nothing to strip or lower
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return bytes(value).hex()
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii")
    return str(value).replace("-", "").lower()


def as_utc(value: datetime | None) -> datetime | None:
    """ZenML stores naive UTC; attach the zone (or convert an aware value)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def original_name(name: str, archived: bool) -> str:
    if not archived:
        return name
    match = _ARCHIVE_SUFFIX.match(name)
    return match.group("name") if match else name


def decode_configuration(raw: Any) -> dict[str, Any] | None:
    """`stack_component.configuration`: base64 of JSON (plain JSON tolerated); None if neither."""
    if raw is None:
        return {}
    data = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw).encode("utf-8")
    candidates = []
    try:
        candidates.append(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        pass
    candidates.append(data)
    for candidate in candidates:
        try:
            decoded = json.loads(candidate.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(decoded, dict):
            return decoded
    return None


def decode_metadata_value(raw: Any) -> Any:
    """`run_metadata.value` is JSON; keep the text when it is not."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", errors="replace")
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def _flag(value: Any, column: str, row_id: Any) -> bool:
    """A boolean column as ZenML writes it (0/1, NULL for a column added later); anything else is
    a malformed row, and the read fails rather than guess (a guessed `is_archived` makes orphans)."""
    if value is None or type(value) is bool:
        return bool(value)
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise ValueError(f"schedule {hex_id(row_id)}: `{column}` holds {str(value)[:20]!r}, not a boolean")


def _text(value: Any, column: str, row_id: Any) -> str:
    """A text column: str, or bytes that are UTF-8 (a BLOB in SQLite); anything else fails the read."""
    if type(value) is str:
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise ValueError(f"schedule {hex_id(row_id)}: `{column}` is not text")


class ZenmlSqlRegistry:
    """RegistryProvider over ZenML's SQL store. Never writes."""

    def __init__(self, config: RegistryConfig, environ: Mapping[str, str] = os.environ) -> None:
        self._config = config
        self._projects = frozenset(config.projects)
        raw_url = resolve_store_url(config, environ)
        self._secret: str | None = None
        self._url = self._parse_url(raw_url, environ)
        self._engine: Engine | None = None

    # -- connecting ---------------------------------------------------------

    def _parse_url(self, raw_url: str, environ: Mapping[str, str]) -> URL:
        try:
            url = make_url(raw_url)
        except ArgumentError:
            raise RegistryError(f"ZenML store URL {self._redact(raw_url)!r} is not a valid SQLAlchemy URL") from None
        backend = url.get_backend_name()
        if backend in {"http", "https"}:
            raise RegistryError(
                f"ZenML store {url.render_as_string(hide_password=True)} is a ZenML server: use registry type zenml-rest"
            )
        if backend == "mysql":
            url = url.set(drivername="mysql+pymysql")
            if url.password is None and self._config.password_env:
                try:
                    url = url.set(password=secret(self._config.password_env, None, environ))
                except ConfigError as exc:
                    raise RegistryError(f"ZenML store {url.render_as_string(hide_password=True)}: {exc}") from None
            if url.password:
                self._secret = str(url.password)
            return url
        if backend == "sqlite":
            if not url.database or url.database == ":memory:":
                raise RegistryError("ZenML store URL sqlite:// names no file")
            return url
        raise RegistryError(
            f"ZenML store {url.render_as_string(hide_password=True)}: unsupported database {backend!r} "
            "(ZenML's SQL store is SQLite or MySQL)"
        )

    @property
    def store(self) -> str:
        """The store as shown in messages: a file path or a URL without its password."""
        if self._url.get_backend_name() == "sqlite":
            return str(self._url.database)
        return self._url.render_as_string(hide_password=True)

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
            text = text.replace(quote(self._secret, safe=""), "***")
        return text

    def _error(self, reason: str) -> RegistryError:
        reason = " ".join(self._redact(reason).split())
        return RegistryError(f"ZenML store {self.store}: {reason}")

    def _sqlite_engine(self) -> Engine:
        path = Path(str(self._url.database)).expanduser()
        timeout = float(self._config.timeout)

        def connect() -> sqlite3.Connection:
            if not path.is_file():
                raise self._error("no such file")
            # mode=ro: SQLite itself refuses every write, and never creates the file.
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
            # Transactions are ours to open (below); pysqlite's own handling would defer them.
            conn.isolation_level = None
            return conn

        # No compiled-statement cache: every read reflects the tables afresh, so each cached
        # statement kept a whole reflected MetaData alive (the soak measured ~175 MB, 850,000 objects).
        engine = create_engine("sqlite://", creator=connect, poolclass=NullPool, query_cache_size=0)

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # The first SELECT takes a SHARED lock held until the end: one snapshot for the read.
            conn.exec_driver_sql("BEGIN")

        return engine

    def _mysql_engine(self) -> Engine:
        timeout = max(1, int(self._config.timeout))
        return create_engine(
            self._url,
            poolclass=NullPool,
            query_cache_size=0,  # as for SQLite: cached statements would pin every read's reflected tables
            isolation_level="REPEATABLE READ",
            connect_args={"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout},
        )

    def _get_engine(self) -> Engine:
        if self._engine is None:
            if self._url.get_backend_name() == "sqlite":
                self._engine = self._sqlite_engine()
            else:
                self._engine = self._mysql_engine()
        return self._engine

    # -- the protocol -------------------------------------------------------

    def read(self) -> RegistrySnapshot:
        try:
            with self._get_engine().connect() as conn:
                try:
                    return self._read(conn)
                finally:
                    conn.rollback()
        except RegistryError:
            raise
        except _FAILURES as exc:
            raise self._error(self._describe(exc)) from None

    def check(self) -> None:
        try:
            with self._get_engine().connect() as conn:
                try:
                    self._start(conn)
                    self._tables(conn)
                finally:
                    conn.rollback()
        except RegistryError:
            raise
        except _FAILURES as exc:
            raise self._error(self._describe(exc)) from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- reading ------------------------------------------------------------

    @staticmethod
    def _describe(exc: BaseException) -> str:
        orig = getattr(exc, "orig", None)
        if orig is not None:
            args = getattr(orig, "args", ())
            # pymysql: (code, message)
            if len(args) == 2 and isinstance(args[0], int):
                return f"{args[1]} (MySQL error {args[0]})"
            return str(orig) or type(orig).__name__
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def _start(self, conn: Connection) -> None:
        if conn.dialect.name == "mysql":
            # REPEATABLE READ (engine default) + a snapshot taken now: every SELECT below
            # sees the same committed state, and the server refuses writes.
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        else:
            # Take the SHARED lock now: a locked or corrupt file fails here, not half way.
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master")

    def _tables(self, conn: Connection) -> dict[str, Table]:
        names = set(inspect(conn).get_table_names())
        scope = "project" if "project" in names else "workspace"
        missing = [t for t in ("schedule", "stack_component", "pipeline", scope) if t not in names]
        if missing:
            raise self._error(f"not a ZenML store (no {', '.join(missing)} table)")
        wanted = ["schedule", "stack_component", "pipeline", scope]
        wanted += [t for t in ("run_metadata", "run_metadata_resource") if t in names]
        metadata = MetaData()
        # resolve_fks=False: only these tables; following their foreign keys reflected the
        # whole store (user, project, ...) and was most of a read's time.
        metadata.reflect(conn, only=wanted, resolve_fks=False)
        tables = dict(metadata.tables)
        tables["scope"] = tables[scope]
        return tables

    def _read(self, conn: Connection) -> RegistrySnapshot:
        self._start(conn)
        read_at = datetime.now(timezone.utc)
        tables = self._tables(conn)
        schedule, component, pipeline, scope = (
            tables["schedule"], tables["stack_component"], tables["pipeline"], tables["scope"]
        )
        scope_column = "project_id" if "project_id" in schedule.c else "workspace_id"

        scope_names = {hex_id(r.id): r.name for r in conn.execute(select(scope.c.id, scope.c.name))}
        # Reading nothing for a mistyped project would look like every schedule was deleted.
        unknown = sorted(self._projects - set(scope_names.values()))
        if unknown:
            raise RegistryError(f"ZenML store {self.store}: no project named {', '.join(unknown)}")

        component_ids: set[str] = set()
        components: list[Component] = []
        for row in conn.execute(
            select(component.c.id, component.c.name, component.c.type, component.c.flavor, component.c.configuration)
        ):
            component_ids.add(hex_id(row.id))
            if row.type != "orchestrator":
                continue
            configuration = decode_configuration(row.configuration)
            if configuration is None:
                log.warning("ZenML component %s: configuration is neither base64 JSON nor JSON; using {}", row.name)
                configuration = {}
            components.append(Component(id=hex_id(row.id), name=row.name, flavor=row.flavor,
                                        configuration=configuration))

        pipeline_scope = "project_id" if "project_id" in pipeline.c else "workspace_id"
        pipeline_names: dict[str, str] = {}
        pipelines: set[str] = set()
        for row in conn.execute(select(pipeline.c.id, pipeline.c.name, pipeline.c[pipeline_scope].label("scope"))):
            pipeline_names[hex_id(row.id)] = row.name
            if self._wanted(scope_names.get(hex_id(row.scope))):
                pipelines.add(row.name)

        metadata = self._metadata(conn, tables)

        # Only the columns used, unpacked as tuples, and each repeating id (project,
        # pipeline, component) converted once: per-row mapping access and 470,000 id
        # conversions were a third of the read at 100,000 rows.
        optional = {name: schedule.c[name] if name in schedule.c else null().label(name)
                    for name in ("run_once_start_time", "is_archived")}
        # The flags as the driver hands them over: SQLAlchemy's Boolean would read any
        # non-empty value (a stray 'false', a 2) as true, and a live row as archived.
        raw_flag = {name: type_coerce(optional.get(name, schedule.c.get(name)), Integer).label(name)
                    for name in ("active", "catchup", "is_archived")}
        query = select(
            schedule.c.id, schedule.c.name, schedule.c[scope_column], schedule.c.pipeline_id,
            schedule.c.orchestrator_id, raw_flag["active"], schedule.c.cron_expression, schedule.c.interval_second,
            schedule.c.start_time, schedule.c.end_time, optional["run_once_start_time"], raw_flag["catchup"],
            schedule.c.created, schedule.c.updated, raw_flag["is_archived"],
        )
        projects: dict[Any, str | None] = {}
        pipelines_by_id: dict[Any, str | None] = {None: None}
        orchestrators: dict[Any, str | None] = {None: None}
        schedules: list[RegistrySchedule] = []
        for (raw_id, raw_name, scope_id, pipeline_id, orchestrator_id, active, cron, interval, start, end, run_once,
             catchup, created, updated, is_archived) in conn.execute(query):
            if scope_id not in projects:
                projects[scope_id] = scope_names.get(hex_id(scope_id))
            project = projects[scope_id]
            if not self._wanted(project):
                continue
            if orchestrator_id not in orchestrators:
                # SET NULL on delete; on an old SQLite file without enforced foreign keys the
                # id may still dangle. Either way the component is gone.
                orchestrator = hex_id(orchestrator_id)
                orchestrators[orchestrator_id] = orchestrator if orchestrator in component_ids else None
            if pipeline_id not in pipelines_by_id:
                pipelines_by_id[pipeline_id] = pipeline_names.get(hex_id(pipeline_id))
            archived = _flag(is_archived, "is_archived", raw_id)
            schedule_id = hex_id(raw_id)
            created_at = as_utc(created)
            name = _text(raw_name, "name", raw_id)
            cron = _text(cron, "cron_expression", raw_id) if cron is not None else None
            schedules.append(
                RegistrySchedule(
                    id=schedule_id,
                    name=name,
                    original_name=original_name(name, archived),
                    project=project or "",
                    pipeline=pipelines_by_id[pipeline_id],
                    orchestrator_id=orchestrators[orchestrator_id],
                    active=_flag(active, "active", raw_id),
                    archived=archived,
                    cron_expression=sys.intern(cron) if type(cron) is str and cron else cron or None,
                    interval_seconds=float(interval) if interval is not None else None,
                    start_time=as_utc(start),
                    end_time=as_utc(end),
                    run_once_start_time=as_utc(run_once),
                    catchup=_flag(catchup, "catchup", raw_id),
                    created=created_at,  # type: ignore[arg-type]
                    # Rows never edited have updated == created: one object for both.
                    updated=created_at if updated == created else as_utc(updated),  # type: ignore[arg-type]
                    metadata=metadata.get(schedule_id, _NO_METADATA),
                )
            )
        schedules.sort(key=attrgetter("project", "name"))
        components.sort(key=lambda c: c.name)
        return RegistrySnapshot(
            schedules=tuple(schedules),
            components=tuple(components),
            pipelines=frozenset(pipelines),
            read_at=read_at,
        )

    def _wanted(self, project: str | None) -> bool:
        return not self._projects or project in self._projects

    @staticmethod
    def _metadata(conn: Connection, tables: Mapping[str, Table]) -> dict[str, dict[str, Any]]:
        """Schedule run metadata (e.g. the Kubernetes orchestrator's cron_job_name), by schedule id."""
        if "run_metadata" not in tables or "run_metadata_resource" not in tables:
            return {}
        meta, link = tables["run_metadata"], tables["run_metadata_resource"]
        query = (
            select(link.c.resource_id, meta.c.key, meta.c.value)
            .join(meta, meta.c.id == link.c.run_metadata_id)
            .where(link.c.resource_type == "schedule")
            .order_by(meta.c.created, meta.c.id)
        )
        result: dict[str, dict[str, Any]] = {}
        for resource_id, key, value in conn.execute(query):
            # Later values of a key replace earlier ones, as ZenML's own fetch_metadata does.
            result.setdefault(hex_id(resource_id), {})[key] = decode_metadata_value(value)
        return result
