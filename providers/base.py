"""What the core asks of a provider."""

from __future__ import annotations

from typing import Protocol

from reconciler.model import LiveSchedule, RegistrySnapshot


class RequestRecorder(Protocol):
    """Counts outside API calls: `api_requests_total{target, operation, code}`.

    `code` is the HTTP status as a string, a gRPC code name, or `error` when no
    answer came (refused, timeout). Called once per attempt, retries included.
    """

    def __call__(self, operation: str, code: str) -> None: ...


def null_recorder(operation: str, code: str) -> None:
    return None


class RegistryProvider(Protocol):
    def read(self) -> RegistrySnapshot:
        """One consistent snapshot. Raises RegistryError; never returns a partial read."""
        ...

    def check(self) -> None:
        """Reach the store (for `check-config --connect`). Raises RegistryError."""
        ...

    def close(self) -> None: ...


class TargetProvider(Protocol):
    name: str
    flavor: str  # vertex | kubeflow | airflow | kubernetes
    endpoint: str  # shown in target_info; never carries credentials

    def list_schedules(self) -> list[LiveSchedule]:
        """Every live schedule, all pages. Raises ListingError; never a partial list."""
        ...

    def check(self) -> None:
        """Reach the API and authenticate (for `check-config --connect`). Raises ListingError."""
        ...

    def close(self) -> None: ...
