"""The daemon's configuration: YAML, then `SCHEDULE_RECONCILER__A__B=value` overrides.

Validation errors become one `ConfigError` line naming the field. Secrets never
sit in the file: fields ending in `_env` name an environment variable and fields
ending in `_file` name a file; `secret()` reads them when a provider needs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "SCHEDULE_RECONCILER__"
CONFIG_PATH_ENV = "SCHEDULE_RECONCILER_CONFIG"
DEFAULT_CONFIG_PATH = "schedule-reconciler.yaml"

# Keys that would put a secret into the config file itself.
_SECRET_KEYS = {"password", "token", "api_key", "apikey", "secret", "cookie", "cookies", "private_key"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(Exception):
    """A config that cannot run; the message is one line naming the field."""


def parse_duration(value: Any) -> float:
    """`5m`, `1h30m`, `250ms`, `10` (seconds) -> seconds as a float."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION.sub("", text) == "":
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
        else:
            raise ValueError(f"{value!r} is not a duration like 30s, 5m or 1h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ownership(_Strict):
    """Extra, conservative evidence that ZenML made a live schedule."""

    labels: dict[str, str] = Field(default_factory=dict)  # every pair must match
    name_patterns: list[str] = Field(default_factory=list)  # regexes on the live name


class Protect(_Strict):
    names: list[str] = Field(default_factory=list)  # globs on the live name or native id
    labels: dict[str, str] = Field(default_factory=dict)


class _TargetBase(_Strict):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # ZenML orchestrator components feeding this target (names or ids); empty = match
    # automatically by flavor and configuration.
    components: list[str] = Field(default_factory=list)
    timeout: Seconds = 30.0  # per request
    list_deadline: Seconds = 300.0  # a whole listing, all pages and retries
    max_retries: int = Field(default=4, ge=0, le=10)
    rate_limit: float | None = Field(default=None, gt=0)  # requests per second, client side
    # A glob over the live name with {pipeline}, {schedule}, {schedule_id} filled in
    # (e.g. "team-{pipeline}-*"): replaces the flavor's naming rule when set.
    name_template: str | None = None
    ownership: Ownership = Field(default_factory=Ownership)
    action: Literal["delete", "pause"] | None = None  # cleanup override
    protect: Protect = Field(default_factory=Protect)
    verify_tls: bool = True
    ca_bundle: str | None = None


class VertexTarget(_TargetBase):
    type: Literal["vertex"]
    project: str
    location: str
    endpoint: str | None = None
    transport: Literal["grpc", "rest"] = "grpc"
    credentials: str = "default"  # default (ADC) | anonymous | /path/to/key.json
    page_size: int = Field(default=100, ge=1, le=100)

    @model_validator(mode="after")
    def _grpc_always_verifies(self) -> "VertexTarget":
        # grpcio has no switch to skip certificate checks: refuse a setting that would be ignored.
        plain = (self.endpoint or "").startswith("http://")
        if not self.verify_tls and self.transport == "grpc" and not plain:
            raise ValueError("verify_tls: false cannot be honoured over gRPC; set ca_bundle, or transport: rest")
        return self


class KubeflowTarget(_TargetBase):
    type: Literal["kubeflow"]
    host: str
    namespace: str = "kubeflow"
    token_env: str | None = None
    token_file: str | None = None  # e.g. a projected service-account token; re-read on rotation
    cookies_env: str | None = None
    page_size: int = Field(default=200, ge=1, le=200)


class AirflowTarget(_TargetBase):
    type: Literal["airflow"]
    url: str
    api_version: Literal["auto", "v1", "v2"] = "auto"
    username_env: str | None = None
    password_env: str | None = None
    username_file: str | None = None
    password_file: str | None = None
    page_size: int = Field(default=100, ge=1, le=100)


class KubernetesTarget(_TargetBase):
    type: Literal["kubernetes"]
    namespace: str
    kubeconfig: str | None = None  # default: in-cluster, then ~/.kube/config
    context: str | None = None
    host: str | None = None  # API server URL, with token_file (e.g. an emulator)
    token_file: str | None = None
    page_size: int = Field(default=500, ge=1, le=1000)
    # What happens to the Jobs a deleted CronJob made; explicit, never the server's default.
    propagation_policy: Literal["Background", "Foreground", "Orphan"] = "Background"


TargetConfig = Annotated[
    Union[VertexTarget, KubeflowTarget, AirflowTarget, KubernetesTarget],
    Field(discriminator="type"),
]


class RegistryConfig(_Strict):
    type: Literal["zenml-sql", "zenml-rest"] = "zenml-sql"
    # zenml-sql: SQLAlchemy URL (sqlite:///..., mysql://...); default: ZENML_STORE_URL, then
    # ZenML's local store. zenml-rest: the server's base URL.
    url: str | None = None
    api_key_env: str = "ZENML_STORE_API_KEY"
    api_key_file: str | None = None
    password_env: str | None = None  # zenml-sql on MySQL, when the URL carries no password
    projects: list[str] = Field(default_factory=list)  # empty = all
    timeout: Seconds = 30.0
    # zenml-rest: a whole read, every page and retry; a server answering each page just inside
    # `timeout` must not stall the cycle (and every target with it) for pages x timeout.
    read_deadline: Seconds = 300.0
    max_retries: int = Field(default=4, ge=0, le=10)
    page_size: int = Field(default=1000, ge=1, le=10000)
    verify_tls: bool = True
    ca_bundle: str | None = None

    @model_validator(mode="after")
    def _rest_needs_url(self) -> "RegistryConfig":
        if self.type == "zenml-rest" and not self.url:
            raise ValueError("url: zenml-rest needs the ZenML server's URL")
        return self


class CleanupConfig(_Strict):
    enabled: bool = False
    approve: bool = False
    approve_only: list[str] = Field(default_factory=list)
    action: Literal["delete", "pause"] = "delete"
    include: list[Literal["orchestrator_only", "duplicate"]] = Field(default_factory=lambda: ["orchestrator_only"])
    dry_run_cycles: int = Field(default=3, ge=1)
    grace_period: Seconds = 3600.0
    max_actions_per_cycle: int = Field(default=10, ge=0)
    max_fraction: float = Field(default=0.25, ge=0, le=1)
    registry_drop_guard: float = Field(default=0.5, gt=0, le=1)
    allow_empty_registry: bool = False
    protect: Protect = Field(default_factory=Protect)


class StateConfig(_Strict):
    url: str = "sqlite:///var/lib/schedule-reconciler/state.db"  # PostgreSQL (postgresql://...) for HA
    password_env: str | None = None  # PostgreSQL, when the URL carries no password
    dry_run_retention: Seconds = 14 * 86400.0  # dry-run audit records older than this are pruned


class LeaderElectionConfig(_Strict):
    """Which replica may act: a coordination.k8s.io/v1 Lease, or a row in the state store.

    Kubernetes backend: `namespace` defaults to the pod's own namespace (the file
    /var/run/secrets/kubernetes.io/serviceaccount/namespace), else "default". The API
    server is reached like a kubernetes target's: `host` (+ `token_file`), else
    `kubeconfig`/`context`, else the in-cluster service account, else ~/.kube/config.
    """

    enabled: bool = False
    backend: Literal["kubernetes", "database"] = "kubernetes"
    lease_name: str = Field(default="schedule-reconciler", min_length=1, max_length=128)
    namespace: str | None = None
    lease_duration: Annotated[Seconds, Field(ge=1)] = 30.0
    kubeconfig: str | None = None
    context: str | None = None
    host: str | None = None
    token_file: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None


class MetricsConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=9464, ge=0, le=65535)
    detail_series_limit: int = Field(default=500, ge=0)


class LogConfig(_Strict):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    interval: Seconds = 300.0
    jitter: Seconds = 10.0
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    targets: list[TargetConfig] = Field(default_factory=list)
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _checks(self) -> "Config":
        if self.interval < 1:
            raise ValueError("interval: must be at least 1s")
        names = [t.name for t in self.targets]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"targets: the name {name!r} is used twice")
        return self


def resolve_config_path(cli_value: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    return Path(cli_value or environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: Path | str | None, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, override and validate. Raises ConfigError with one line."""
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path}{where}: not valid YAML") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
    apply_env_overrides(raw, environ)
    _reject_inline_secrets(raw, "")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """`SCHEDULE_RECONCILER__CLEANUP__APPROVE=true` sets raw['cleanup']['approve'] = True.

    List items are addressed by index or, for targets, by name:
    `SCHEDULE_RECONCILER__TARGETS__AIRFLOW__URL`. Values are YAML scalars.
    """
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(environ[key])
        except yaml.YAMLError:
            value = environ[key]
        _set_path(raw, path, value, key)


def _set_path(node: Any, path: list[str], value: Any, env_key: str) -> None:
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            index = _list_index(node, part)
            if index is None:
                raise ConfigError(f"{env_key}: no list item {part!r} to override")
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{env_key}: {'.'.join(path[:i])} is not a mapping")
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def _list_index(items: list[Any], part: str) -> int | None:
    if part.isdigit():
        return int(part) if int(part) < len(items) else None
    for index, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("name", "")).lower() == part:
            return index
    return None


def _reject_inline_secrets(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if str(key).lower() in _SECRET_KEYS:
                raise ConfigError(
                    f"config: {here}: secrets are not allowed in the config; use {key}_env or {key}_file"
                )
            _reject_inline_secrets(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _reject_inline_secrets(value, f"{where}[{index}]")


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ""
    for part in error["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part in {"vertex", "kubeflow", "airflow", "kubernetes"}:
            continue  # the discriminator's branch name is noise to the reader
        else:
            where += f".{part}" if where else str(part)
    message = str(error["msg"]).removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config: {where or 'top level'}: {message}{suffix}"


def secret(env: str | None, file: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """Read a secret from the named env var or file; None when neither is set.

    Raises ConfigError naming the variable or file (never the value).
    """
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"secret file {file}: {exc.strerror or exc}") from None
    if env:
        if env not in environ:
            raise ConfigError(f"environment variable {env} is not set")
        return environ[env]
    return None
